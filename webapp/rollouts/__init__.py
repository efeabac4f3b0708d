"""Rollouts: the browser of a run's rollouts and its filters (rollout_browser), a prompt's
history across steps (prompt_history), the per-token view of a completion (tokens), and
importing rollouts from files (importers, services, the import_rollouts command).

Models stay in webapp.runs.models: Rollout is stored with the run that made it, and moving it
to this app would cost a data migration of its (large) table for no gain in behaviour."""
