"""Run configuration: one dataclass, with the help text, bounds, choices and section of every
field, plus the chosen algorithm's own settings (training.spec.algorithms).

The web app builds its experiment form from these fields and validates with `RunConfig.from_dict`,
so the trainer and the form can never disagree about a default or a limit. A config is stored
flat, one key per setting; a config file may also nest its settings by section. No torch here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Self

from training.spec.algorithms import ALGORITHMS, TEXT_CORPUS, algorithm_spec, all_specs
from training.spec.settings import SECTIONS, ConfigError, Settings, setting

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
    "dump": "distribution-level curriculum (DUMP): each step's prompts come from the dataset's "
            "distributions (a column names each row's) chosen by a UCB on their recent mean "
            "absolute advantage; uniformly within one",
}
REWARD_ENSEMBLES = {
    "mean": "the mean of the reward models' scores",
    "min": "the lowest score (worst-case optimisation, WCO, Coste et al.)",
    "uwo": "mean − λ·variance across reward models (uncertainty-weighted optimisation, UWO, "
           "Coste et al.)",
    "uncertainty": "mean − λ·std across reward models: UWO's penalty in the units of the scores",
}
LOSS_TYPES = {
    "grpo": "token mean per completion, then mean over completions (DeepSeekMath)",
    "dapo": "token mean over the whole batch: every token weighs the same (DAPO)",
    "dr_grpo": "token sum over completions × max new tokens: no length bias (Dr. GRPO)",
    "bnpo": "token mean within each micro-batch, then mean over micro-batches",
}
IMPORTANCE_LEVELS = {
    "token": "one importance ratio per token (GRPO, PPO)",
    "sequence": "one ratio per completion, the geometric mean of its tokens' (GSPO)",
}
KL_ESTIMATORS = {
    "k1": "log π − log π_ref: an unbiased value, but in the loss its gradient is 0 in "
          "expectation (use it in the reward, or with the bias correction)",
    "k2": "½ (log π − log π_ref)²: a biased value; in the loss its gradient is the reverse KL's",
    "k3": "π_ref/π − log(π_ref/π) − 1: unbiased and non-negative; in the loss its gradient is "
          "the forward KL(π_ref || π)'s, unless the bias correction is on (GRPO's and TRL's "
          "default)",
}
TASKS = {
    "arithmetic": "One-digit sums: 'Compute a + b.', answer checked as the last number",
    "arithmetic-2digit": "Two-digit sums, harder: 'Compute a + b.', answer checked as the last "
                         "number",
}
# Unlabelled text, for mid-training (an algorithm whose spec trains on "text_corpus"): built-in
# corpora (training.spec.text_corpus.BUILTIN_CORPORA) a run can name as its task.
TEXT_TASKS = {
    "text_corpus": "The built-in text corpus: about 34 KB of plain English prose, unlabelled, "
                   "for mid-training (RMT)",
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
SHARDINGS = {
    "ddp": "DDP: every device holds the whole model, its gradients and optimiser state",
    "fsdp": "FSDP2: parameters, gradients and optimiser state sharded across the devices",
}

DEFAULT_MODEL = "builtin:smollm2-135m-instruct"


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


@dataclass(frozen=True)
class RunConfig(Settings):
    """A training run's settings. `algorithm_settings` holds the settings of the chosen
    algorithm only, an instance of its spec's `settings` class (its defaults when not given)."""

    algorithm: str = setting("grpo", "Policy-optimisation method.", choices=ALGORITHMS,
                             section="algorithm")
    model: str = setting(
        DEFAULT_MODEL,
        "Policy to fine-tune: 'builtin:smollm2-135m-instruct' (shipped, no download), a "
        "checkpoint of this project (checkpoint:<id>), a model an administrator registered "
        "(local:<name>), or a hub id (needs internet on the worker).", models="one",
        section="model")
    rollout_backend: str = setting("auto", "What generates the rollouts.", choices=ROLLOUT_BACKENDS,
                                  advanced=True, section="rollout")
    lora_rank: int = setting(
        0, "r: train LoRA adapters of this rank on every linear layer instead of all weights "
        "(0 = full fine-tuning).", label="LoRA rank", min=0, max=1024, advanced=True,
        section="model")
    lora_alpha: float = setting(16.0, "LoRA scaling α (updates are scaled by α/r).",
                               label="LoRA α", min=0.0, max=4096.0, advanced=True, section="model")
    task: str = setting("arithmetic", "Built-in task: prompts with a verifiable answer, or "
                        "unlabelled text for mid-training.", choices={**TASKS, **TEXT_TASKS},
                        section="task")
    dataset: str = setting(
        "", "Prompt dataset to train on instead of the built-in task: a JSON-lines file with a "
        "'prompt' and a numeric 'answer' per line, scored by correct_answer. Empty = use the task.",
        blank=True, section="task")
    extra_rewards: str = setting(
        "", "Rewards added to the task's correctness reward, as name=weight pairs separated by "
        "commas, e.g. 'think_format=0.5, length_penalty=0.1'. Known: "
        + "; ".join(f"{name}: {text}" for name, text in EXTRA_REWARDS.items()) + ".",
        blank=True, parse=parse_reward_weights, advanced=True, section="rewards")
    token_budget: int = setting(
        0, "Completion tokens allowed before the token_budget reward turns negative "
        "(0 = max new tokens).", min=0, max=32_768, advanced=True, section="rewards")
    max_steps: int = setting(30, "Optimiser steps to run.", min=1, max=100_000,
                             section="optimisation")
    prompts_per_step: int = setting(8, "Distinct prompts sampled per step.", min=1, max=1024,
                                    section="rollout")
    group_size: int = setting(
        8, "G: completions per prompt; advantages are normalised within each group (SPO: 1).",
        label="Group size (G)", min=1, max=256, section="rollout")
    max_new_tokens: int = setting(32, "Longest completion, in tokens; longer ones are truncated.",
                                 min=1, max=32_768, section="rollout")
    temperature: float = setting(1.0, "Sampling temperature for rollouts.", min=0.05, max=5.0,
                                 section="rollout")
    top_p: float = setting(1.0, "Nucleus-sampling mass for rollouts (1 = off).", min=0.01,
                           max=1.0, advanced=True, section="rollout")
    learning_rate: float = setting(2e-5, "AdamW learning rate.", min=1e-9, max=1e-2,
                                   section="optimisation")
    lr_schedule: str = setting("constant", "How the learning rate changes after warm-up.",
                              label="LR schedule", choices=LR_SCHEDULES, advanced=True,
                              section="optimisation")
    warmup_steps: int = setting(
        0, "Steps over which the learning rate rises linearly from 0 to its value.",
        min=0, max=100_000, advanced=True, section="optimisation")
    epsilon: float = setting(
        0.2, "ε_low: the importance ratio is clipped below at 1 − ε_low (and above at 1 + ε "
        "unless ε_high is set).", label="Clip ε", min=0.0, max=1.0, section="algorithm")
    epsilon_high: float = setting(
        0.0, "ε_high: upper clip, 1 + ε_high; DAPO's clip-higher uses 0.28 (0 = same as ε).",
        label="Clip ε_high", min=0.0, max=10.0, advanced=True, section="algorithm")
    loss_type: str = setting("grpo", "How per-token losses are averaged into the step loss.",
                            label="Loss aggregation", choices=LOSS_TYPES, section="algorithm")
    importance_level: str = setting("token", "Where the importance ratio is taken.",
                                   choices=IMPORTANCE_LEVELS, advanced=True, section="algorithm")
    mask_truncated: bool = setting(
        False, "Leave completions that hit the token limit out of the loss (DAPO's overlong "
        "filtering).", label="Mask truncated completions", advanced=True, section="algorithm")
    beta: float = setting(
        0.0, "β: weight of the KL penalty to the frozen initial policy (0 = no reference "
        "model is loaded).", label="KL coefficient β", min=0.0, max=10.0, section="kl")
    kl_estimator: str = setting(
        "k3", "Per-token estimator of KL(π || π_ref) in the penalty. In the loss, the gradient "
        "it gives is not always the reverse KL's: see each one.", label="KL estimator",
        choices=KL_ESTIMATORS, advanced=True, section="kl")
    kl_bias_correction: bool = setting(
        False, "KL in the loss: multiply each token's KL by the importance ratio π_θ/π_old, as "
        "TRL's use_bias_correction_kl (DeepSeek-V3.2). Then k1 and k3 in the loss give the "
        "reverse KL's gradient, also in the later passes over a batch (μ > 1), whose tokens "
        "were sampled by π_old.", label="KL bias correction", advanced=True, section="kl")
    kl_placement: str = setting("loss", "Where the KL penalty enters.", label="KL in",
                               choices=KL_PLACEMENTS, advanced=True, section="kl")
    kl_target: float = setting(
        0.0, "Adaptive KL: adjust β each step so the measured KL tracks this target (Ziegler "
        "et al. 2019), in nats per completion: each completion's KL summed over its tokens, "
        "averaged over the step (the kl/sequence_mean chart); 0 = β stays fixed.",
        label="KL target (per completion)", min=0.0, max=100.0, advanced=True,
        section="kl")
    kl_horizon: int = setting(
        10_000, "Adaptive KL horizon, in completions: larger adjusts β more slowly.",
        min=1, max=10_000_000, advanced=True, section="kl")
    reference: str = setting("initial", "The policy the KL is measured against (when β > 0).",
                            label="KL reference", choices=REFERENCES, advanced=True, section="kl")
    reference_ema_rate: float = setting(
        0.99, "EMA reference: after each step, ref ← rate·ref + (1 − rate)·policy.",
        label="EMA rate", min=0.0, max=1.0, advanced=True, section="kl")
    reference_soup: str = setting(
        "", "Soup reference: two models (built-in, checkpoint:<id>, local:<name> or hub ids), "
        "separated by a comma, whose weights are averaged.", blank=True, advanced=True,
        models="list", section="kl")
    entropy_coef: float = setting(
        0.0, "α: weight of an entropy bonus, −α·H per token (0 = none).",
        label="Entropy bonus α", min=0.0, max=1.0, advanced=True, section="algorithm")
    top_entropy_quantile: float = setting(
        1.0, "q: apply the policy gradient only to the fraction q of completion tokens with the "
        "highest entropy in each micro-batch; 0.2 follows Wang et al. 2025 (1 = all tokens).",
        label="Top-entropy tokens q", min=0.01, max=1.0, advanced=True, section="algorithm")
    num_iterations: int = setting(
        1, "μ: optimisation passes over each batch of rollouts; from the second on, the "
        "importance ratio is taken against the log-probs stored before the first.",
        label="Passes per batch (μ)", min=1, max=64, advanced=True, section="optimisation")
    prompt_sampler: str = setting("uniform", "How each step's prompts are chosen.",
                                 choices=PROMPT_SAMPLERS, advanced=True, section="sampling")
    filter_low: float = setting(
        0.0, "Difficulty filter: keep a prompt only if its group pass rate (the share of its "
        "completions with a correctness reward above 0) is above this.",
        min=0.0, max=1.0, advanced=True, section="sampling")
    filter_high: float = setting(
        1.0, "Difficulty filter: … and below this.", min=0.0, max=1.0, advanced=True,
        section="sampling")
    filter_max_rounds: int = setting(
        4, "Difficulty filter: generation rounds per step to refill the batch before training "
        "on what was kept.", min=1, max=64, advanced=True, section="sampling")
    dump_column: str = setting(
        "source", "DUMP: the dataset column that names each prompt's distribution (text or a "
        "number per row). An uploaded dataset has the columns of its roles: 'source' when a "
        "column was mapped as the source, or 'difficulty' to treat each level as a distribution.",
        label="DUMP distribution column", advanced=True, section="sampling")
    dump_window: int = setting(
        300, "DUMP: how many of a distribution's most recent completions its learnability L̂_d, "
        "their mean absolute advantage, is taken over (the authors' code: 300).",
        label="DUMP window", min=1, max=1_000_000, advanced=True, section="sampling")
    dump_exploration: float = setting(
        1.0, "DUMP: c, the weight of the UCB exploration bonus c·√(2 ln(Σn + 1) / (n_d + 1)), "
        "n_d the completions drawn from distribution d so far (0 = by learnability alone).",
        label="DUMP exploration c", min=0.0, max=100.0, advanced=True, section="sampling")
    dump_temperature: float = setting(
        0.1, "DUMP: τ of the softmax over the distributions' UCB scores that gives their "
        "sampling probabilities: lower concentrates on the highest score (the code: 0.1).",
        label="DUMP temperature τ", min=0.001, max=100.0, advanced=True, section="sampling")
    reward_models: str = setting(
        "", "Learned reward models (sequence-classification heads: local:<name> or hub ids), "
        "separated by commas; their combined score is one more reward.", blank=True,
        advanced=True, models="list", section="rewards")
    reward_model_weight: float = setting(1.0, "Weight of the reward models' combined score.",
                                        min=-100.0, max=100.0, advanced=True, section="rewards")
    reward_ensemble: str = setting("mean", "How several reward models' scores are combined.",
                                  choices=REWARD_ENSEMBLES, advanced=True, section="rewards")
    reward_ensemble_lambda: float = setting(1.0, "λ of the uwo and uncertainty ensembles.",
                                           label="Ensemble λ", min=0.0, max=100.0,
                                           advanced=True, section="rewards")
    checkpoint_every: int = setting(
        0, "Save a checkpoint (Hugging Face format, with optimiser and sampler state) every "
        "this many steps, and always at the end (0 = at the end only).", min=0, max=100_000,
        advanced=True, section="checkpoints")
    eval_every: int = setting(
        0, "Evaluate on held-out prompts every this many steps, before the first and after the "
        "last, without stopping the run; the eval/ curves show pass@1, pass@n, maj@n and avg@n. "
        "Held out: a built-in task's held-out split (never trained on), or 10% of a dataset's "
        "prompts, set aside from training when this is on (0 = no evaluation).",
        min=0, max=100_000, advanced=True, section="evaluation")
    eval_prompts: int = setting(64, "Held-out prompts per evaluation (0 = all of them).",
                                min=0, max=100_000, advanced=True, section="evaluation")
    eval_samples: int = setting(4, "n: samples per held-out prompt in an evaluation.",
                                min=1, max=256, advanced=True, section="evaluation")
    eval_temperature: float = setting(
        0.6, "Sampling temperature of the evaluations (the rollouts keep theirs).",
        min=0.05, max=5.0, advanced=True, section="evaluation")
    keep_checkpoints: int = setting(2, "Checkpoints kept on disk; older ones are deleted.",
                                   min=1, max=1000, advanced=True, section="checkpoints")
    resume_from: str = setting(
        "", "A checkpoint to continue from (checkpoint:<id>): weights, optimiser, sampler and "
        "RNG state and step.", blank=True, advanced=True, models="checkpoint",
        section="checkpoints")
    max_grad_norm: float = setting(1.0, "Gradient clipping by global norm (0 = off).",
                                  min=0.0, max=1e4, advanced=True, section="optimisation")
    micro_batch_size: int = setting(
        16, "Sequences per forward/backward pass; gradients are accumulated over the step.",
        min=1, max=4096, advanced=True, section="performance")
    dtype: str = setting("float32", "Compute precision.", choices=DTYPES, advanced=True,
                         section="performance")
    device: str = setting("auto", "Where the worker trains.", choices=DEVICES, advanced=True,
                          section="performance")
    devices: int = setting(
        1, "Devices (GPUs, or CPU processes on a worker without GPUs) the run trains on, on one "
        "worker: one process per device under torchrun, data parallel. Each process generates "
        "its share of every step's prompts; the step equals a one-process step on the same "
        "batch. Prompts per step must divide evenly among them; GRPO and RLOO with transformers "
        "rollouts only.", min=1, max=64, advanced=True, section="performance")
    sharding: str = setting(
        "ddp", "How the devices of a run on several devices share the model (only meaningful "
        "when devices > 1). FSDP2 shards parameters, gradients and optimiser state across the "
        "devices, for a model whose training state does not fit on one device; each device "
        "still holds the whole model's weights while it generates. Full fine-tuning only.",
        choices=SHARDINGS, advanced=True, section="performance")
    seed: int = setting(0, "Seed for prompt sampling, generation and initialisation.",
                       min=0, max=2**31 - 1, advanced=True, section="optimisation")
    token_details_per_step: int = setting(
        8, "Logged completions per step that also carry per-token log-probs, entropies and "
        "KL, for the token view (0 = none).", min=0, max=4096, advanced=True, section="rollout")
    rollouts_logged_per_step: int = setting(
        64, "Completions per step stored for the rollout table (0 = none).", min=0, max=4096,
        advanced=True, section="rollout")

    algorithm_settings: Settings | None = field(default=None, compare=True)

    def __post_init__(self) -> None:
        # None, or another algorithm's (`dataclasses.replace` of the algorithm): the defaults
        own = algorithm_spec(self.algorithm).settings
        if not isinstance(self.algorithm_settings, own):
            object.__setattr__(self, "algorithm_settings", own())

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, paths: bool = False) -> Self:
        """Parse and validate a flat or section-nested dict; raise ConfigError naming every bad
        field. Settings of algorithms other than the chosen one are ignored: stored experiments
        and flat files carry every algorithm's settings of their time."""
        if not isinstance(data, dict):
            raise ConfigError({"config": "expected an object of settings"})
        data, errors = flatten_sections(data)
        values, field_errors = cls.parse_fields(data, paths=paths)
        errors = {**field_errors, **errors}  # where a setting is given says more
        algorithm = values.get("algorithm", cls.algorithm)
        if "algorithm" in errors:
            algorithm = cls.algorithm  # still check the other settings against something
        own = algorithm_spec(algorithm).settings
        algo_values, algo_errors = own.parse_fields(data, paths=paths)
        errors.update(algo_errors)
        known = {f.name for f in cls.fields()} | {
            f.name for spec in all_specs() for f in spec.settings.fields()}
        errors.update({name: "unknown setting" for name in data if name not in known})
        if errors:
            raise ConfigError(errors)
        config = cls(**values, algorithm_settings=own(**algo_values))
        errors = {**config.combination_errors(),
                  **config.algorithm_settings.combination_errors()}
        if errors:
            raise ConfigError(errors)
        return config

    def to_dict(self) -> dict[str, Any]:
        """Flat: every setting of RunConfig and of the chosen algorithm, by name."""
        return {**super().to_dict(), **self.algorithm_settings.to_dict()}

    def with_changes(self, **changes: Any) -> RunConfig:
        """This config with some settings changed, an algorithm's own ones included."""
        return type(self).from_dict({**self.to_dict(), **changes}, paths=True)

    @classmethod
    def fields_for(cls, algorithm: str) -> list[dataclasses.Field]:
        """The settings that a run of `algorithm` has: RunConfig's, then its own."""
        return [*cls.fields(), *algorithm_spec(algorithm).settings.fields()]

    @classmethod
    def fields_of(cls, values: dict[str, Any]) -> tuple[dataclasses.Field, ...]:
        """RunConfig's settings and those of the algorithm that `values` names (a KDRL
        teacher is a model the web app checks, as the policy is)."""
        algorithm = values.get("algorithm", cls.algorithm)
        return tuple(cls.fields_for(algorithm)) if algorithm in ALGORITHMS else cls.fields()

    @classmethod
    def every_field(cls) -> list[tuple[dataclasses.Field, str | None]]:
        """Every setting of every registered algorithm, each with the algorithm it belongs to
        (None: RunConfig's own, which every run has)."""
        return [*((f, None) for f in cls.fields()),
                *((f, spec.name) for spec in all_specs() for f in spec.settings.fields())]

    @property
    def uses_reference(self) -> bool:
        """Whether the run loads a reference policy: for the KL penalty (β > 0), or because its
        algorithm reads log π_ref itself."""
        return self.reference != "none" and (
            self.beta > 0 or algorithm_spec(self.algorithm).needs_reference)

    def combination_errors(self) -> dict[str, str]:
        """Settings that are valid alone but not together, by the field to change."""
        errors: dict[str, str] = {}
        spec = algorithm_spec(self.algorithm)
        if self.group_size < spec.min_group_size:
            errors["group_size"] = (f"{spec.name.upper()} compares completions of the same "
                                    f"prompt: the group size must be at least "
                                    f"{spec.min_group_size}")
        if spec.check is not None:
            errors.update(spec.check(self))
        if self.task in TEXT_TASKS and spec.trains_on != TEXT_CORPUS:
            errors["task"] = ("the text corpus is unlabelled text, for mid-training: choose "
                              "RMT, or a task with verifiable answers")
        if spec.offline and not self.dataset:
            errors["dataset"] = (f"{spec.name.upper()} trains on a preference dataset: "
                                 f"choose one")
        if self.beta > 0 and self.reference == "none":
            errors["reference"] = "β > 0 needs a reference policy to measure the KL against"
        if spec.needs_reference and self.reference == "none":
            errors["reference"] = (f"{spec.name.upper()} measures log π/π_ref: choose a "
                                   f"reference policy")
        if self.reference == "soup" and len(_items(self.reference_soup)) != 2:
            errors["reference_soup"] = "give exactly two models, separated by a comma"
        if self.filter_low >= self.filter_high:
            errors["filter_high"] = "must be above the lower bound"
        if self.prompt_sampler == "spo_priority" and self.algorithm != "spo":
            errors["prompt_sampler"] = "SPO priority sampling needs the SPO algorithm"
        if self.prompt_sampler == "curriculum" and not self.dataset:
            errors["prompt_sampler"] = "a curriculum needs a dataset with a difficulty column"
        if self.prompt_sampler == "dump" and not self.dataset:
            errors["prompt_sampler"] = ("DUMP samples prompts by distribution: choose a dataset "
                                        "with a column that names each row's (see DUMP "
                                        "distribution column)")
        if self.eval_every and spec.offline:
            errors["eval_every"] = (f"{spec.name.upper()} trains on preference pairs, which "
                                    f"have no verifiable answer: evaluate its checkpoints with "
                                    f"an evaluation job")
        if (self.beta > 0 and self.kl_placement == "loss" and self.kl_estimator == "k1"
                and not self.kl_bias_correction):
            errors["kl_estimator"] = ("k1 in the loss has a zero gradient in expectation: "
                                      "choose k2 or k3, put the KL in the reward, or turn on "
                                      "the KL bias correction")
        if self.kl_target > 0 and self.beta == 0:
            errors["kl_target"] = "adaptive KL adjusts β: set an initial β > 0"
        if self.devices > 1:
            errors.update(self.data_parallel_errors())
        return errors

    def data_parallel_errors(self) -> dict[str, str]:
        """What a run on several devices (training.parallel) cannot do yet, by the field to
        change: each is something whose value would depend on how the batch is split."""
        errors: dict[str, str] = {}
        name = self.algorithm.upper()
        if not algorithm_spec(self.algorithm).data_parallel:
            errors["algorithm"] = (f"{name} runs on one device: choose GRPO or RLOO, or set "
                                   f"devices to 1")
        if self.prompts_per_step % self.devices:
            errors["prompts_per_step"] = (f"each of the {self.devices} devices generates an "
                                          f"equal share of the prompts: use a multiple of "
                                          f"{self.devices}")
        if self.rollout_backend == "vllm":
            errors["rollout_backend"] = ("runs on several devices generate with transformers "
                                         "for now: choose transformers or auto")
        if self.prompt_sampler == "difficulty_filter":
            errors["prompt_sampler"] = ("the difficulty filter runs on one device: choose "
                                        "another sampler, or set devices to 1")
        if self.loss_type == "bnpo":
            errors["loss_type"] = ("bnpo's normaliser is each micro-batch's, which depends on "
                                   "how the batch is split: choose grpo, dapo or dr_grpo")
        if self.kl_placement == "reward" and self.uses_reference:
            errors["kl_placement"] = ("on several devices the KL enters the loss: choose loss")
        if self.top_entropy_quantile < 1:
            errors["top_entropy_quantile"] = ("the entropy quantile is taken per micro-batch, "
                                              "which depends on how the batch is split: set 1")
        if self.sharding == "fsdp":
            errors.update(self.sharding_errors())
        return errors

    def sharding_errors(self) -> dict[str, str]:
        """What a run whose model is sharded over the devices (FSDP2) cannot do: each needs the
        whole model in one process, or its weights as plain tensors."""
        errors: dict[str, str] = {}
        if self.lora_rank:
            errors["lora_rank"] = ("LoRA trains a small adapter, which DDP handles: set "
                                   "sharding to ddp, or LoRA rank to 0")
        if self.uses_reference and self.reference == "ema":
            errors["reference"] = ("the EMA reference follows the whole policy after each step: "
                                   "choose the initial reference, or sharding ddp")
        if self.eval_every:
            errors["eval_every"] = ("evaluations run on the first process alone, which a "
                                    "sharded model cannot: set eval every to 0, or sharding ddp")
        return errors


def flatten_sections(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A config whose settings may be nested by section, flat; and the errors of settings given
    twice or in a section they do not belong to. {"rollout": {"group_size": 4}, "model": "x"} ->
    {"group_size": 4, "model": "x"}: a section is a key of SECTIONS whose value is an object (a
    setting with a section's name, such as "model", holds text)."""
    sections = {key: value for key, value in data.items()
                if key in SECTIONS and isinstance(value, dict)}
    flat = {key: value for key, value in data.items() if key not in sections}
    home = {f.name: f.metadata["section"] for f, _ in RunConfig.every_field()}
    errors: dict[str, str] = {}
    for section, settings in sections.items():
        for name, value in settings.items():
            if name in flat:
                errors[name] = "given twice"
            elif name in home and home[name] != section:
                errors[name] = f"belongs in section '{home[name]}', not '{section}'"
            flat[name] = value
    return flat, errors
