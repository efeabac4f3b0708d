"""The training loop: sample prompts, generate G completions each, score them, update the policy.

One step is one batch of rollouts and μ optimisation passes over it (training.loops.policy_update).
The advantages come from the run's algorithm (GRPO, RLOO, REINFORCE++, SPO or PPO), the loss is
GRPO's clipped surrogate with its variants. The KL to the reference (training.policies.references)
enters
the loss or the reward, with a fixed or adaptive coefficient (training.algorithms.kl_control).
Checkpoints
(training.checkpoints) let a run resume exactly. Everything the run produces goes out through
the `Reporter`. DPO, the offline method, has its own loop (training.loops.offline).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import torch

from training import checkpoints
from training.algorithms import advantages_for, ppo, spo
from training.algorithms.grpo import GRPOConfig
from training.spec.config import RunConfig, parse_reward_weights
from training.spec.events import Reporter
from training.loops.evaluation import eval_metrics, evaluation_examples, sample_and_score
from training.rollouts.generation import (
    BackendUnavailable,
    Rollouts,
    Sampling,
    concat_rollouts,
    make_backend,
)
from training.algorithms.kl_control import KLController
from training.policies.loading import ModelNotFound, apply_lora, load_adapter, load_policy
from training.ops import KL_ESTIMATORS, masked_mean, masked_sum
from training.loops.policy_update import (
    StepBatch,
    TokenRecorder,
    batch_logprobs,
    update_policy,
)
from training.spec.prompt_dataset import DatasetFileError, load_prompt_dataset
from training.loops.setup import (
    Outcome,
    load_run_policy,
    make_optimizer,
    peak_memory,
    prepare_process,
    resolve_device,
    run_steps,
    save_checkpoint,
)
from training.policies.references import ReferenceMismatch, make_reference
from training.policies.reward_models import RewardModelEnsemble
from training.policies.reward_models import reward_functions as reward_model_functions
from training.spec.rewards import EXTRA_REWARD_FUNCTIONS
from training.samplers import SamplerError, in_bounds, make_sampler
from training.rollouts.scoring import score_rollouts
from training.spec.tasks import Example, get_task

# Problems a user can fix in the run's settings: reported as they are, not as a crash.
SETUP_ERRORS = (ModelNotFound, DatasetFileError, BackendUnavailable, checkpoints.CheckpointError,
                ReferenceMismatch, SamplerError)


def train(config: RunConfig, reporter: Reporter, *,
          should_stop: Callable[[], bool] = lambda: False,
          output_dir: Path | None = None) -> Outcome:
    """Run `config` to the end, or until should_stop() is true between steps or micro-batches.
    Checkpoints go to `output_dir` (none without one)."""
    if config.algorithm == "dpo":
        from training.loops.offline import train_dpo

        return train_dpo(config, reporter, should_stop=should_stop, output_dir=output_dir)
    if not prepare_process(config, reporter):
        return Outcome.FAILED
    try:
        run = _Training(config, reporter, should_stop, output_dir)
    except SETUP_ERRORS as exc:
        reporter.error(str(exc))
        return Outcome.FAILED
    try:
        return run.loop()
    finally:
        run.backend.close()


class _Training:
    """One run's model, optimiser, reference, sampler and backend, and its step loop."""

    def __init__(self, config: RunConfig, reporter: Reporter, should_stop: Callable[[], bool],
                 output_dir: Path | None):
        self.config, self.reporter, self.should_stop = config, reporter, should_stop
        self.output_dir = output_dir
        self.device = torch.device(resolve_device(config.device))
        self.algo = GRPOConfig.from_run_config(config)
        self.spo = spo.SPOConfig.from_run_config(config) if config.algorithm == "spo" else None
        if config.algorithm in ("grpo", "rloo", "reinforce_pp"):
            self.estimate_advantages = advantages_for(self.algo, config.algorithm)
        self.tracker = spo.ValueTracker(self.spo) if self.spo else None
        self.last_completions = spo.LastCompletions() if self.spo else None
        self.task = load_prompt_dataset(config.dataset) if config.dataset else get_task(config.task)
        self.eval_examples: list[Example] = []
        if config.eval_every:
            # A dataset's held-out prompts are set aside; a task's train split already excludes
            # its own.
            if config.dataset:
                self.task = self.task.split("train")
            self.eval_examples = evaluation_examples(config.task, config.dataset, "held_out",
                                                     config.eval_prompts, config.seed)
        # The task's own rewards count with weight 1; the run may add weighted extra ones.
        extra = parse_reward_weights(config.extra_rewards)
        self.reward_functions = {**self.task.reward_functions,
                                 **{name: EXTRA_REWARD_FUNCTIONS[name] for name in extra}}
        self.weights = {**dict.fromkeys(self.task.reward_functions, 1.0), **extra}
        self.sampler = make_sampler(config, self.task, self.tracker)
        resumed = checkpoints.load(config.resume_from) if config.resume_from else None
        if resumed is not None and (resumed.adapter is not None) != bool(config.lora_rank):
            raise checkpoints.CheckpointError(
                "The checkpoint holds LoRA adapters; resume it with the LoRA rank it was "
                "trained with." if resumed.adapter is not None else
                "The checkpoint holds a fully fine-tuned model; resume it with LoRA rank 0.")
        for setting in ("algorithm", "prompt_sampler"):
            # Each algorithm and sampler keeps its own state (a value head, a value tracker, a
            # curriculum's position) to go on with.
            saved = resumed.state["config"].get(setting) if resumed is not None else None
            if resumed is not None and saved != getattr(config, setting):
                raise checkpoints.CheckpointError(
                    f"The checkpoint is from a run with {setting} {saved}; resume it with the "
                    f"same {setting}. To start afresh from its weights, give the checkpoint as the "
                    f"model.")

        loading = time.perf_counter()
        self.model, self.tokenizer = load_run_policy(config, resumed, self.device)
        if config.reward_models:
            self._add_reward_models()
        initial = self.model
        if resumed is not None and resumed.adapter is None and config.reference == "initial" \
                and config.beta > 0:
            initial, _ = load_policy(config.model, dtype=torch.float32, device=self.device)
        if config.lora_rank:
            self.model = apply_lora(self.model, config.lora_rank, config.lora_alpha)
            if resumed is not None:
                load_adapter(self.model, resumed.adapter)
            initial = self.model
        self.reference = make_reference(config, initial, self.device)
        self.kl = KLController(config.beta, config.kl_target, config.kl_horizon)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        reporter.log(f"loaded {config.model} ({total / 1e6:.0f}M parameters, "
                     f"{trainable / 1e6:.2f}M trained, {config.dtype}) on {self.device} in "
                     f"{time.perf_counter() - loading:.1f} s")

        groups = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        self.value_head = None
        if config.algorithm == "ppo":
            self.value_head = ppo.ValueHead(self.model.config.get_text_config().hidden_size)
            self.value_head.to(self.device)
            groups.append({"params": list(self.value_head.parameters()),
                           "lr": config.value_learning_rate})
        # μ optimiser steps per training step
        self.optimizer, self.scheduler = make_optimizer(groups, config, config.num_iterations)
        self.first_step = 1
        if resumed is not None:
            self._restore(resumed)
        self.backend = make_backend(config, self.model, self.tokenizer, should_stop,
                                    warn=lambda message: reporter.log(message, level="warning"))
        if resumed is not None:
            self.backend.sync_weights(self.model)  # an engine starts from the model's folder
        reporter.log(f"rollouts by {self.backend.name}")
        if self.spo is not None and self.spo.prior_samples and resumed is None:
            self._spo_prior()

    def _add_reward_models(self) -> None:
        """Learned reward models: their combined score counts with its weight; each model's own
        is recorded beside it with weight 0."""
        config = self.config
        refs = [ref.strip() for ref in config.reward_models.split(",") if ref.strip()]
        ensemble = RewardModelEnsemble(
            refs, device=self.device,
            dtype=torch.bfloat16 if config.dtype == "bfloat16" else torch.float32,
            how=config.reward_ensemble, lam=config.reward_ensemble_lambda,
            batch_size=config.micro_batch_size)
        functions = reward_model_functions(ensemble)
        self.reward_functions.update(functions)
        self.weights.update(dict.fromkeys(functions, 0.0), reward_model=config.reward_model_weight)
        self.reporter.log("reward models: " + ", ".join(
            f"reward_model/{i} = {ref}" for i, ref in enumerate(refs)))

    def loop(self) -> Outcome:
        if self.eval_examples and self.first_step == 1:
            self.evaluate(0)  # the starting point of the eval/ curves
        return run_steps(self.config, self.reporter, self.should_stop, device=self.device,
                         first_step=self.first_step, step=self.step,
                         save_checkpoint=self.save_checkpoint if self.output_dir else None)

    def step(self, step: int) -> dict[str, float] | None:
        """One training step, reported; its metrics, or None if stopped part-way."""
        config, algo = self.config, self.algo
        step_start = time.perf_counter()
        sampled = self._sample_and_score()
        if sampled is None:
            return None
        examples, rollouts, per_function, extra = sampled
        rewards = sum(self.weights[name] * values for name, values in per_function.items())
        ids = [e.prompt_id for e in examples for _ in range(config.group_size)]  # (N,)

        batch = StepBatch(rollouts=rollouts, advantages=rewards)
        shaped = rewards  # (N,)
        beta = self.kl.beta
        if self.value_head is not None:
            extra.update(self._ppo_targets(batch, rewards, beta))
        elif self.reference is not None and config.kl_placement == "reward":
            kl_start = time.perf_counter()
            batch.old_logp = batch_logprobs(self.model, rollouts, config)
            batch.ref_logp = batch_logprobs(self.reference.model, rollouts, config)
            kl = KL_ESTIMATORS[algo.kl_estimator](batch.old_logp, batch.ref_logp)  # (N, T)
            sequence_kl = masked_sum(kl, rollouts.completion_mask, dim=1).cpu()  # (N,)
            shaped = rewards - beta * sequence_kl
            extra["kl/sequence_mean"] = sequence_kl.mean().item()
            extra["reward/shaped_mean"] = shaped.mean().item()
            extra["time/kl_reward_s"] = time.perf_counter() - kl_start
        if self.tracker is not None:
            baselines = self.tracker.value(ids)  # (N,) v̂, before this step's rewards
            batch.advantages = spo.compute_advantages(shaped, baselines, self.spo.std_eps)
            extra["spo/baseline_mean"] = baselines.mean().item()
        elif self.value_head is None:
            batch.advantages = self.estimate_advantages(shaped)  # (N,)
        batch.advantages = batch.advantages.to(self.device)

        update_start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        recorder = TokenRecorder(
            range(min(config.token_details_per_step, config.rollouts_logged_per_step)),
            algo.kl_estimator)
        update = update_policy(
            self.model, self.reference.model if self.reference else None, self.optimizer,
            self.scheduler, batch, algo, config, self.should_stop,
            beta=beta if config.kl_placement == "loss" else 0.0, recorder=recorder,
            value_head=self.value_head)
        if update is None:
            return None
        update_s = time.perf_counter() - update_start
        sync_start = time.perf_counter()
        self.backend.sync_weights(self.model)
        if self.reference is not None:
            self.reference.after_step(self.model)
        sync_s = time.perf_counter() - sync_start
        if "kl/mean" in update:
            self.kl.update(update["kl/mean"], len(rewards))
        if self.tracker is not None:
            extra.update(self._spo_track(ids, rollouts, rewards))
        self.sampler.observe(examples, rewards, config.group_size)
        step_s = time.perf_counter() - step_start

        degenerate = None
        if config.group_size > 1:
            groups = rewards.view(-1, config.group_size)  # (B, G)
            degenerate = (groups.max(1).values == groups.min(1).values).float().mean().item()
            extra["groups/degenerate_fraction"] = degenerate
        lengths = rollouts.lengths.float()
        advantages = batch.advantages.cpu()  # (N,)
        if advantages.dim() == 2:  # PPO: statistics over completion tokens, a mean per row shown
            mask = rollouts.completion_mask.cpu()
            shown = masked_mean(advantages, mask, dim=1)  # (N,)
            advantages = advantages[mask.bool()]
        else:
            shown = advantages
        metrics = {
            "reward/mean": rewards.mean().item(),
            "reward/std": _std(rewards),
            **{f"reward/{name}": values.mean().item() for name, values in per_function.items()},
            **{f"reward/{name}/std": _std(values) for name, values in per_function.items()},
            "advantage/mean": advantages.mean().item(),
            "advantage/std": _std(advantages),
            "advantage/min": advantages.min().item(),
            "advantage/max": advantages.max().item(),
            "advantage/zero_fraction": spo.zero_advantage_fraction(advantages),
            **update,
            **extra,
            "completion/length_mean": lengths.mean().item(),
            "completion/length_max": lengths.max().item(),
            "completion/truncated_fraction": rollouts.truncated.float().mean().item(),
            "optim/lr": lr,
            "time/update_s": update_s,
            "time/weight_sync_s": sync_s,
            "time/step_s": step_s,
            "perf/tokens_per_s": lengths.sum().item() / step_s,
            **peak_memory(self.device),
        }
        if self.reference is not None:
            metrics["kl/beta"] = beta
        self.reporter.metrics(step, metrics)
        if config.rollouts_logged_per_step:
            self.reporter.rollouts(step, _rollout_items(
                examples, rollouts, per_function, rewards, shown, batch.advantages.cpu(), config,
                recorder.details, self.tokenizer))
        self.reporter.progress(step, config.max_steps)
        if degenerate == 1.0:
            self.reporter.log(f"step {step}: every group got equal rewards, so this step had no "
                              f"learning signal", level="warning")
        if self.eval_examples and (step % config.eval_every == 0 or step == config.max_steps):
            self.evaluate(step)
        return metrics

    def evaluate(self, step: int) -> None:
        """Periodic evaluation: eval_samples samples of each held-out prompt from the run's own
        backend (in sync with the policy), at the evaluation temperature; pass@1, pass@n, maj@n
        and avg@n under eval/ at this step. Skipped when a stop request interrupts it."""
        config = self.config
        started = time.perf_counter()
        n = config.eval_samples
        results = sample_and_score(
            self.backend, self.eval_examples, self.task.reward_functions, config, samples=n,
            batch_prompts=config.prompts_per_step, should_stop=self.should_stop,
            sampling=Sampling(config.eval_temperature, 1.0, config.max_new_tokens))
        if results is None:
            return
        metrics = eval_metrics(results, pass_ks=sorted({1, n}), maj_ks=[n])
        metrics["time/eval_s"] = time.perf_counter() - started
        self.reporter.metrics(step, metrics)

    def _sample_and_score(self) -> tuple[list[Example], Rollouts, dict[str, torch.Tensor],
                                         dict[str, float]] | None:
        """The step's prompts, their rollouts and each reward function's scores, and timing
        metrics; None if stopped. The difficulty filter keeps only groups whose pass rate lies
        strictly between its bounds, generating again until the batch is full (DAPO's dynamic
        sampling), for at most filter_max_rounds rounds."""
        config = self.config
        size, group = config.prompts_per_step, config.group_size
        filtering = config.prompt_sampler == "difficulty_filter"
        timings = {"time/generate_s": 0.0, "time/score_s": 0.0}
        parts: list[tuple[list[Example], Rollouts, dict[str, torch.Tensor]]] = []
        kept = sampled_groups = rounds = 0
        while kept < size and rounds < (config.filter_max_rounds if filtering else 1):
            rounds += 1
            started = time.perf_counter()
            examples = self.sampler.sample(size)
            rollouts = self.backend.generate(examples, group)
            timings["time/generate_s"] += time.perf_counter() - started
            if self.should_stop():
                return None
            started = time.perf_counter()
            per_function = score_rollouts(self.reward_functions, examples, rollouts, config)
            timings["time/score_s"] += time.perf_counter() - started
            sampled_groups += len(examples)
            if not filtering:
                parts.append((examples, rollouts, per_function))
                break
            correct = sum(per_function[name] for name in self.task.reward_functions)
            keep = in_bounds(correct, group, config.filter_low,
                             config.filter_high).nonzero().flatten()[:size - kept]  # (k,)
            if len(keep):
                rows = (keep[:, None] * group + torch.arange(group)).flatten()  # (k*G,)
                parts.append(([examples[i] for i in keep.tolist()], rollouts.select(rows),
                              {name: values[rows] for name, values in per_function.items()}))
                kept += len(keep)
        if not parts:  # nothing within the bounds: train on the last round, say so
            self.reporter.log(f"difficulty filter: no group's pass rate was within "
                              f"({config.filter_low:g}, {config.filter_high:g}) in {rounds} "
                              f"rounds; training on the last round's groups", level="warning")
            parts.append((examples, rollouts, per_function))
        if filtering:
            timings["filter/rounds"] = rounds
            timings["filter/kept_fraction"] = kept / sampled_groups
        examples = [example for part in parts for example in part[0]]
        rollouts = concat_rollouts([part[1] for part in parts], self.tokenizer.pad_token_id) \
            if len(parts) > 1 else parts[0][1]
        per_function = {name: torch.cat([part[2][name] for part in parts])
                        for name in parts[0][2]}
        return examples, rollouts, per_function, timings

    def _ppo_targets(self, batch: StepBatch, rewards: torch.Tensor,
                     beta: float) -> dict[str, float]:
        """PPO's per-token advantages and value targets, by GAE over the values the head gives
        before the update; the KL, when in the reward, is charged token by token."""
        config, rollouts = self.config, batch.rollouts
        started = time.perf_counter()
        batch.old_logp, batch.old_values = batch_logprobs(
            self.model, rollouts, config, self.value_head)  # (N, T) each, before any update
        kl = None
        if self.reference is not None:
            batch.ref_logp = batch_logprobs(self.reference.model, rollouts, config)
            if config.kl_placement == "reward":
                kl = KL_ESTIMATORS[self.algo.kl_estimator](batch.old_logp, batch.ref_logp)
        mask = rollouts.completion_mask.to(batch.old_values.dtype)
        per_token = ppo.token_rewards(rewards.to(mask.device), mask, kl, beta)  # (N, T)
        advantages, batch.returns = ppo.gae(per_token, batch.old_values, mask,
                                            config.gae_gamma, config.gae_lambda)
        batch.advantages = ppo.whiten(advantages, mask)
        return {"value/mean": masked_mean(batch.old_values, mask).item(),
                "value/explained_variance": ppo.explained_variance(
                    batch.old_values, batch.returns, mask).item(),
                "return/mean": masked_mean(batch.returns, mask).item(),
                "time/values_s": time.perf_counter() - started}

    def _spo_track(self, ids: list[str], rollouts: Rollouts,
                   rewards: torch.Tensor) -> dict[str, float]:
        """SPO's tracker update, after the step's policy update: D on each prompt's previous
        completion (its log-probs then, against the policy now), then α, β with ρ(D)."""
        change = torch.zeros(len(ids))  # (N,) D; 0 for a prompt seen the first time
        seen = [i for i, prompt_id in enumerate(ids) if prompt_id in self.last_completions]
        if seen:
            past = self.last_completions.batch([ids[i] for i in seen],
                                               self.tokenizer.pad_token_id, self.device)
            now = batch_logprobs(self.model, past.rollouts, self.config)  # (n, T)
            change[seen] = spo.log_prob_change(past.logprobs, now,
                                               past.rollouts.completion_mask).cpu()
        self.last_completions.remember(ids, rollouts.input_ids, rollouts.attention_mask,
                                       rollouts.completion_mask,
                                       batch_logprobs(self.model, rollouts, self.config))
        rho = self.tracker.update(ids, rewards, change)
        return {"spo/log_prob_change": change.mean().item(), "spo/rho": rho.mean().item(),
                "spo/first_seen_fraction": 1 - len(seen) / len(ids)}

    def _spo_prior(self) -> None:
        """Prime every prompt's tracker from n completions of the initial policy."""
        n = self.spo.prior_samples
        config = dataclasses.replace(self.config, group_size=n)  # _score repeats by group
        pool = list(self.task.examples)
        started = time.perf_counter()
        for start in range(0, len(pool), self.config.prompts_per_step):
            chunk = pool[start:start + self.config.prompts_per_step]
            rollouts = self.backend.generate(chunk, n)
            per_function = score_rollouts(self.reward_functions, chunk, rollouts, config)
            rewards = sum(self.weights[k] * v for k, v in per_function.items())  # (b*n,)
            for example, row in zip(chunk, rewards.view(-1, n)):
                self.tracker.prime(example.prompt_id, successes=int((row > 0).sum()), trials=n)
        self.reporter.log(f"SPO prior: {n} completions for each of {len(pool)} prompts in "
                          f"{time.perf_counter() - started:.1f} s")

    def save_checkpoint(self, step: int, final: bool) -> None:
        state = {"kl": self.kl.state_dict(),
                 "sampler": self.sampler.state_dict(),
                 "spo_tracker": self.tracker.state_dict() if self.tracker else None}
        tensors = {"optimizer": self.optimizer.state_dict(),
                   "scheduler": self.scheduler.state_dict(),
                   "reference": self.reference.state_dict() if self.reference else None,
                   "value_head": self.value_head.state_dict() if self.value_head else None,
                   # token ids and log-probs: too bulky for the JSON state
                   "spo_completions": self.last_completions.state_dict()
                   if self.last_completions else None}
        save_checkpoint(self.output_dir, step, final=final, model=self.model,
                        tokenizer=self.tokenizer, state=state, tensors=tensors,
                        config=self.config, reporter=self.reporter)

    def _restore(self, resumed: checkpoints.Checkpoint) -> None:
        """Continue after the checkpoint's step, with its optimiser, schedule and RNG state."""
        if resumed.step >= self.config.max_steps:
            raise checkpoints.CheckpointError(
                f"The checkpoint is at step {resumed.step}; raise max steps above it to train on.")
        self.optimizer.load_state_dict(resumed.tensors["optimizer"])
        self.scheduler.load_state_dict(resumed.tensors["scheduler"])
        if self.reference is not None:
            self.reference.load_state_dict(resumed.tensors.get("reference"))
        if self.value_head is not None:
            self.value_head.load_state_dict(resumed.tensors["value_head"])
        self.kl.load_state_dict(resumed.state["kl"])
        self.sampler.load_state_dict(resumed.state["sampler"])
        if self.tracker is not None:
            self.tracker.load_state_dict(resumed.state["spo_tracker"])
            self.last_completions.load_state_dict(resumed.tensors["spo_completions"])
        checkpoints.restore_rng_state(resumed.tensors["rng"])
        self.first_step = resumed.step + 1
        self.reporter.log(f"resumed from {resumed.path} after step {resumed.step}")


