"""Job templates and the script runs launched from them: a team's commands (TRL under
accelerate, veRL on Ray, OpenRLHF, any trainer) with typed parameters, launched by members from
a validated form, the API or the CLI, run by workers that opt in, and tracked into the run
(metrics through the MLflow protocol or the SDK, rollout files and checkpoint folders imported as
they appear)."""
