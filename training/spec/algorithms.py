"""The catalogue of policy-optimisation algorithms: each one's name, one-line description, own
settings and engine, torch-free so that the web app can offer them and check their settings.

An algorithm is two things: this entry, with a `Settings` dataclass of the settings only it
reads (a help text per field; the form shows them when the algorithm is chosen), and its
engine, a `training.algorithms.base.Algorithm` subclass in its own file under
`training/algorithms/`, named here by import path so that nothing here imports torch. A plug-in
adds both with `register`; the form, the config checks and the trainer then pick it up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from training.spec.settings import Settings, setting
from training.spec.text_corpus import BUILTIN_CORPORA


@dataclass(frozen=True)
class NoSettings(Settings):
    """An algorithm with no settings of its own."""


# What an algorithm trains on (AlgorithmSpec.trains_on), as the web app's dataset kinds name it.
PROMPTS, PREFERENCES, TEXT_CORPUS = "prompts", "preferences", "text_corpus"


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str  # what configs and the form call it: "grpo"
    description: str  # one line for the form: "GRPO: advantages centred within each group"
    engine: str | type  # "module:Class" of its training.algorithms.base.Algorithm, or the class
    settings: type[Settings] = NoSettings  # the settings only this algorithm reads
    min_group_size: int = 1  # G below this cannot work: GRPO and RLOO compare a group's members
    offline: bool = False  # trains on a preference dataset, with its own loop, not on rollouts
    # the kind of data it trains on: PROMPTS, PREFERENCES, or TEXT_CORPUS (unlabelled text)
    trains_on: str = PROMPTS
    # RunConfig -> {setting: what is wrong}: settings of the run that do not suit the method
    check: Callable[[Any], dict[str, str]] | None = None


# name -> one-line description: the choices of RunConfig.algorithm, kept in step by `register`.
ALGORITHMS: dict[str, str] = {}
_SPECS: dict[str, AlgorithmSpec] = {}


def register(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add an algorithm. Its settings may not reuse a name of RunConfig's or another
    algorithm's settings, since configs are stored flat."""
    taken = {f.name for other in _SPECS.values() if other.name != spec.name
             for f in other.settings.fields()}
    clash = taken & {f.name for f in spec.settings.fields()}
    if clash:
        raise ValueError(f"{spec.name}: settings {', '.join(sorted(clash))} belong to another "
                         f"algorithm")
    _SPECS[spec.name] = spec
    ALGORITHMS[spec.name] = spec.description
    return spec


def unregister(name: str) -> None:
    """Remove a registered algorithm (a plug-in's tests clean up with this)."""
    del _SPECS[name], ALGORITHMS[name]


def algorithm_spec(name: str) -> AlgorithmSpec:
    """The registered algorithm `name`; KeyError if there is none."""
    return _SPECS[name]


def all_specs() -> list[AlgorithmSpec]:
    return list(_SPECS.values())


@dataclass(frozen=True)
class GRPOSettings(Settings):
    scale_rewards: str = setting(
        "group", "What centred rewards are divided by.", section="algorithm", advanced=True,
        choices={"group": "divide by the group's std (GRPO)",
                 "batch": "divide by the whole batch's std",
                 "none": "no division: rewards only centred on the group mean (Dr. GRPO)"})


@dataclass(frozen=True)
class SPOSettings(Settings):
    spo_half_life: float = setting(
        0.06, "D_half of the forgetting factor ρ = 2^(−D/D_half), with D the mean absolute "
        "log-prob change on the prompt's last completion.", label="SPO D_half",
        section="algorithm", min=1e-6, max=100.0, advanced=True)
    spo_max_forgetting: float = setting(
        0.96, "Upper bound on ρ, so old evidence always fades.", label="SPO ρ max",
        section="algorithm", min=0.0, max=1.0, advanced=True)
    spo_prior_samples: int = setting(
        0, "Completions per prompt sampled before training to start each prompt's success "
        "estimate, which then weighs as much as 8 completions, whatever their number (the SPO "
        "paper samples 8; 0 = start every prompt at α = β = ½, the weight of one).",
        section="algorithm", min=0, max=256, advanced=True)