def _std(values: torch.Tensor) -> float:
    """The sample std, 0 for a single value (torch gives NaN)."""
    return values.std().item() if values.numel() > 1 else 0.0


def _rollout_items(examples: list[Example], rollouts: Rollouts,
                   per_function: dict[str, torch.Tensor], rewards: torch.Tensor,
                   advantages: torch.Tensor, token_advantages: torch.Tensor, config: RunConfig,
                   token_details: dict[int, dict[str, list[float]]], tokenizer,
                   ) -> list[dict[str, Any]]:
    """The logged rollouts; `advantages` (N,) one per completion, `token_advantages` (N,) or
    (N, T), the per-token ones of the token view (PPO's differ token by token). Each item says
    whether its whole group got equal rewards: only the first rollouts are logged, so the web
    app cannot tell from the logged ones."""
    count = min(config.rollouts_logged_per_step, len(rollouts.texts))
    prompt_length = rollouts.input_ids.shape[1] - rollouts.completion_mask.shape[1]
    groups = rewards.view(-1, config.group_size)  # (B, G)
    degenerate = ((groups.max(1).values == groups.min(1).values).tolist()
                  if config.group_size > 1 else [False] * len(groups))  # (B,)
    items = []
    for i in range(count):
        example = examples[i // config.group_size]
        tokens = None
        if i in token_details:
            ids = rollouts.input_ids[i, prompt_length:prompt_length + int(rollouts.lengths[i])]
            n = len(ids)
            per_token = (token_advantages[i, :n] if token_advantages.dim() == 2
                         else token_advantages[i].expand(n))
            tokens = {"text": [tokenizer.decode([t]) for t in ids.tolist()],
                      "advantage": [round(v, 4) for v in per_token.tolist()],
                      **token_details[i]}
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
            "group_degenerate": degenerate[i // config.group_size],
            "extra": dict(example.columns),
            "tokens": tokens,
        })
    return items

