"""Evaluation configuration: what an evaluation job samples and scores, and which metrics it
reports. Like RunConfig, one dataclass whose fields carry their help, bounds and choices; the web
app builds the evaluation form from them. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.spec.config import (
    DEFAULT_MODEL,
    DEVICES,
    DTYPES,
    ROLLOUT_BACKENDS,
    TASKS,
    RunConfig,
)
from training.spec.settings import Settings, setting
from training.spec.tasks import SPLITS

VERIFIERS = {
    "correct": "the last number of the completion equals the answer",
    "math_equivalent": "math-verify finds the completion's final answer equal to the answer "
                       "(fractions, LaTeX, intervals)",
}
EVAL_SPLITS = {
    "auto": "a built-in task's held-out prompts; every row of an uploaded dataset",
    **SPLITS,
}


def parse_ks(text: str) -> list[int]:
    """"1, 4, 8" -> [1, 4, 8]: distinct whole numbers ≥ 1, in ascending order.

    >>> parse_ks("8, 1,4, 4")
    [1, 4, 8]
    """
    ks: set[int] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"{item!r} is not a whole number ≥ 1")
        ks.add(int(item))
    return sorted(ks)


@dataclass(frozen=True)
class EvalConfig(Settings):
    model: str = setting(
        DEFAULT_MODEL, "What is evaluated: a built-in model, a checkpoint of this project "
        "(checkpoint:<id>), a registered model (local:<name>), or a hub id (needs internet on "
        "the worker).", models="one", section="model")
    task: str = setting("arithmetic", "Built-in task whose prompts are evaluated.", choices=TASKS,
                        section="task")
    dataset: str = setting(
        "", "A prompt dataset to evaluate on instead of the task (a JSON-lines file with "
        "'prompt' and 'answer'). Empty = use the task.", blank=True, section="task")
    split: str = setting(
        "auto", "Which prompts: the held-out ones are those that no run trains on (a built-in "
        "task's, or the 10% of a dataset set aside by runs that evaluate as they train).",
        choices=EVAL_SPLITS, section="task")
    verifier: str = setting("correct", "How a sample is judged correct.", choices=VERIFIERS,
                            section="evaluation")
    samples: int = setting(8, "n: samples per prompt. pass@k and maj@k need n ≥ k.",
                           label="Samples per prompt (n)", min=1, max=1024, section="evaluation")
    temperature: float = setting(0.6, "Sampling temperature.", min=0.05, max=5.0, section="rollout")
    top_p: float = setting(0.95, "Nucleus-sampling mass (1 = off).", min=0.01, max=1.0,
                           section="rollout")
    max_new_tokens: int = setting(64, "Longest sample, in tokens; longer ones are cut and "
                                  "judged as they stand.", min=1, max=32_768, section="rollout")
    pass_ks: str = setting(
        "1, 4, 8", "pass@k for each k here (comma-separated): the unbiased estimator from all n "
        "samples.", label="pass@k, k =", parse=parse_ks, section="evaluation")
    maj_ks: str = setting(
        "8", "maj@k for each k here: the majority answer of the first k samples (comma-separated;"
        " empty = none).", label="maj@k, k =", blank=True, parse=parse_ks, section="evaluation")
    max_prompts: int = setting(
        200, "Prompts evaluated, the first ones of the split in a fixed order (0 = all).",
        min=0, max=1_000_000, section="evaluation")
    batch_prompts: int = setting(32, "Prompts sampled per generation call.", min=1, max=4096,
                                 advanced=True, section="performance")
    rollout_backend: str = setting("auto", "What generates the samples.",
                                   choices=ROLLOUT_BACKENDS, advanced=True, section="rollout")
    dtype: str = setting("float32", "Compute precision.", choices=DTYPES, advanced=True,
                         section="performance")
    device: str = setting("auto", "Where the worker evaluates.", choices=DEVICES, advanced=True,
                          section="performance")
    seed: int = setting(0, "Seed of the sampling.", min=0, max=2**31 - 1, advanced=True,
                        section="evaluation")

    def combination_errors(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        for name in ("pass_ks", "maj_ks"):
            too_big = [k for k in parse_ks(getattr(self, name)) if k > self.samples]
            if too_big:
                errors[name] = (f"k = {', '.join(map(str, too_big))} is more than the "
                                f"{self.samples} samples per prompt")
        if not parse_ks(self.pass_ks):
            errors["pass_ks"] = "give at least one k (1 for pass@1)"
        return errors

    @property
    def resolved_split(self) -> str:
        if self.split != "auto":
            return self.split
        return "all" if self.dataset else "held_out"

    def generation_config(self) -> RunConfig:
        """The RunConfig a rollout backend reads: this model and sampling, n samples a prompt."""
        return RunConfig(model=self.model, rollout_backend=self.rollout_backend,
                         temperature=self.temperature, top_p=self.top_p,
                         max_new_tokens=self.max_new_tokens, group_size=self.samples,
                         dtype=self.dtype, device=self.device, seed=self.seed)
