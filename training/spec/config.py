"""Run configuration: one dataclass, with the help text, bounds and choices of every field.

The web app builds its experiment form from these fields and validates with `RunConfig.from_dict`,
so the trainer and the form can never disagree about a default or a limit. No torch here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from training.spec.model_refs import RefKind, parse_model_refs

ALGORITHMS = {
    "grpo": "GRPO: advantages centred (and scaled) within each prompt's group",
    "rloo": "RLOO: leave-one-out baseline, the mean of the other completions of the prompt",
    "reinforce_pp": "REINFORCE++: one baseline for the whole batch, normalised by its std",
    "spo": "SPO: one completion per prompt; baseline = a persistent per-prompt success estimate",
    "ppo": "PPO: a learned value head and GAE give per-token advantages",
    "dpo": "DPO: offline, from a preference dataset's chosen and rejected replies",
}
ROLLOUT_BACKENDS = {
    "auto": "vLLM when it is installed on the worker, else transformers",
    "transformers": "transformers generate, on the training model itself",
    "vllm": "a vLLM engine in the training process; weights pushed in after every step",
}
REFERENCES = {
    "initial": "the frozen initial policy",
    "ema": "an exponential moving average of the policy (see EMA rate)",
    "soup": "the weight average of the two models in 'reference soup' (SALSA)",
    "none": "no reference: no KL term, and no reference model in memory",
}
KL_PLACEMENTS = {
    "loss": "a per-token penalty β·KL added to the loss (GRPO)",
    "reward": "subtracted from the reward before advantages: r − β·Σ_t KL_t (PPO-style)",
}
PROMPT_SAMPLERS = {
    "uniform": "uniformly at random",
    "difficulty_filter": "keep prompts whose group pass rate lies strictly between the bounds; "
                         "refill the batch with new prompts (DAPO's dynamic sampling)",
    "spo_priority": "prefer prompts whose tracked success rate is uncertain (SPO)",
    "curriculum": "easiest first by the dataset's difficulty column, widening to all by the end",
}
REWARD_ENSEMBLES = {
    "mean": "the mean of the reward models' scores",
    "min": "the lowest score (worst case)",
    "uncertainty": "mean − λ·std across reward models (uncertainty-weighted)",
}
DPO_LOSSES = {
    "sigmoid": "−log σ(β·margin) (Rafailov et al.)",
    "ipo": "(margin − 1/(2β))² (Azar et al.)",
}
LOSS_TYPES = {
    "grpo": "token mean per completion, then mean over completions (DeepSeekMath)",
    "dapo": "token mean over the whole batch: every token weighs the same (DAPO)",
    "dr_grpo": "token sum over completions × max new tokens: no length bias (Dr. GRPO)",
    "bnpo": "token mean within each micro-batch, then mean over micro-batches",
}
REWARD_SCALINGS = {
    "group": "divide by the group's std (GRPO)",
    "batch": "divide by the whole batch's std",
    "none": "no division: rewards only centred on the group mean (Dr. GRPO)",
}
IMPORTANCE_LEVELS = {
    "token": "one importance ratio per token (GRPO, PPO)",
    "sequence": "one ratio per completion, the geometric mean of its tokens' (GSPO)",
}
KL_ESTIMATORS = {
    "k1": "log π − log π_ref: unbiased, high variance",
    "k2": "½ (log π − log π_ref)²: low variance, biased",
    "k3": "π_ref/π − log(π_ref/π) − 1: unbiased and non-negative",
}
TASKS = {
    "arithmetic": "One-digit sums: 'Compute a + b.', answer checked as the last number",
    "arithmetic-2digit": "Two-digit sums, harder: 'Compute a + b.', answer checked as the last "
                         "number",
}
# Rewards that can be added, with a weight, to the task's own correctness reward
# (training.spec.rewards).
EXTRA_REWARDS = {
    "think_format": "1 if the completion is <think>…</think> then <answer>…</answer>, else 0",
    "math_equivalent": "1 if math-verify finds the completion's answer equal to the reference",
    "length_penalty": "−(completion tokens ÷ max new tokens): prefer short completions",
    "token_budget": "−(tokens over the budget ÷ budget), 0 within it (see token budget)",
    "countdown": "1 if the <answer> equation uses each given number once and hits the target",
}

LR_SCHEDULES = {
    "constant": "the learning rate throughout",
    "linear": "linear decay to 0 at the last step",
    "cosine": "cosine decay to 0 at the last step",
}

DTYPES = {
    "float32": "fp32 throughout: exact",
    "bfloat16": "bf16 compute (autocast) with fp32 weights and optimiser: faster on GPUs and "
                "on CPUs with bf16 instructions",
}
DEVICES = {"auto": "CUDA when the worker has a GPU, else CPU", "cpu": "CPU", "cuda": "CUDA GPU"}

DEFAULT_MODEL = "builtin:smollm2-135m-instruct"


def setting(default: Any, help: str, *, label: str = "", choices: dict[str, str] | None = None,
           min: float | None = None, max: float | None = None, advanced: bool = False,
           blank: bool = False, parse: Callable[[str], Any] | None = None,
           models: str | None = None) -> Any:
    """A config field; `advanced` ones sit folded away in the form, under their defaults;
    a `blank` text field may be left empty; `parse` checks a text field's syntax (ValueError).

    `models` marks a field that names models (training.spec.model_refs): "one" reference, a comma
    "list" of them, or a "checkpoint" only."""
    metadata = {"help": help, "label": label, "choices": choices, "min": min, "max": max,
                "advanced": advanced, "blank": blank, "parse": parse, "models": models}
    return field(default=default, metadata=metadata)


def check_model_field(kind: str, text: str, *, paths: bool) -> None:
    """ValueError unless `text` is what a `models` field of this kind accepts."""
    refs = parse_model_refs(text, paths=paths)
    if kind == "one" and len(refs) != 1:
        raise ValueError("give one model")
    if kind == "checkpoint" and not all(
            ref.kind in (RefKind.CHECKPOINT, RefKind.PATH) for ref in refs):
        raise ValueError("give a checkpoint of this project: checkpoint:<id>")


def parse_reward_weights(text: str) -> dict[str, float]:
    """"think_format=0.5, length_penalty=0.1" -> {"think_format": 0.5, "length_penalty": 0.1}.

    >>> parse_reward_weights("think_format=0.5, length_penalty = 0.1")
    {'think_format': 0.5, 'length_penalty': 0.1}
    >>> parse_reward_weights("")
    {}
    """
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, weight = (s.strip() for s in item.partition("="))
        if name not in EXTRA_REWARDS:
            raise ValueError(f"unknown reward {name!r}; known: {', '.join(EXTRA_REWARDS)}")
        try:
            value = float(weight) if sep else 1.0
        except ValueError:
            raise ValueError(f"the weight of {name} must be a number, got {weight!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"the weight of {name} must be finite")
        weights[name] = value
    return weights


def _items(text: str) -> list[str]:
    """The non-empty, comma-separated items of a text field."""
    return [item.strip() for item in text.split(",") if item.strip()]


class ConfigError(ValueError):
    """A config that cannot run; `errors` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


