"""Two evaluation jobs side by side, prompt by prompt: which prompts went from wrong to right
(improved), which from right to wrong (regressed), and which stayed solved or unsolved.

A prompt's accuracy in a job is the share of its n samples judged correct; it counts as solved
when that share is at least SOLVED_AT (a majority of its samples, ties included). Correctness is
each sample's own `extra["correct"]`, which the evaluation stores beside its reward
(training.loops.evaluation); a sample sent without that flag (an outside script) counts as correct
when its reward reaches 1, the built-in verifiers' success reward.

Reads only: one aggregate query per job gives every prompt's counts, computed in the database
(no rollout's text or JSON comes back), so thousands of prompts cost two small result sets; the
prompt texts and answers are read for the page being shown only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from django.db.models import Count, Min, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import MD5, Left
from django.shortcuts import get_object_or_404

from webapp.evaluations.selectors import evaluation_results, model_label
from webapp.experiments.models import ExperimentKind
from webapp.projects.models import Project
from webapp.runs.compare import config_diff
from webapp.runs.models import Rollout, Run, RunStatus
from webapp.runs.selectors import runs_for_user

SOLVED_AT = 0.5
SUCCESS_REWARD = 1.0
PROMPT_PREVIEW_CHARS = 300

IMPROVED, REGRESSED = "improved", "regressed"
BOTH_SOLVED, BOTH_UNSOLVED = "both_solved", "both_unsolved"
CATEGORIES = {IMPROVED: "improved", REGRESSED: "regressed", BOTH_SOLVED: "solved in both",
              BOTH_UNSOLVED: "unsolved in both"}
CHANGED = "changed"
FILTERS = {"": "all, changed first", CHANGED: "changed (improved or regressed)", **CATEGORIES}

# A sample's own verdict; one without a verdict falls back on its reward.
CORRECT = Q(extra__correct=True) | (Q(extra__correct__isnull=True) & Q(reward__gte=SUCCESS_REWARD))


class NotComparable(ValueError):
    """A job picked for comparison that is not one: the message says what to pick instead."""


@dataclass(frozen=True)
class Tally:
    """One prompt in one job: how many of its samples were correct."""

    correct: int
    samples: int
    group: int  # the prompt's place in the job (its group), for a stable order
    first_id: int  # its first sample, whose text and answer stand for the prompt
    digest: str  # MD5 of the prompt text ("" if unknown), to notice an id naming two prompts

    @property
    def accuracy(self) -> float:
        return self.correct / self.samples if self.samples else 0.0

    @property
    def solved(self) -> bool:
        return self.accuracy >= SOLVED_AT


@dataclass
class PromptRow:
    """A prompt of the comparison; `a` or `b` is None for a prompt only the other job has."""

    prompt_id: str
    a: Tally | None
    b: Tally | None
    prompt: str = ""  # filled in for the rows shown (see with_texts)
    answer: str | None = None

    @property
    def delta(self) -> float:
        """B's accuracy minus A's (0 for a prompt only one job has)."""
        if self.a is None or self.b is None:
            return 0.0
        return self.b.accuracy - self.a.accuracy

    @property
    def delta_shown(self) -> str:
        return f"{self.delta:+.2f}"

    @property
    def category(self) -> str:
        if self.a.solved:
            return BOTH_SOLVED if self.b.solved else REGRESSED
        return IMPROVED if self.b.solved else BOTH_UNSOLVED

    @property
    def category_label(self) -> str:
        return CATEGORIES[self.category]

    @property
    def changed(self) -> bool:
        return self.category in (IMPROVED, REGRESSED)

    @property
    def text_differs(self) -> bool:
        return bool(self.a and self.b and self.a.digest and self.b.digest
                    and self.a.digest != self.b.digest)

    @property
    def order(self) -> int:
        return (self.a or self.b).group


@dataclass
class Comparison:
    """Job `b` against job `a`: the shared prompts by category, and those only one job has."""

    a: Run
    b: Run
    shared: list[PromptRow]  # prompts both jobs evaluated, changed ones first, by |Δ|
    only_a: list[PromptRow]
    only_b: list[PromptRow]
    recipe_differences: list[tuple[str, str, str]]  # (setting, A's value, B's value)
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {category: 0 for category in CATEGORIES}
        for row in self.shared:
            self.counts[row.category] += 1
        self.counts[CHANGED] = self.counts[IMPROVED] + self.counts[REGRESSED]

    @property
    def prompts_a(self) -> int:
        return len(self.shared) + len(self.only_a)

    @property
    def prompts_b(self) -> int:
        return len(self.shared) + len(self.only_b)

    @cached_property
    def mean_a(self) -> float | None:
        return _mean(row.a.accuracy for row in self.shared)

    @cached_property
    def mean_b(self) -> float | None:
        return _mean(row.b.accuracy for row in self.shared)

    @cached_property
    def mean_delta(self) -> float | None:
        if self.mean_a is None:
            return None
        return self.mean_b - self.mean_a

    @property
    def mean_delta_shown(self) -> str:
        return "—" if self.mean_delta is None else f"{self.mean_delta:+.3f}"

    @cached_property
    def text_mismatches(self) -> int:
        """Prompt ids both jobs have whose prompt texts differ: not the same question."""
        return sum(row.text_differs for row in self.shared)

    def rows(self, category: str = "") -> list[PromptRow]:
        """The shared prompts of a FILTERS category ("" for all), in the comparison's order."""
        if not category:
            return self.shared
        if category == CHANGED:
            return [row for row in self.shared if row.changed]
        return [row for row in self.shared if row.category == category]


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def tallies(run: Run) -> dict[str, Tally]:
    """Every prompt of the job with its correct and total samples: one aggregate query. The
    text digest is taken of the first sample only: hashing every sample's prompt would cost more
    than the counting."""
    rows = (Rollout.objects.filter(run=run).values("prompt_id")
            .annotate(correct=Count("id", filter=CORRECT), samples=Count("id"),
                      group=Min("group"), first_id=Min("id"),
                      digest=Min(MD5("prompt"), filter=Q(sample_index=0)))
            .order_by()
            .values_list("prompt_id", "correct", "samples", "group", "first_id", "digest"))
    return {prompt_id: Tally(correct=correct, samples=samples, group=group, first_id=first_id,
                             digest=digest or "")
            for prompt_id, correct, samples, group, first_id, digest in rows}