@dataclass(frozen=True)
class PPOSettings(Settings):
    value_learning_rate: float = setting(
        1e-4, "Learning rate of the value head (its own AdamW group; the backbone it shares "
        "with the policy moves at the policy's rate).", section="algorithm", min=1e-9, max=1.0)
    value_coef: float = setting(0.5, "Weight of the value loss.", section="algorithm", min=0.0,
                                max=100.0)
    value_clip: float = setting(
        0.2, "New values are clipped to old ± this in the value loss (0 = no clipping).",
        section="algorithm", min=0.0, max=100.0, advanced=True)
    gae_gamma: float = setting(1.0, "Discount γ of GAE.", label="GAE γ", section="algorithm",
                               min=0.0, max=1.0, advanced=True)
    gae_lambda: float = setting(0.95, "λ of GAE (1 = Monte-Carlo returns).", label="GAE λ",
                                section="algorithm", min=0.0, max=1.0)


@dataclass(frozen=True)
class DPOSettings(Settings):
    dpo_loss: str = setting(
        "sigmoid", "Loss on the preference margin.", label="DPO loss", section="algorithm",
        choices={"sigmoid": "−log σ(β·margin) (Rafailov et al.)",
                 "ipo": "(margin − 1/(2β))² (Azar et al.)"})
    dpo_beta: float = setting(0.1, "β, the strength of the implicit KL to the reference.",
                              label="DPO β", section="algorithm", min=1e-4, max=100.0)


@dataclass(frozen=True)
class GTPOSettings(Settings):
    gtpo_conflict_weight: float = setting(
        2.0, "w: a conflict token's positive update is multiplied by this (its negative one is "
        "dropped); the authors' code uses 2.", label="GTPO conflict weight w",
        section="algorithm", min=1.0, max=10.0)
    gtpo_entropy_threshold: float = setting(
        0.7, "τ_H: completions whose mean next-token entropy, in nats, is above this are left "
        "out of the update; the authors' code uses 0.7.", label="GTPO entropy threshold τ_H",
        section="algorithm", min=0.0, max=20.0)
    gtpo_entropy_coef: float = setting(
        0.1, "c: each kept completion's advantage is lowered by c × its mean entropy; the "
        "authors' code uses 0.1.", label="GTPO entropy coefficient c", section="algorithm",
        min=0.0, max=10.0)


@dataclass(frozen=True)
class RMTSettings(Settings):
    rmt_budget_start: int = setting(
        32, "B_0: the token budget at the start. The length reward peaks when a completion "
        "has B_t tokens; B_t shrinks from B_0 towards B_min over the run.",
        label="RMT start budget B_0", section="algorithm", min=1, max=32_768)
    rmt_budget_floor: int = setting(
        4, "B_min: the budget never goes below this many tokens.",
        label="RMT budget floor B_min", section="algorithm", min=1, max=32_768)
    rmt_budget_decay: float = setting(
        0.25, "γ of the schedule B_t = max(B_min, B_0 · γ^((t/T)^k)), t the step, T the "
        "steps of the run: at the last step B_0 · γ (1 = a fixed budget).",
        label="RMT budget decay γ", section="algorithm", min=0.001, max=1.0)
    rmt_budget_power: float = setting(
        1.0, "k of the schedule: above 1 the budget shrinks late in the run, below 1 early.",
        label="RMT budget power k", section="algorithm", min=0.05, max=20.0, advanced=True)
    rmt_curriculum_width: float = setting(
        0.2, "σ of the curriculum: a target token whose proxy entropy ranks at quantile u "
        "(0 = the lowest of the corpus, 1 = the highest) is drawn with weight "
        "exp(−(u − p)²/2σ²), where p goes from 0 at the first step to 1 at the last: easy "
        "tokens first, hard ones last. A large σ samples nearly uniformly.",
        label="RMT curriculum width σ", section="algorithm", min=0.01, max=100.0)
    rmt_ntp_coef: float = setting(
        0.1, "λ: weight of the next-token cross-entropy on every token of the step's "
        "passages, added to the RL loss (0 = RL on the sampled tokens only).",
        label="RMT next-token loss λ", section="algorithm", min=0.0, max=100.0)
    rmt_context_tokens: int = setting(
        128, "The corpus is cut into windows of this many tokens; a question's text is the "
        "window up to its target token, so no prompt's text is longer.",
        label="RMT context window", section="algorithm", min=8, max=8192, advanced=True)
    rmt_min_context: int = setting(
        8, "A target token has at least this many tokens of its window before it.",
        label="RMT minimum context", section="algorithm", min=1, max=8192, advanced=True)

    def combination_errors(self) -> dict[str, str]:
        errors = {}
        if self.rmt_budget_floor > self.rmt_budget_start:
            errors["rmt_budget_floor"] = "must be at most the start budget B_0"
        if self.rmt_min_context >= self.rmt_context_tokens:
            errors["rmt_min_context"] = "must be below the context window"
        return errors