class Settings:
    """A frozen dataclass of `_field`s that parses and validates itself from a plain dict."""

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, paths: bool = False) -> Self:
        """Parse and validate; raise ConfigError naming every bad field, unknown keys included.

        Fields that name models take references (training.spec.model_refs); `paths` admits
        file-system paths too, for a config whose author owns the machine (training.cli) or
        whose paths rlab chose (the worker's training process)."""
        errors: dict[str, str] = {}
        known = {f.name: f for f in cls.fields()}
        for name in data:
            if name not in known:
                errors[name] = "unknown setting"
        values: dict[str, Any] = {}
        for name, f in known.items():
            if name not in data:
                continue
            try:
                values[name] = _coerce(f, data[name], paths=paths)
            except ValueError as exc:
                errors[name] = str(exc)
        if errors:
            raise ConfigError(errors)
        config = cls(**values)
        errors = config.combination_errors()
        if errors:
            raise ConfigError(errors)
        return config

    def combination_errors(self) -> dict[str, str]:
        """Settings that are valid alone but not together, by the field to change."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunConfig(Settings):
    algorithm: str = setting("grpo", "Policy-optimisation method.", choices=ALGORITHMS)
    model: str = setting(
        DEFAULT_MODEL,
        "Policy to fine-tune: 'builtin:smollm2-135m-instruct' (shipped, no download), a "
        "checkpoint of this project (checkpoint:<id>), a model an administrator registered "
        "(local:<name>), or a hub id (needs internet on the worker).", models="one")
    rollout_backend: str = setting("auto", "What generates the rollouts.", choices=ROLLOUT_BACKENDS,
                                  advanced=True)
    lora_rank: int = setting(
        0, "r: train LoRA adapters of this rank on every linear layer instead of all weights "
        "(0 = full fine-tuning).", label="LoRA rank", min=0, max=1024, advanced=True)
    lora_alpha: float = setting(16.0, "LoRA scaling α (updates are scaled by α/r).",
                               label="LoRA α", min=0.0, max=4096.0, advanced=True)
    task: str = setting("arithmetic", "Built-in task with a verifiable answer.", choices=TASKS)
    dataset: str = setting(
        "", "Prompt dataset to train on instead of the built-in task: a JSON-lines file with a "
        "'prompt' and a numeric 'answer' per line, scored by correct_answer. Empty = use the task.",
        blank=True)
    extra_rewards: str = setting(
        "", "Rewards added to the task's correctness reward, as name=weight pairs separated by "
        "commas, e.g. 'think_format=0.5, length_penalty=0.1'. Known: "
        + "; ".join(f"{name}: {text}" for name, text in EXTRA_REWARDS.items()) + ".",
        blank=True, parse=parse_reward_weights, advanced=True)
    token_budget: int = setting(
        0, "Completion tokens allowed before the token_budget reward turns negative "
        "(0 = max new tokens).", min=0, max=32_768, advanced=True)
    max_steps: int = setting(30, "Optimiser steps to run.", min=1, max=100_000)
    prompts_per_step: int = setting(8, "Distinct prompts sampled per step.", min=1, max=1024)
    group_size: int = setting(
        8, "G: completions per prompt; advantages are normalised within each group (SPO: 1).",
        label="Group size (G)", min=1, max=256)
    max_new_tokens: int = setting(32, "Longest completion, in tokens; longer ones are truncated.",
                                 min=1, max=32_768)
    temperature: float = setting(1.0, "Sampling temperature for rollouts.", min=0.05, max=5.0)
    top_p: float = setting(1.0, "Nucleus-sampling mass for rollouts (1 = off).", min=0.01,
                           max=1.0, advanced=True)
    learning_rate: float = setting(2e-5, "AdamW learning rate.", min=1e-9, max=1e-2)
    lr_schedule: str = setting("constant", "How the learning rate changes after warm-up.",
                              label="LR schedule", choices=LR_SCHEDULES, advanced=True)
    warmup_steps: int = setting(
        0, "Steps over which the learning rate rises linearly from 0 to its value.",
        min=0, max=100_000, advanced=True)
    epsilon: float = setting(
        0.2, "ε_low: the importance ratio is clipped below at 1 − ε_low (and above at 1 + ε "
        "unless ε_high is set).", label="Clip ε", min=0.0, max=1.0)
    epsilon_high: float = setting(
        0.0, "ε_high: upper clip, 1 + ε_high; DAPO's clip-higher uses 0.28 (0 = same as ε).",
        label="Clip ε_high", min=0.0, max=10.0, advanced=True)
    loss_type: str = setting("grpo", "How per-token losses are averaged into the step loss.",
                            label="Loss aggregation", choices=LOSS_TYPES)
    scale_rewards: str = setting("group", "What centred rewards are divided by.",
                                choices=REWARD_SCALINGS, advanced=True)
    importance_level: str = setting("token", "Where the importance ratio is taken.",
                                   choices=IMPORTANCE_LEVELS, advanced=True)
    mask_truncated: bool = setting(
        False, "Leave completions that hit the token limit out of the loss (DAPO's overlong "
        "filtering).", label="Mask truncated completions", advanced=True)
    beta: float = setting(
        0.0, "β: weight of the KL penalty to the frozen initial policy (0 = no reference "
        "model is loaded).", label="KL coefficient β", min=0.0, max=10.0)
    kl_estimator: str = setting("k3", "Per-token estimator of KL(π || π_ref) in the penalty.",
                               label="KL estimator", choices=KL_ESTIMATORS, advanced=True)
    kl_placement: str = setting("loss", "Where the KL penalty enters.", label="KL in",
                               choices=KL_PLACEMENTS, advanced=True)
    kl_target: float = setting(
        0.0, "Adaptive KL: adjust β each step so the measured KL tracks this target (Ziegler "
        "et al. 2019); 0 = β stays fixed.", label="KL target", min=0.0, max=100.0, advanced=True)
    kl_horizon: int = setting(
        10_000, "Adaptive KL horizon, in completions: larger adjusts β more slowly.",
        min=1, max=10_000_000, advanced=True)
    reference: str = setting("initial", "The policy the KL is measured against (when β > 0).",
                            label="KL reference", choices=REFERENCES, advanced=True)
    reference_ema_rate: float = setting(
        0.99, "EMA reference: after each step, ref ← rate·ref + (1 − rate)·policy.",
        label="EMA rate", min=0.0, max=1.0, advanced=True)
    reference_soup: str = setting(
        "", "Soup reference: two models (built-in, checkpoint:<id>, local:<name> or hub ids), "
        "separated by a comma, whose weights are averaged.", blank=True, advanced=True,
        models="list")
    entropy_coef: float = setting(
        0.0, "α: weight of an entropy bonus, −α·H per token (0 = none).",
        label="Entropy bonus α", min=0.0, max=1.0, advanced=True)
    top_entropy_quantile: float = setting(
        1.0, "q: apply the policy gradient only to the fraction q of completion tokens with the "
        "highest entropy in each micro-batch; 0.2 follows Wang et al. 2025 (1 = all tokens).",
        label="Top-entropy tokens q", min=0.01, max=1.0, advanced=True)
    num_iterations: int = setting(
        1, "μ: optimisation passes over each batch of rollouts; from the second on, the "
        "importance ratio is taken against the log-probs stored before the first.",
        label="Passes per batch (μ)", min=1, max=64, advanced=True)
    value_learning_rate: float = setting(
        1e-4, "PPO: learning rate of the value head (its own AdamW group; the backbone it shares "
        "with the policy moves at the policy's rate).", min=1e-9, max=1.0, advanced=True)
    value_coef: float = setting(0.5, "PPO: weight of the value loss.", min=0.0, max=100.0,
                               advanced=True)
    value_clip: float = setting(
        0.2, "PPO: new values are clipped to old ± this in the value loss (0 = no clipping).",
        min=0.0, max=100.0, advanced=True)
    gae_gamma: float = setting(1.0, "PPO: discount γ of GAE.", label="GAE γ", min=0.0, max=1.0,
                              advanced=True)
    gae_lambda: float = setting(0.95, "PPO: λ of GAE (1 = Monte-Carlo returns).",
                               label="GAE λ", min=0.0, max=1.0, advanced=True)
    spo_half_life: float = setting(
        0.06, "SPO: D_half of the forgetting factor ρ = 2^(−D/D_half), with D the mean absolute "
        "log-prob change on the prompt's last completion.", label="SPO D_half",
        min=1e-6, max=100.0, advanced=True)
    spo_max_forgetting: float = setting(
        0.96, "SPO: upper bound on ρ, so old evidence always fades.", label="SPO ρ max",
        min=0.0, max=1.0, advanced=True)
    spo_prior_samples: int = setting(
        0, "SPO: completions per prompt sampled before training to start each prompt's "
        "success estimate, which then weighs as much as 8 completions, whatever their number "
        "(the SPO paper samples 8; 0 = start every prompt at α = β = ½, the weight of one).",
        min=0, max=256, advanced=True)
    dpo_loss: str = setting("sigmoid", "DPO: loss on the preference margin.", label="DPO loss",
                           choices=DPO_LOSSES, advanced=True)
    dpo_beta: float = setting(0.1, "DPO: β, the strength of the implicit KL to the reference.",
                             label="DPO β", min=1e-4, max=100.0, advanced=True)
    prompt_sampler: str = setting("uniform", "How each step's prompts are chosen.",
                                 choices=PROMPT_SAMPLERS, advanced=True)
    filter_low: float = setting(
        0.0, "Difficulty filter: keep a prompt only if its group pass rate (the share of its "
        "completions with a correctness reward above 0) is above this.",
        min=0.0, max=1.0, advanced=True)
    filter_high: float = setting(
        1.0, "Difficulty filter: … and below this.", min=0.0, max=1.0, advanced=True)
    filter_max_rounds: int = setting(
        4, "Difficulty filter: generation rounds per step to refill the batch before training "
        "on what was kept.", min=1, max=64, advanced=True)
    reward_models: str = setting(
        "", "Learned reward models (sequence-classification heads: local:<name> or hub ids), "
        "separated by commas; their combined score is one more reward.", blank=True,
        advanced=True, models="list")
    reward_model_weight: float = setting(1.0, "Weight of the reward models' combined score.",
                                        min=-100.0, max=100.0, advanced=True)
    reward_ensemble: str = setting("mean", "How several reward models' scores are combined.",
                                  choices=REWARD_ENSEMBLES, advanced=True)
    reward_ensemble_lambda: float = setting(1.0, "λ of the uncertainty-weighted ensemble.",
                                           label="Ensemble λ", min=0.0, max=100.0,
                                           advanced=True)
    checkpoint_every: int = setting(
        0, "Save a checkpoint (Hugging Face format, with optimiser and sampler state) every "
        "this many steps, and always at the end (0 = at the end only).", min=0, max=100_000,
        advanced=True)
    eval_every: int = setting(
        0, "Evaluate on held-out prompts every this many steps, before the first and after the "
        "last, without stopping the run; the eval/ curves show pass@1, pass@n, maj@n and avg@n. "
        "Held out: a built-in task's held-out split (never trained on), or 10% of a dataset's "
        "prompts, set aside from training when this is on (0 = no evaluation).",
        min=0, max=100_000, advanced=True)
    eval_prompts: int = setting(64, "Held-out prompts per evaluation (0 = all of them).",
                                min=0, max=100_000, advanced=True)
    eval_samples: int = setting(4, "n: samples per held-out prompt in an evaluation.",
                                min=1, max=256, advanced=True)
    eval_temperature: float = setting(
        0.6, "Sampling temperature of the evaluations (the rollouts keep theirs).",
        min=0.05, max=5.0, advanced=True)
    keep_checkpoints: int = setting(2, "Checkpoints kept on disk; older ones are deleted.",
                                   min=1, max=1000, advanced=True)
    resume_from: str = setting(
        "", "A checkpoint to continue from (checkpoint:<id>): weights, optimiser, sampler and "
        "RNG state and step.", blank=True, advanced=True, models="checkpoint")
    max_grad_norm: float = setting(1.0, "Gradient clipping by global norm (0 = off).",
                                  min=0.0, max=1e4, advanced=True)
    micro_batch_size: int = setting(
        16, "Sequences per forward/backward pass; gradients are accumulated over the step.",
        min=1, max=4096, advanced=True)
    dtype: str = setting("float32", "Compute precision.", choices=DTYPES, advanced=True)
    device: str = setting("auto", "Where the worker trains.", choices=DEVICES, advanced=True)
    seed: int = setting(0, "Seed for prompt sampling, generation and initialisation.",
                       min=0, max=2**31 - 1, advanced=True)
    token_details_per_step: int = setting(
        8, "Logged completions per step that also carry per-token log-probs, entropies and "
        "KL, for the token view (0 = none).", min=0, max=4096, advanced=True)
    rollouts_logged_per_step: int = setting(
        64, "Completions per step stored for the rollout table (0 = none).", min=0, max=4096,
        advanced=True)

    def combination_errors(self) -> dict[str, str]:
        """Settings that are valid alone but not together, by the field to change."""
        errors: dict[str, str] = {}
        if self.group_size < 2 and self.algorithm in ("grpo", "rloo"):
            errors["group_size"] = (f"{self.algorithm.upper()} compares completions of the same "
                                    f"prompt: the group size must be at least 2")
        if self.algorithm == "dpo" and not self.dataset:
            errors["dataset"] = "DPO trains on a preference dataset: choose one"
        if self.beta > 0 and self.reference == "none":
            errors["reference"] = "β > 0 needs a reference policy to measure the KL against"
        if self.reference == "soup" and len(_items(self.reference_soup)) != 2:
            errors["reference_soup"] = "give exactly two models, separated by a comma"
        if self.filter_low >= self.filter_high:
            errors["filter_high"] = "must be above the lower bound"
        if self.prompt_sampler == "spo_priority" and self.algorithm != "spo":
            errors["prompt_sampler"] = "SPO priority sampling needs the SPO algorithm"
        if self.prompt_sampler == "curriculum" and not self.dataset:
            errors["prompt_sampler"] = "a curriculum needs a dataset with a difficulty column"
        if self.eval_every and self.algorithm == "dpo":
            errors["eval_every"] = ("DPO trains on preference pairs, which have no verifiable "
                                    "answer: evaluate its checkpoints with an evaluation job")
        if self.kl_target > 0 and self.beta == 0:
            errors["kl_target"] = "adaptive KL adjusts β: set an initial β > 0"
        return errors



def _coerce(f: dataclasses.Field, raw: Any, *, paths: bool) -> Any:
    kind = type(f.default)
    meta = f.metadata
    if kind is bool:
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {raw!r}")
        return raw
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {raw!r}")
    if kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(f"expected a whole number, got {raw!r}")
        try:
            value: Any = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, got {raw!r}") from None
    elif kind is float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
    else:
        if not isinstance(raw, str):
            raise ValueError(f"expected text, got {raw!r}")
        value = raw.strip()
        if not value and not meta["blank"]:
            raise ValueError("must not be empty")
        if meta["parse"] is not None:
            meta["parse"](value)
        if meta["models"] and value:
            check_model_field(meta["models"], value, paths=paths)
    if meta["choices"] and value not in meta["choices"]:
        raise ValueError(f"must be one of: {', '.join(meta['choices'])}")
    if meta["min"] is not None and value < meta["min"]:
        raise ValueError(f"must be at least {meta['min']:g}")
    if meta["max"] is not None and value > meta["max"]:
        raise ValueError(f"must be at most {meta['max']:g}")
    return value