def recipe_differences(a: Run, b: Run) -> list[tuple[str, str, str]]:
    """The settings, other than the model evaluated, in which the two jobs' configs differ."""
    return [(row.key, *row.values) for row in config_diff([a, b])
            if row.differs and row.key != "model"]


def compare_jobs(a: Run, b: Run) -> Comparison:
    """Job `a` against job `b`, prompt by prompt (prompt ids line up across jobs)."""
    for run in (a, b):
        if not run.is_evaluation:
            raise NotComparable(f"{run} is a training run, not an evaluation job.")
    in_a, in_b = tallies(a), tallies(b)
    shared = [PromptRow(prompt_id, in_a[prompt_id], in_b[prompt_id])
              for prompt_id in in_a.keys() & in_b.keys()]
    shared.sort(key=lambda row: (not row.changed, -abs(row.delta), row.order, row.prompt_id))
    only_a = sorted((PromptRow(p, in_a[p], None) for p in in_a.keys() - in_b.keys()),
                    key=lambda row: (row.order, row.prompt_id))
    only_b = sorted((PromptRow(p, None, in_b[p]) for p in in_b.keys() - in_a.keys()),
                    key=lambda row: (row.order, row.prompt_id))
    return Comparison(a=a, b=b, shared=shared, only_a=only_a, only_b=only_b,
                      recipe_differences=recipe_differences(a, b))


def with_texts(rows: list[PromptRow]) -> list[PromptRow]:
    """The rows with their prompt text (its first PROMPT_PREVIEW_CHARS) and answer, read from
    each prompt's first sample in one query: call it on the rows of one page only."""
    first = {(row.a or row.b).first_id: row for row in rows}
    found = (Rollout.objects.filter(pk__in=list(first))
             .annotate(head=Left("prompt", PROMPT_PREVIEW_CHARS), answer=KT("extra__answer"))
             .values_list("pk", "head", "answer"))
    for pk, head, answer in found:
        first[pk].prompt, first[pk].answer = head, answer
    return rows


def evaluation_jobs(user, project: Project) -> QuerySet[Run]:
    """The project's evaluation jobs the user can see, with what the labels read."""
    return (runs_for_user(user)
            .filter(experiment__project=project, experiment__kind=ExperimentKind.EVALUATION)
            .select_related("evaluated_checkpoint__run__experiment"))


def pick_job(user, project: Project, raw: str) -> Run:
    """The job a link names. Http404 for a run the user cannot see or of another project (as if
    it did not exist); NotComparable for an id that is not a number, or names a training run."""
    try:
        run_id = int(raw)
    except ValueError:
        raise NotComparable(f"{raw[:40]!r} is not a job id: pick the jobs from the lists."
                            ) from None
    run = get_object_or_404(runs_for_user(user).filter(experiment__project=project)
                            .select_related("evaluated_checkpoint__run__experiment"), pk=run_id)
    if not run.is_evaluation:
        raise NotComparable(f"{run} is a training run, not an evaluation job: pick two jobs of "
                            f"an evaluation.")
    return run


def job_choices(user, project: Project) -> list[tuple[Run, str]]:
    """The succeeded jobs, for the picker: by evaluation, newest job first, each labelled by
    its evaluation, number and the model it evaluated."""
    jobs = list(evaluation_jobs(user, project).filter(status=RunStatus.SUCCEEDED)
                .order_by("experiment__name", "experiment_id", "-number"))
    steps = {result.run.pk: result.step for result in evaluation_results(jobs)}
    return [(run, job_label(run, steps.get(run.pk, 0))) for run in jobs]


def job_label(run: Run, step: int = 0) -> str:
    """ "arithmetic-eval #3 · grpo-baseline #1 · step 20" """
    return f"{run} · {model_label(run, step)}"


def evaluated_step(run: Run) -> int:
    """The step of the model a job evaluated: its checkpoint's, else the step its samples were
    stored at (0 for a base model)."""
    if run.evaluated_checkpoint is not None:
        return run.evaluated_checkpoint.step
    return Rollout.objects.filter(run=run).order_by("-step").values_list(
        "step", flat=True).first() or 0


def in_training_order(a: Run, b: Run) -> tuple[Run, Run]:
    """Two jobs ticked together as (A, B): the model from earlier in training first (a base
    model is step 0), then the earlier job, so "improved" reads as training helped."""
    return tuple(sorted((a, b), key=lambda run: (evaluated_step(run), run.pk)))
