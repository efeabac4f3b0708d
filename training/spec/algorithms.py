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
    # Reads log π_ref itself (PRL's process rewards): the reference is loaded even at β = 0.
    needs_reference: bool = False
    # the kind of data it trains on: PROMPTS, PREFERENCES, or TEXT_CORPUS (unlabelled text)
    trains_on: str = PROMPTS
    # RunConfig -> {setting: what is wrong}: settings of the run that do not suit the method
    check: Callable[[Any], dict[str, str]] | None = None
    # Runs on several devices (training.parallel): its advantages depend only on the batch's
    # rewards, and it adds no loss, state or model of its own that would need its own reduction.
    data_parallel: bool = False


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
class PRLSettings(Settings):
    prl_eta: float = setting(
        200.0, "η of the objective E[r] − (1/η)·KL(π ‖ π_ref): each token's advantage is the "
        "outcome advantage less (1/η)·Σ log π_old/π_ref from the end of its step to the end of "
        "the completion; the authors' runs use 200.", label="PRL η", section="algorithm",
        min=1e-3, max=1e6)
    prl_step_rule: str = setting(
        "length", "Where a step of the reasoning ends (a completion's last token always does).",
        label="PRL steps", section="algorithm",
        choices={"length": "every L tokens (the authors' runs: 256)",
                 "newline": "at each newline token",
                 "blank_line": "at each blank-line token (two newlines)"})
    prl_step_length: int = setting(
        256, "L: tokens per step when steps are fixed blocks.", label="PRL step length L",
        section="algorithm", min=1, max=100_000)


@dataclass(frozen=True)
class DPHSettings(Settings):
    dph_eta: float = setting(
        0.01, "η: weight of the divergence to the initial policy π₀, measured on π₀'s stored "
        "samples of the prompts it solves; the authors' code defaults to 0.01 and suggests "
        "0.01-0.05 for the forward KL and α, 0.05-0.2 for JS.", label="DPH-RL η",
        section="algorithm", min=0.0, max=10.0)
    dph_generator: str = setting(
        "forward_kl", "The f-divergence D_f(π_θ ‖ π₀) = E_π₀[f(u)], u = π_θ/π₀ per token, on "
        "π₀'s stored samples.", label="DPH-RL divergence", section="algorithm",
        choices={"forward_kl": "forward KL, f(u) = (u − 1) − log u: KL(π₀ ‖ π_θ), "
                               "mass-covering (the authors' default)",
                 "js": "Jensen-Shannon, f(u) = u log u − (u + 1) log((u + 1)/2): bounded",
                 "alpha": "α-divergence, f(u) = (u^(1−α) − (1 − α)u − α)/(α(α − 1)): "
                          "the reverse KL as α → 0, the forward KL as α → 1"})
    dph_alpha: float = setting(
        0.2, "α of the α-divergence, strictly between 0 and 1; the authors' code uses 0.2.",
        label="DPH-RL α", section="algorithm", min=0.01, max=0.99, advanced=True)
    dph_probe_samples: int = setting(
        8, "k: completions of the initial policy per training prompt before the first step. A "
        "prompt all k of whose completions pass is solved: the steps leave it out, and the "
        "divergence rehearses it instead (the paper samples 8).", label="DPH-RL samples k",
        section="algorithm", min=1, max=256)
    dph_samples_per_solved: int = setting(
        1, "Completions of the initial policy drawn per solved prompt to store, with their "
        "log π₀; only those that pass are kept (the authors' code draws 1).",
        label="DPH-RL stored samples per prompt", section="algorithm", min=1, max=64,
        advanced=True)
    dph_samples_per_step: int = setting(
        8, "Stored samples in each step's divergence term, taken in turn from a shuffled "
        "order of all of them. The authors' scripts add 256 to each step's 2,048 rollouts, one "
        "in eight: 8 keeps that share at 8 prompts × G = 8.",
        label="DPH-RL samples per step", section="algorithm", min=1, max=4096, advanced=True)


@dataclass(frozen=True)
class KDRLSettings(Settings):
    kd_teacher: str = setting(
        "", "π_T: the teacher the policy is pulled towards, a model that shares the policy's "
        "tokenizer: 'builtin:smollm2-135m-instruct', a checkpoint of this project "
        "(checkpoint:<id>), a registered model (local:<name>) or a hub id. A teacher whose "
        "vocabulary differs from the policy's is refused when the run starts.",
        label="KD teacher", section="algorithm", blank=True, models="one")
    kd_estimator: str = setting(
        "k2", "How KL(π_θ || π_T) is estimated on each sampled token of the loss. "
        "k1 = log π_θ − log π_T is not offered: in the loss its gradient is 0 in expectation. "
        "The gradients below hold on the policy's own samples: in the later passes of μ > 1, "
        "only approximately.",
        label="KD estimator", section="algorithm", advanced=True,
        choices={"k2": "½ (log π_θ − log π_T)²: in the loss its gradient is the reverse KL's, "
                       "mode-seeking (KDRL's, the best in the paper)",
                 "k3": "π_T/π_θ − log(π_T/π_θ) − 1: an unbiased value, but in the loss its "
                       "gradient is the forward KL(π_T || π_θ)'s, mass-covering"})
    kd_schedule: str = setting(
        "linear", "How β_KD, the weight of the KL to the teacher, moves from its start to its "
        "end value over the anneal steps; it stays at the end value after them.",
        label="β_KD schedule", section="algorithm",
        choices={"constant": "β_KD start throughout",
                 "linear": "a straight line (the paper's annealing: 5e-3 to 1e-3, 5e-5 a step)",
                 "cosine": "half a cosine: slow at both ends"})
    kd_coef_start: float = setting(
        5e-3, "β_KD at the first step (the paper anneals from 5e-3).", label="β_KD start",
        section="algorithm", min=0.0, max=10.0)
    kd_coef_end: float = setting(
        1e-3, "β_KD after the anneal steps (the paper anneals to 1e-3).", label="β_KD end",
        section="algorithm", min=0.0, max=10.0)
    kd_anneal_steps: int = setting(
        80, "Steps over which β_KD moves from start to end: the paper's decay of 5e-5 a step "
        "from 5e-3 to 1e-3 takes 80 (0 = the whole run: the last step has the end value).",
        label="β_KD anneal steps", section="algorithm", min=0, max=100_000, advanced=True)
    kd_reward_guided: str = setting(
        "none", "Which responses the KL to the teacher applies to (reward-guided KD); the "
        "others still count in the loss's normaliser.", label="Reward-guided KD",
        section="algorithm",
        choices={"none": "every response",
                 "response": "responses whose reward is at most the threshold: the incorrect "
                             "ones (the paper's response-level masking)",
                 "group": "responses of prompts none of whose responses has a reward above "
                          "the threshold (the paper's group-level masking)"})
    kd_reward_threshold: float = setting(
        0.0, "Reward-guided KD: a response whose reward is above this counts as correct and "
        "gets no KL to the teacher (0: a positive reward is correct, as in the paper).",
        label="KD reward threshold", section="algorithm", min=-100.0, max=100.0,
        advanced=True)


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


def _dph_check(config: Any) -> dict[str, str]:
    if config.beta > 0:
        return {"beta": "DPH-RL has no online reference model: its divergence to the initial "
                        "policy uses the log-probs stored with that policy's samples. Set β to 0"}
    return {}


def _kdrl_needs(config: Any) -> dict[str, str]:
    settings, errors = config.algorithm_settings, {}
    if not settings.kd_teacher:
        errors["kd_teacher"] = ("KDRL distils from a teacher: name a model that shares the "
                                "policy's tokenizer")
    if settings.kd_coef_start == 0 and (settings.kd_schedule == "constant"
                                        or settings.kd_coef_end == 0):
        errors["kd_coef_start"] = ("β_KD is 0 throughout, so the teacher would never count: "
                                   "raise it, or train with GRPO")
    return errors


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
                  "training.algorithms.grpo:GRPO", GRPOSettings, min_group_size=2,
                  data_parallel=True),
    AlgorithmSpec("rloo", "RLOO: leave-one-out baseline, the mean of the other completions of "
                  "the prompt", "training.algorithms.rloo:RLOO", min_group_size=2,
                  data_parallel=True),
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
    AlgorithmSpec("prl", "PRL: process rewards per step, the outcome advantage less the "
                  "log-ratio to the reference still to come", "training.algorithms.prl:PRL",
                  PRLSettings, min_group_size=2, needs_reference=True),
    AlgorithmSpec("dph_rl", "DPH-RL: GRPO on the prompts the initial policy does not solve, "
                  "an f-divergence to it on its own samples of those it does",
                  "training.algorithms.dph:DPHRL", DPHSettings, min_group_size=2,
                  check=_dph_check),
    AlgorithmSpec("kdrl", "KDRL: GRPO plus a reverse-KL pull towards a teacher on the policy's "
                  "own rollouts", "training.algorithms.kdrl:KDRL", KDRLSettings,
                  min_group_size=2, check=_kdrl_needs),
    AlgorithmSpec("rmt", "RMT: mid-training on unlabelled text; next-token prediction as RL, "
                  "with a shrinking token budget, an easy-to-hard token curriculum and a "
                  "next-token loss", "training.algorithms.rmt:RMT", RMTSettings,
                  min_group_size=2, trains_on=TEXT_CORPUS, check=_text_corpus),
):
    register(_spec)
