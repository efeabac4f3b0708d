from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "webapp.jobs"
    label = "jobs"

    def ready(self) -> None:
        # webapp.runs sits beneath this app: its resume button reaches script runs this way.
        from webapp.experiments.models import ExperimentKind
        from webapp.jobs.services import script_run_resume
        from webapp.runs.services import run_resume_register

        run_resume_register(ExperimentKind.SCRIPT, script_run_resume)
