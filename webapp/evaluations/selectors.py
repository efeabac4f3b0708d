"""Reads of evaluation results: what each evaluation job and each periodic evaluation of a
training run measured, labelled by model (a base model, or a run's checkpoint) and dataset.

Both kinds store their metrics as the run's metric points under `eval/` (training.loops.evaluation):
a job at the step of the checkpoint it evaluated (0 for a base model), a training run at every
step it evaluated. A job also stores every sample as a rollout (one group per prompt), so its
prompts can be compared and browsed; a periodic evaluation stores only its metrics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from webapp.datasets.models import Dataset
from webapp.projects.models import Project
from webapp.runs.models import MetricPoint, Run, RunStatus

PREFIX = "eval/"
SPLIT_NAMES = {"held_out": "held-out", "train": "train", "all": "all"}


@dataclass(frozen=True)
class EvaluationResult:
    """One evaluation of one model on one dataset."""

    run: Run  # the evaluation job, or the training run that evaluated as it trained
    step: int  # the training step of the model evaluated (0: a base model)
    model: str  # e.g. "builtin:smollm2-135m-instruct", or "grpo-baseline #3 · step 20"
    dataset: str  # e.g. "arithmetic · held-out", or "gsm8k-test · all"
    metrics: dict[str, float]  # without the eval/ prefix: pass@1, maj@8, avg@8, reward/mean …
    wall_time: datetime

    @property
    def is_job(self) -> bool:
        """An evaluation job, whose samples are stored; else a training run's periodic one."""
        return self.run.is_evaluation

    @property
    def headline(self) -> list[tuple[str, float]]:
        return headline_metrics(self.metrics)

    @property
    def key(self) -> str:
        """Names this result in URLs and exports: "<run id>@<step>"."""
        return f"{self.run.pk}@{self.step}"


def model_label(run: Run, step: int) -> str:
    """What a result evaluated: a job's checkpoint (by its run and step) or model; for a
    training run's periodic evaluation, the run at that step."""
    if run.is_evaluation:
        checkpoint = run.evaluated_checkpoint
        if checkpoint is not None:
            return f"{checkpoint.run} · step {checkpoint.step}"
        model = str(run.config.get("model", ""))
        return f"{model} · step {step}" if step else model
    return f"{run} · step {step}"


def dataset_label(run: Run, names: dict[str, str]) -> str:
    """The prompts a result covers; `names` maps dataset files to the datasets' names."""
    config = run.config
    if run.is_evaluation:
        split = config.get("split", "auto")
        if split == "auto":
            split = "all" if config.get("dataset") else "held_out"
    else:
        split = "held_out"
    source = config.get("dataset") or ""
    what = names.get(source, Path(source).name[:12] or "dataset") if source else config["task"]
    return f"{what} · {SPLIT_NAMES.get(split, split)}"


def dataset_names(project: Project) -> dict[str, str]:
    """The project's datasets by the path of their normalised file, which run configs name."""
    return {str(d.normalized_path): d.name for d in Dataset.objects.filter(project=project)}


def evaluation_results(runs: Iterable[Run], names: dict[str, str] | None = None,
                       ) -> list[EvaluationResult]:
    """The results of `runs` (jobs that succeeded, and any training run's periodic
    evaluations), newest first. `runs` should have their experiment and evaluated checkpoint
    selected; `names` as dataset_names gives (none: files are shown by name)."""
    runs = {run.pk: run for run in runs
            if not run.is_evaluation or run.status == RunStatus.SUCCEEDED}
    points = (MetricPoint.objects.filter(run_id__in=list(runs), key__startswith=PREFIX)
              .values_list("run_id", "step", "key", "value", "wall_time"))
    grouped: dict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    times: dict[tuple[int, int], datetime] = {}
    for run_id, step, key, value, wall_time in points:
        grouped[run_id, step][key.removeprefix(PREFIX)] = value
        times[run_id, step] = max(wall_time, times.get((run_id, step), wall_time))
    names = names or {}
    results = [EvaluationResult(run=runs[run_id], step=step,
                                model=model_label(runs[run_id], step),
                                dataset=dataset_label(runs[run_id], names),
                                metrics=metrics, wall_time=times[run_id, step])
               for (run_id, step), metrics in grouped.items()]
    results.sort(key=lambda r: r.wall_time, reverse=True)
    return results


def project_evaluation_results(project: Project) -> list[EvaluationResult]:
    """Every evaluation result of the project's runs."""
    runs = (Run.objects.filter(experiment__project=project)
            .select_related("experiment", "evaluated_checkpoint__run__experiment"))
    return evaluation_results(runs, dataset_names(project))


def evaluation_jobs(runs: Iterable[Run]) -> list[tuple[Run, EvaluationResult | None]]:
    """Each job of an evaluation with its result (None until it succeeds), in `runs` order."""
    runs = list(runs)
    by_run = {result.run.pk: result for result in evaluation_results(runs)}
    return [(run, by_run.get(run.pk)) for run in runs]


def headline_metrics(metrics: dict[str, float]) -> list[tuple[str, float]]:
    """The @-metrics in a stable order: pass@k by k, then maj@k, then avg@n."""
    def order(key: str) -> tuple[int, int]:
        name, _, k = key.partition("@")
        return ({"pass": 0, "maj": 1, "avg": 2}.get(name, 3), int(k) if k.isdigit() else 0)

    return [(key, metrics[key]) for key in sorted((k for k in metrics if "@" in k), key=order)]
