"""One evaluation job's results, prompt by prompt, for download: what papers release beside
their headline numbers. Each prompt: its id and text, the reference answer, its n samples'
correct count and accuracy, pass@k for the recipe's ks and its majority answer; the JSON adds the
job's recipe and metrics, and every sample (completion, answer read, verdict, reward, tokens).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from training.spec.evaluation_config import parse_ks
from training.spec.evaluation_metrics import majority_at_k, pass_at_k
from webapp.common.csv_cells import csv_cell
from webapp.evaluations.selectors import PREFIX, model_label
from webapp.runs.models import MetricPoint, Rollout, Run


@dataclass
class PromptResult:
    prompt_id: str
    prompt: str
    answer: str | None  # the reference answer, where the prompt has one
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def correct(self) -> list[bool]:
        return [bool(s["correct"]) for s in self.samples]

    def record(self, pass_ks: list[int], maj_ks: list[int]) -> dict[str, Any]:
        """The prompt's row: counts, pass@k and maj@k as the job computed them, majority answer."""
        n, c = len(self.samples), sum(self.correct)
        answers = [s["answer"] for s in self.samples]
        votes = Counter(a for a in answers if a is not None)
        return {
            "prompt_id": self.prompt_id, "prompt": self.prompt, "answer": self.answer,
            "samples": n, "correct": c, "accuracy": c / n if n else None,
            **{f"pass@{k}": pass_at_k(n, c, k) for k in pass_ks if k <= n},
            **{f"maj@{k}": majority_at_k(answers, self.correct, k) for k in maj_ks if k <= n},
            "majority_answer": votes.most_common(1)[0][0] if votes else None,
        }


def prompt_results(run: Run) -> list[PromptResult]:
    """The job's prompts in the order it evaluated them, each with its samples in order."""
    rows = (Rollout.objects.filter(run=run).order_by("group", "sample_index")
            .values_list("group", "prompt_id", "prompt", "completion", "reward",
                         "completion_tokens", "truncated", "extra"))
    results: dict[int, PromptResult] = {}
    for group, prompt_id, prompt, completion, reward, tokens, truncated, extra in rows:
        extra = extra or {}
        result = results.get(group)
        if result is None:
            answer = extra.get("answer")
            result = results[group] = PromptResult(prompt_id, prompt,
                                                   None if answer is None else str(answer))
        result.samples.append({
            "completion": completion, "answer": extra.get("extracted_answer"),
            "correct": bool(extra.get("correct", reward >= 1.0)), "reward": reward,
            "completion_tokens": tokens, "truncated": truncated})
    return list(results.values())


def _ks(run: Run) -> tuple[list[int], list[int]]:
    return parse_ks(run.config.get("pass_ks", "1")), parse_ks(run.config.get("maj_ks", ""))


def export_json(run: Run) -> dict[str, Any]:
    pass_ks, maj_ks = _ks(run)
    metrics = MetricPoint.objects.filter(run=run, key__startswith=PREFIX)
    step = metrics.values_list("step", flat=True).first()
    return {
        "job": run.pk, "evaluation": run.experiment.name, "model": model_label(run, step or 0),
        "step": step, "status": run.status, "recipe": run.config,
        "metrics": {key.removeprefix(PREFIX): value
                    for key, value in metrics.values_list("key", "value")},
        "prompts": [{**result.record(pass_ks, maj_ks), "samples": result.samples}
                    for result in prompt_results(run)],
    }


def export_csv(run: Run) -> str:
    """A header row, then a row per prompt."""
    pass_ks, maj_ks = _ks(run)
    records = [result.record(pass_ks, maj_ks) for result in prompt_results(run)]
    names = ["prompt_id", "prompt", "answer", "samples", "correct", "accuracy",
             *(f"pass@{k}" for k in pass_ks), *(f"maj@{k}" for k in maj_ks), "majority_answer"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(names)
    for record in records:
        writer.writerow(csv_cell(record.get(name)) for name in names)
    return buffer.getvalue()
