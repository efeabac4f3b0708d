"""The training loop: sample prompts, generate G completions each, score them, update the policy.

One step is one batch of rollouts and μ optimisation passes over it (micro-batched, gradients
accumulated; one optimiser step per pass). The advantages come from the run's algorithm (GRPO,
RLOO or REINFORCE++), the loss is GRPO's clipped surrogate with its variants. Everything the run
produces goes out through the `Reporter`.
"""

from __future__ import annotations

import copy
import enum
import math
import os
import random
import time
from typing import Any, Callable

import torch
from transformers import get_scheduler, set_seed

from training.algorithms.aggregation import BatchShape
from training.algorithms import advantages_for
from training.algorithms.grpo import GRPOConfig, compute_loss
from training.config import RunConfig, parse_reward_weights
from training.events import Reporter
from training.generation import BackendUnavailable, Rollouts, make_backend
from training.models import ModelNotFound, load_policy
from training.ops import (
    KL_ESTIMATORS,
    high_entropy_mask,
    masked_sum,
    token_logprobs_and_entropy,
)
from training.prompt_dataset import DatasetFileError, load_prompt_dataset
from training.rewards import EXTRA_REWARD_FUNCTIONS
from training.tasks import Example, get_task



def _autocast(config: RunConfig, device: torch.device) -> torch.autocast:
    """bf16 compute for forward passes when the run asks for it; the weights, the optimiser
    state and the loss stay in fp32, since bf16 weights lose most small AdamW updates."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=config.dtype == "bfloat16")


class TokenRecorder:
    """Keeps the per-token log-probs, entropies and KL of chosen completions, as the first
    optimisation pass computes them, for the token view."""

    def __init__(self, rows: range, kl_estimator: str):
        self.wanted = set(rows)
        self.kl_estimator = kl_estimator
        self.details: dict[int, dict[str, list[float]]] = {}

    def record(self, rows: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor,
               ref_logp: torch.Tensor | None, mask: torch.Tensor) -> None:
        """rows (n,); logp, entropy, ref_logp, mask (n, T')."""
        for k, row in enumerate(rows.tolist()):
            if row not in self.wanted:
                continue
            n = int(mask[k].sum().item())
            detail = {"logprob": _rounded(logp[k, :n]), "entropy": _rounded(entropy[k, :n])}
            if ref_logp is not None:
                kl = KL_ESTIMATORS[self.kl_estimator](logp[k, :n], ref_logp[k, :n])
                detail["kl"] = _rounded(kl)
            self.details[row] = detail


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(v, 4) for v in values.detach().float().tolist()]


class Outcome(enum.Enum):
    COMPLETED = "completed"  # ran max_steps
    STOPPED = "stopped"  # should_stop() turned true; the last finished step was reported
    FAILED = "failed"  # a user-fixable problem, already reported with reporter.error