def _one_completion_per_prompt(config: Any) -> dict[str, str]:
    if config.group_size != 1:
        return {"group_size": "SPO samples one completion per prompt: set the group size to 1"}
    return {}


def _no_reference(config: Any) -> dict[str, str]:
    if config.beta > 0:
        return {"beta": f"{config.algorithm.upper()} uses no reference model: set β to 0"}
    return {}


def _text_corpus(config: Any) -> dict[str, str]:
    errors = {}
    if not config.dataset and config.task not in BUILTIN_CORPORA:
        errors["task"] = ("RMT trains on unlabelled text: choose the task text_corpus (the "
                          "built-in corpus) or a text-corpus dataset")
    if config.prompt_sampler != "uniform":
        errors["prompt_sampler"] = ("RMT draws its target tokens by its own entropy "
                                    "curriculum: leave the prompt sampler uniform")
    if config.eval_every:
        errors["eval_every"] = ("RMT reports its next-token accuracy at every step "
                                "(rmt/next_token_accuracy); held-out evaluation of a text "
                                "corpus is not offered: set 0")
    settings = config.algorithm_settings
    if settings.rmt_budget_start > config.max_new_tokens:
        errors["rmt_budget_start"] = ("the length reward peaks at B_t tokens: B_0 must be at "
                                      "most the max new tokens")
    return errors


for _spec in (
    AlgorithmSpec("grpo", "GRPO: advantages centred (and scaled) within each prompt's group",
                  "training.algorithms.grpo:GRPO", GRPOSettings, min_group_size=2),
    AlgorithmSpec("rloo", "RLOO: leave-one-out baseline, the mean of the other completions of "
                  "the prompt", "training.algorithms.rloo:RLOO", min_group_size=2),
    AlgorithmSpec("reinforce_pp", "REINFORCE++: one baseline for the whole batch, normalised "
                  "by its std", "training.algorithms.reinforce_pp:ReinforcePP"),
    AlgorithmSpec("spo", "SPO: one completion per prompt; baseline = a persistent per-prompt "
                  "success estimate", "training.algorithms.spo:SPO", SPOSettings,
                  check=_one_completion_per_prompt),
    AlgorithmSpec("ppo", "PPO: a learned value head and GAE give per-token advantages",
                  "training.algorithms.ppo:PPO", PPOSettings),
    AlgorithmSpec("dpo", "DPO: offline, from a preference dataset's chosen and rejected replies",
                  "training.algorithms.dpo:DPO", DPOSettings, offline=True,
                  trains_on=PREFERENCES),
    AlgorithmSpec("gtpo", "GTPO: GRPO with conflict tokens protected and high-entropy "
                  "completions left out; no reference model", "training.algorithms.gtpo:GTPO",
                  GTPOSettings, min_group_size=2, check=_no_reference),
    AlgorithmSpec("rmt", "RMT: mid-training on unlabelled text; next-token prediction as RL, "
                  "with a shrinking token budget, an easy-to-hard token curriculum and a "
                  "next-token loss", "training.algorithms.rmt:RMT", RMTSettings,
                  min_group_size=2, trains_on=TEXT_CORPUS, check=_text_corpus),
):
    register(_spec)