def train(config: RunConfig, reporter: Reporter, *,
          should_stop: Callable[[], bool] = lambda: False) -> Outcome:
    """Run `config` to the end, or until should_stop() is true between steps or micro-batches."""
    set_seed(config.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    if config.device == "cuda" and not torch.cuda.is_available():
        reporter.error("This worker has no CUDA GPU. Set device to 'auto' or 'cpu', "
                       "or launch the run on a GPU worker.")
        return Outcome.FAILED
    device = torch.device(resolve_device(config.device))
    algo = GRPOConfig.from_run_config(config)
    estimate_advantages = advantages_for(algo, config.algorithm)
    try:
        task = load_prompt_dataset(config.dataset) if config.dataset else get_task(config.task)
    except DatasetFileError as exc:
        reporter.error(str(exc))
        return Outcome.FAILED

    # The task's own rewards count with weight 1; the run may add weighted extra ones.
    extra = parse_reward_weights(config.extra_rewards)
    reward_functions = {**task.reward_functions,
                        **{name: EXTRA_REWARD_FUNCTIONS[name] for name in extra}}
    weights = {**dict.fromkeys(task.reward_functions, 1.0), **extra}

    loading = time.perf_counter()
    try:
        model, tokenizer = load_policy(config.model, dtype=torch.float32,
                                       device=device)
    except ModelNotFound as exc:
        reporter.error(str(exc))
        return Outcome.FAILED
    if tokenizer.chat_template is None:
        reporter.error(f"{config.model!r} has no chat template, so its prompts cannot be "
                       f"formatted. Use an instruct or chat model.")
        return Outcome.FAILED
    reference = _frozen_copy(model) if algo.beta > 0 else None
    parameters = sum(p.numel() for p in model.parameters())
    reporter.log(f"loaded {config.model} ({parameters / 1e6:.0f}M parameters, {config.dtype}) "
                 f"on {device} in {time.perf_counter() - loading:.1f} s")
    reporter.status("running", device=str(device), total_steps=config.max_steps)

    # No weight decay: pulling weights toward zero would pull the policy away from the
    # pretrained one, which is what the KL term (when on) measures against.
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    # Stepped once per optimiser step: μ per training step.
    scheduler = get_scheduler(
        "constant_with_warmup" if config.lr_schedule == "constant" else config.lr_schedule,
        optimizer, num_warmup_steps=config.warmup_steps * config.num_iterations,
        num_training_steps=config.max_steps * config.num_iterations)
    prompt_rng = random.Random(config.seed)
    try:
        backend = make_backend(config, model, tokenizer, should_stop)
    except BackendUnavailable as exc:
        reporter.error(str(exc))
        return Outcome.FAILED
    reporter.log(f"rollouts by {backend.name}")
    started = time.perf_counter()
    for step in range(1, config.max_steps + 1):
        if should_stop():
            reporter.log(f"stopped on request after step {step - 1}")
            return Outcome.STOPPED
        step_start = time.perf_counter()
        examples = task.sample(prompt_rng, config.prompts_per_step)
        rollouts = backend.generate(examples, config.group_size)
        generate_s = time.perf_counter() - step_start
        if should_stop():
            reporter.log(f"stopped on request during step {step}")
            return Outcome.STOPPED

        per_function = _score(reward_functions, examples, rollouts, config)
        rewards = sum(weights[name] * values for name, values in per_function.items())  # (N,)
        advantages = estimate_advantages(rewards)  # (N,)

        update_start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        recorder = TokenRecorder(
            range(min(config.token_details_per_step, config.rollouts_logged_per_step)),
            algo.kl_estimator)
        update = _update(model, reference, optimizer, scheduler, rollouts, advantages.to(device),
                         algo, config, should_stop, recorder)
        if update is None:
            reporter.log(f"stopped on request during step {step}")
            return Outcome.STOPPED
        update_s = time.perf_counter() - update_start
        step_s = time.perf_counter() - step_start

        groups = rewards.view(-1, algo.group_size)  # (B, G)
        degenerate = (groups.max(1).values == groups.min(1).values).float().mean().item()
        lengths = rollouts.lengths.float()
        metrics = {
            "reward/mean": rewards.mean().item(),
            "reward/std": rewards.std().item(),
            **{f"reward/{name}": values.mean().item() for name, values in per_function.items()},
            "advantage/mean": advantages.mean().item(),
            "advantage/std": advantages.std().item(),
            **update,
            "completion/length_mean": lengths.mean().item(),
            "completion/length_max": lengths.max().item(),
            "completion/truncated_fraction": rollouts.truncated.float().mean().item(),
            "groups/degenerate_fraction": degenerate,
            "optim/lr": lr,
            "time/generate_s": generate_s,
            "time/update_s": update_s,
            "time/step_s": step_s,
            "perf/tokens_per_s": lengths.sum().item() / step_s,
        }
        reporter.metrics(step, metrics)
        if config.rollouts_logged_per_step:
            reporter.rollouts(step, _rollout_items(examples, rollouts, per_function, rewards,
                                                   advantages, config, recorder.details,
                                                   tokenizer))
        reporter.progress(step, config.max_steps)
        if degenerate == 1.0:
            reporter.log(f"step {step}: every group got equal rewards, so this step had no "
                         f"learning signal", level="warning")
    reporter.log(f"finished {config.max_steps} steps in {time.perf_counter() - started:.1f} s")
    return Outcome.COMPLETED


def resolve_device(name: str) -> str:
    """'auto' becomes 'cuda' when a GPU is visible, else 'cpu'; other names pass through."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _score(reward_functions: dict[str, Callable[..., list[float]]], examples: list[Example],
           rollouts: Rollouts, config: RunConfig) -> dict[str, torch.Tensor]:
    """Each reward function's scores (N,). Functions get every example's columns repeated for
    its group, the completions' token counts, and the run's length settings."""
    group_size = config.group_size
    prompts = [ex.prompt for ex in examples for _ in range(group_size)]
    columns = {key: [ex.columns[key] for ex in examples for _ in range(group_size)]
               for key in examples[0].columns}
    columns.update(completion_tokens=rollouts.lengths.tolist(),
                   max_new_tokens=config.max_new_tokens,
                   token_budget=config.token_budget or config.max_new_tokens)
    return {name: torch.tensor(fn(prompts, rollouts.texts, **columns), dtype=torch.float32)
            for name, fn in reward_functions.items()}


def _update(model, reference, optimizer, scheduler, rollouts: Rollouts, advantages: torch.Tensor,
            algo: GRPOConfig, config: RunConfig, should_stop: Callable[[], bool],
            recorder: TokenRecorder | None = None) -> dict[str, float] | None:
    """μ optimisation passes over the batch: metrics averaged over them (the gradient norm is
    the last pass's), or None if stopped part-way.

    With one pass, π_old is the policy being updated and its log-probs come from the same
    forward pass. With more, π_old's (and π_ref's) log-probs are computed once, before the first
    pass, and the ratio of later passes measures how far the policy has moved since sampling.
    """
    order = _longest_first(rollouts)
    stored = None
    if config.num_iterations > 1:
        stored = (_batch_logprobs(model, rollouts, config, order),
                  _batch_logprobs(reference, rollouts, config, order)
                  if reference is not None else None)
    passes = []
    for iteration in range(config.num_iterations):
        metrics = _update_pass(model, reference, optimizer, rollouts, advantages, algo, config,
                               should_stop, order, stored, recorder if iteration == 0 else None)
        if metrics is None:
            return None
        scheduler.step()
        passes.append(metrics)
    averaged = {key: sum(p[key] for p in passes) / len(passes) for key in passes[0]}
    return {**averaged, "optim/grad_norm": passes[-1]["optim/grad_norm"]}


def _longest_first(rollouts: Rollouts) -> torch.Tensor:
    """Row order for micro-batches: similar lengths share one (less padding to compute), and
    the largest, the one that could run out of memory, comes first."""
    return rollouts.lengths.argsort(descending=True, stable=True)  # (N,)


def _batch_logprobs(model, rollouts: Rollouts, config: RunConfig, order: torch.Tensor,
                    ) -> torch.Tensor:
    """Log-probs (N, T) of every completion token under `model`, without gradient."""
    logps = torch.zeros(rollouts.completion_mask.shape, device=rollouts.input_ids.device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), config.micro_batch_size):
            rows = order[start:start + config.micro_batch_size].to(logps.device)  # (n,)
            input_ids, attention_mask, mask = _micro_batch(rollouts, rows)
            with _autocast(config, logps.device):
                logp, _ = completion_logprobs(model, input_ids, attention_mask, mask.shape[1],
                                              config.temperature)  # (n, T')
            logps[rows, :mask.shape[1]] = logp
    model.train(was_training)
    return logps


def _update_pass(model, reference, optimizer, rollouts: Rollouts, advantages: torch.Tensor,
                 algo: GRPOConfig, config: RunConfig, should_stop: Callable[[], bool],
                 order: torch.Tensor, stored: tuple[torch.Tensor, torch.Tensor | None] | None,
                 recorder: TokenRecorder | None = None) -> dict[str, float] | None:
    """One optimisation pass over the batch; its metrics, or None if stopped part-way."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = rollouts.input_ids.shape[0]
    loss_mask = rollouts.completion_mask  # (N, T)
    if algo.mask_truncated:
        loss_mask = loss_mask * (~rollouts.truncated).to(loss_mask.device)[:, None]
    total_tokens = rollouts.completion_mask.sum().item()
    shape = BatchShape(sequences=total, tokens=int(loss_mask.sum().item()),
                       max_completion_length=config.max_new_tokens,
                       micro_batches=math.ceil(total / config.micro_batch_size))
    sums: dict[str, float] = {"loss/policy": 0.0, "entropy/mean": 0.0}
    for start in range(0, total, config.micro_batch_size):
        if should_stop():
            optimizer.zero_grad(set_to_none=True)
            return None
        rows = order[start:start + config.micro_batch_size].to(advantages.device)  # (n,)
        input_ids, attention_mask, mask = _micro_batch(rollouts, rows)  # mask (n, T')
        with _autocast(config, input_ids.device):  # the forward pass only; backward after it
            logp, entropy = completion_logprobs(model, input_ids, attention_mask, mask.shape[1],
                                                config.temperature,
                                                entropy_grad=config.entropy_coef > 0)  # (n, T')
        width = mask.shape[1]
        if stored is not None:
            old_logp = stored[0][rows, :width]  # (n, T')
            ref_logp = stored[1][rows, :width] if stored[1] is not None else None
        else:
            old_logp = logp.detach()  # π_old = π_θ: a single pass per batch of rollouts
            ref_logp = None
            if reference is not None:
                with torch.no_grad(), _autocast(config, input_ids.device):
                    ref_logp, _ = completion_logprobs(reference, input_ids, attention_mask,
                                                      width, config.temperature)
        if recorder is not None:
            recorder.record(rows, logp, entropy, ref_logp, mask)
        rows_mask = loss_mask[rows, :width]  # (n, T')
        policy_mask = None
        if config.top_entropy_quantile < 1:
            policy_mask = high_entropy_mask(entropy.detach(), rows_mask,
                                            config.top_entropy_quantile)
        loss, stats = compute_loss(
            logp, old_logp, ref_logp, advantages[rows], rows_mask,
            epsilon_low=algo.epsilon_low, epsilon_high=algo.epsilon_high, beta=algo.beta,
            kl_estimator=algo.kl_estimator, importance_level=algo.importance_level,
            loss_type=algo.loss_type, shape=shape, entropy=entropy,
            entropy_coef=config.entropy_coef, policy_mask=policy_mask)
        # `loss` is this micro-batch's share of the step loss, so the gradients add up to the
        # gradient of the whole batch's loss.
        loss.backward()
        token_share = mask.sum().item() / max(total_tokens, 1)
        sums["loss/policy"] += loss.item()
        sums["entropy/mean"] += masked_sum(entropy, mask).item() / max(total_tokens, 1)
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value.item() * token_share
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return {**sums, "optim/grad_norm": grad_norm.item()}


def _micro_batch(rollouts: Rollouts, rows: torch.Tensor,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask (n, P' + T') and completion_mask (n, T') of `rows`, without the
    leading and trailing columns that are padding in every one of them."""
    prompt_length = rollouts.input_ids.shape[1] - rollouts.completion_mask.shape[1]
    attention_mask = rollouts.attention_mask[rows]  # (n, P + T)
    first = int(attention_mask[:, :prompt_length].any(dim=0).int().argmax())
    width = int(rollouts.lengths[rows.cpu()].max())
    end = prompt_length + width
    return (rollouts.input_ids[rows, first:end], attention_mask[:, first:end],
            rollouts.completion_mask[rows, :width])


def completion_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        completion_length: int, temperature: float, *,
                        entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of the last `completion_length` tokens, as sampled.

    input_ids, attention_mask (n, P + T) -> logp, entropy (n, T). Logits are divided by the
    sampling temperature so that log-probs are those of the distribution the tokens came from.
    Position ids follow the attention mask, as in `generate`, so left padding does not shift them.
    """
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (n, P + T)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=completion_length + 1, use_cache=False).logits  # (n, T + 1, V)
    logits = logits[:, :-1] / temperature  # (n, T, V): position P - 1 + t predicts token t
    return token_logprobs_and_entropy(logits, input_ids[:, -completion_length:],
                                      entropy_grad=entropy_grad)


def _rollout_items(examples: list[Example], rollouts: Rollouts,
                   per_function: dict[str, torch.Tensor], rewards: torch.Tensor,
                   advantages: torch.Tensor, config: RunConfig,
                   token_details: dict[int, dict[str, list[float]]], tokenizer,
                   ) -> list[dict[str, Any]]:
    count = min(config.rollouts_logged_per_step, len(rollouts.texts))
    prompt_length = rollouts.input_ids.shape[1] - rollouts.completion_mask.shape[1]
    items = []
    for i in range(count):
        example = examples[i // config.group_size]
        tokens = None
        if i in token_details:
            ids = rollouts.input_ids[i, prompt_length:prompt_length + int(rollouts.lengths[i])]
            tokens = {"text": [tokenizer.decode([t]) for t in ids.tolist()],
                      "advantage": advantages[i].item(), **token_details[i]}
        items.append({
            "prompt": example.prompt,
            "completion": rollouts.texts[i],
            "reward": rewards[i].item(),
            "rewards": {name: values[i].item() for name, values in per_function.items()},
            "advantage": advantages[i].item(),
            "group": i // config.group_size,
            "sample_index": i % config.group_size,
            "prompt_id": example.prompt_id,
            "completion_tokens": int(rollouts.lengths[i]),
            "truncated": bool(rollouts.truncated[i]),
            "extra": dict(example.columns),
            "tokens": tokens,
        })
    return items


def _frozen_copy(model):
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference
