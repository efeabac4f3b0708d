"""The online loop: sample prompts, generate G completions each, score them, update the policy.

One step is one batch of rollouts and μ optimisation passes over it (training.loops.policy_update).
The run's algorithm (training.algorithms.base.Algorithm) turns the scored batch into advantages
and adds its own terms to the loss (GRPO's clipped surrogate, with its variants); this loop names
no algorithm. The KL to the reference (training.policies.references) enters the loss or the
reward, with a fixed or adaptive coefficient (training.algorithms.kl_control). Checkpoints
(training.checkpoints) let a run resume exactly. Everything the run produces goes out through
the `Reporter`. On several devices (training.parallel) each process generates and trains on its
share of the step's prompt groups; what spans the batch is reduced across the processes.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import torch

from training import checkpoints
from training.algorithms import engine_for
from training.algorithms.base import ScoredBatch, StepBatch
from training.algorithms.grpo import GRPOConfig
from training.algorithms.kl_control import KLController
from training.loops.evaluation import eval_metrics, evaluation_examples, sample_and_score
from training.loops.policy_update import TokenRecorder, update_policy
from training.loops.setup import (
    Outcome,
    load_run_policy,
    load_task,
    make_optimizer,
    peak_memory,
    resolve_device,
    run_steps,
    save_checkpoint,
)
from training.ops import masked_mean, zero_fraction
from training.parallel import DataParallelUnsupported, PeerFailed, World
from training.policies.loading import ModelNotFound, apply_lora, load_adapter, load_policy
from training.policies.references import ReferenceMismatch, make_reference
from training.policies.reward_models import RewardModelEnsemble
from training.policies.reward_models import reward_functions as reward_model_functions
from training.rollouts.generation import (
    BackendUnavailable,
    Rollouts,
    Sampling,
    concat_rollouts,
    generate_by_group,
    make_backend,
)
from training.rollouts.records import rollout_records
from training.rollouts.scoring import score_rollouts
from training.samplers import SamplerError, in_bounds, make_sampler
from training.spec.config import RunConfig, parse_reward_weights
from training.spec.events import Reporter
from training.spec.prompt_dataset import DatasetFileError
from training.spec.rewards import EXTRA_REWARD_FUNCTIONS
from training.spec.tasks import Example
from training.spec.text_corpus import CorpusFileError


class OnlineTraining:
    """One run's model, optimiser, reference, sampler and backend, and its step loop."""

    # Problems a user can fix in the run's settings: reported as they are, not as a crash.
    SETUP_ERRORS = (ModelNotFound, DatasetFileError, CorpusFileError, BackendUnavailable,
                    checkpoints.CheckpointError, ReferenceMismatch, SamplerError,
                    DataParallelUnsupported)

    def __init__(self, config: RunConfig, reporter: Reporter, should_stop: Callable[[], bool],
                 output_dir: Path | None, world: World | None = None):
        self.config, self.reporter, self.should_stop = config, reporter, should_stop
        self.output_dir = output_dir
        self.world = world = world or World.single()
        self.device = world.device(resolve_device(config.device))
        if world.distributed:
            # Checked against the processes there are, whatever the config asked for.
            problems = (dataclasses.replace(config, devices=world.size).data_parallel_errors()
                        if world.size > 1 else {})
            if problems:
                raise DataParallelUnsupported(
                    "This run cannot train on several devices: " + "; ".join(
                        f"{name}: {why}" for name, why in problems.items()))
            world.start(self.device)
        self.step_number = 0
        self.surrogate = GRPOConfig.from_run_config(config)
        self.algorithm = engine_for(config.algorithm)(config)
        self.task = load_task(config)
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
        # Made now so that prompts it cannot sample are refused before the model loads; made
        # again below if the algorithm brings its own or keeps some of them out of the steps.
        self.sampler = make_sampler(config, self.task, self.algorithm.prompt_values)
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
        self.sampler = self.algorithm.prompt_sampler(self.task, self.tokenizer) or self.sampler
        if config.reward_models:
            self._add_reward_models()
        initial = self.model
        if resumed is not None and resumed.adapter is None and config.reference == "initial" \
                and config.uses_reference:
            initial, _ = load_policy(config.model, dtype=torch.float32, device=self.device)
        if config.lora_rank:
            self.model = apply_lora(self.model, config.lora_rank, config.lora_alpha)
            if resumed is not None:
                load_adapter(self.model, resumed.adapter)
            initial = self.model
        self.reference = make_reference(config, initial, self.device)
        try:  # DDP's constructor is a collective: it fails when another process already has
            self.update_model = world.wrap(self.model,
                                           shard=config.sharding == "fsdp" and world.size > 1)
        except RuntimeError as exc:
            raise PeerFailed(str(exc)) from exc
        self.kl = KLController(config.beta, config.kl_target, config.kl_horizon)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        reporter.log(f"loaded {config.model} ({total / 1e6:.0f}M parameters, "
                     f"{trainable / 1e6:.2f}M trained, {config.dtype}) on {self.device} in "
                     f"{time.perf_counter() - loading:.1f} s")

        groups = [{"params": [p for p in self.model.parameters() if p.requires_grad]},
                  *self.algorithm.parameter_groups(self.model)]
        # μ optimiser steps per training step
        self.optimizer, self.scheduler = make_optimizer(groups, config, config.num_iterations)
        self.first_step = 1
        if resumed is not None:
            self._restore(resumed)
        self.algorithm.setup(self)
        self.backend = make_backend(config, self.model, self.tokenizer, should_stop,
                                    warn=lambda message: reporter.log(message, level="warning"))
        try:
            self._start(resumed)
        except BaseException:
            self.backend.close()  # a vLLM engine holds memory and threads until closed
            raise

    def _start(self, resumed: checkpoints.Checkpoint | None) -> None:
        """Once the backend runs: the algorithm's preparation and the sampler's state."""
        if resumed is not None:
            self.backend.sync_weights(self.model)  # an engine starts from the model's folder
        self.reporter.log(f"rollouts by {self.backend.name}")
        if resumed is None:
            self.algorithm.prepare(self)
        # Once the algorithm's state is known, it may keep some of the task's prompts out of
        # the steps (DPH-RL trains on those its initial policy does not yet solve).
        pool = self.algorithm.prompt_pool(self.task)
        if pool is not self.task:
            self.sampler = make_sampler(self.config, pool, self.algorithm.prompt_values)
        if resumed is not None:
            self.sampler.load_state_dict(resumed.state["sampler"])

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
        if self.eval_examples and self.first_step == 1 and self.world.is_main:
            self.evaluate(0)  # the starting point of the eval/ curves
        return run_steps(self.config, self.reporter, self.should_stop, device=self.device,
                         first_step=self.first_step, step=self.step,
                         save_checkpoint=self.save_checkpoint if self.output_dir else None)

    def close(self) -> None:
        self.backend.close()
        # DDP's reducer holds the process group: freed after the group is destroyed, it can
        # hang the process on its way out.
        self.update_model = self.model
        self.world.close()

    def step(self, step: int) -> dict[str, float] | None:
        """One training step, reported; its metrics, or None if stopped part-way."""
        config, surrogate, world = self.config, self.surrogate, self.world
        self.step_number = step
        step_start = time.perf_counter()
        sampled = self._sample_and_score()
        if sampled is None:
            return None
        # The step's prompts, all of them; this process's rollouts and scores, of its share.
        examples, rollouts, per_function, extra = sampled
        share = world.group_range(len(examples))
        local_examples = examples[share.start:share.stop]
        rows = slice(share.start * config.group_size, share.stop * config.group_size)
        local_per_function = per_function
        per_function = {name: world.gather(values) for name, values in per_function.items()}
        rewards = sum(self.weights[name] * values for name, values in per_function.items())
        ids = [e.prompt_id for e in examples for _ in range(config.group_size)]  # (N,)

        beta = self.kl.beta
        # Advantages from the whole batch's rewards, in every process alike; each keeps its rows
        # (an algorithm that needs more than rewards runs on one process: local = global).
        batch = StepBatch(rollouts=rollouts, advantages=rewards)
        scored = ScoredBatch(batch=batch, rewards=rewards, prompt_ids=ids, beta=beta)
        extra.update(self.algorithm.advantages(scored, self))
        batch.advantages = batch.advantages[rows].to(self.device)  # (n,) or (n, T)

        update_start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        detailed = min(config.token_details_per_step, config.rollouts_logged_per_step)
        recorder = TokenRecorder(range(max(0, detailed - rows.start)), surrogate.kl_estimator)
        update = update_policy(
            self.update_model, self.reference.model if self.reference else None, self.optimizer,
            self.scheduler, batch, surrogate, config, self.should_stop,
            beta=beta if config.kl_placement == "loss" else 0.0, algorithm=self.algorithm,
            recorder=recorder, world=world)
        if update is None:
            return None
        update_s = time.perf_counter() - update_start
        sync_start = time.perf_counter()
        self.backend.sync_weights(self.model)
        if self.reference is not None:
            self.reference.after_step(self.model)
        sync_s = time.perf_counter() - sync_start
        if "kl/sequence_mean" in update:
            self.kl.update(update["kl/sequence_mean"], len(rewards))
        extra.update(self.algorithm.after_update(scored, self))
        advantages = batch.advantages.cpu()  # (n,) or (n, T)
        local_per_completion = advantages  # (n,): what the sampler and rollout table are given
        if advantages.dim() == 2:  # per token: each completion's mean; statistics over tokens
            mask = rollouts.completion_mask.cpu()
            local_per_completion = masked_mean(advantages, mask, dim=1)
            advantages = advantages[mask.bool()]
        per_completion = world.gather(local_per_completion)  # (N,)
        advantages = world.gather(advantages)
        self.sampler.observe(examples, rewards, per_completion, config.group_size)
        extra.update(self.sampler.metrics())
        step_s = time.perf_counter() - step_start

        degenerate = None
        if config.group_size > 1:
            groups = rewards.view(-1, config.group_size)  # (B, G)
            degenerate = (groups.max(1).values == groups.min(1).values).float().mean().item()
            extra["groups/degenerate_fraction"] = degenerate
        lengths = world.gather(rollouts.lengths.float())  # (N,)
        truncated = world.gather(rollouts.truncated.float())  # (N,)
        metrics = {
            "reward/mean": rewards.mean().item(),
            "reward/std": _std(rewards),
            **{f"reward/{name}": values.mean().item() for name, values in per_function.items()},
            **{f"reward/{name}/std": _std(values) for name, values in per_function.items()},
            "advantage/mean": advantages.mean().item(),
            "advantage/std": _std(advantages),
            "advantage/min": advantages.min().item(),
            "advantage/max": advantages.max().item(),
            "advantage/zero_fraction": zero_fraction(advantages),
            **update,
            **extra,
            "completion/length_mean": lengths.mean().item(),
            "completion/length_max": lengths.max().item(),
            "completion/truncated_fraction": truncated.mean().item(),
            "optim/lr": lr,
            "time/update_s": update_s,
            "time/weight_sync_s": sync_s,
            "time/step_s": step_s,
            "perf/tokens_per_s": lengths.sum().item() / step_s,
            **world.max(peak_memory(self.device)),
        }
        if self.reference is not None:
            metrics["kl/beta"] = beta
        self.reporter.metrics(step, metrics)
        if config.rollouts_logged_per_step:
            records = rollout_records(
                local_examples, rollouts, local_per_function, rewards[rows],
                local_per_completion, batch.advantages.cpu(), config, recorder.details,
                self.tokenizer, {name: values.cpu() for name, values in batch.token_views.items()})
            self.reporter.rollouts(step, self._gathered(records, len(local_examples)))
        self.reporter.progress(step, config.max_steps)
        if degenerate == 1.0:
            self.reporter.log(f"step {step}: every group got equal rewards, so this step had no "
                              f"learning signal", level="warning")
        if self.eval_examples and (step % config.eval_every == 0 or step == config.max_steps) \
                and world.is_main:
            self.evaluate(step)
        return metrics

    def _gathered(self, records: list[dict], groups: int) -> list[dict]:
        """Every process's logged rollouts in batch order, numbered by their group in the whole
        batch, as many as one process logs."""
        if not self.world.distributed:
            return records
        merged = [{**record, "group": record["group"] + rank * groups}
                  for rank, part in enumerate(self.world.gather_objects(records))
                  for record in part]
        return merged[:self.config.rollouts_logged_per_step]

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
        """The step's prompts (all of them, in every process), the rollouts and each reward
        function's scores of this process's share of them, and timing metrics; None if
        stopped. The difficulty filter keeps only groups whose pass rate lies strictly between
        its bounds, generating again until the batch is full (DAPO's dynamic sampling), for at
        most filter_max_rounds rounds."""
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
            rollouts = self._generate(examples, group)
            timings["time/generate_s"] += time.perf_counter() - started
            if self.should_stop():
                return None
            started = time.perf_counter()
            share = self.world.group_range(len(examples))  # all of them in one process
            per_function = score_rollouts(self.reward_functions,
                                          examples[share.start:share.stop], rollouts, config)
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

    def _generate(self, examples: list[Example], group: int) -> Rollouts:
        """The rollouts of this process's share of `examples`: all of them in one process; in
        several, each group seeded by the run's seed, the step and its place in the batch, so
        that the samples do not depend on how many processes share the batch."""
        if not self.world.distributed:
            return self.backend.generate(examples, group)
        share = self.world.group_range(len(examples))
        seeds = [group_seed(self.config.seed, self.step_number, index) for index in share]
        with self.world.whole_model(self.model):
            return generate_by_group(self.backend, examples[share.start:share.stop], group,
                                     seeds, self.tokenizer.pad_token_id)

    def save_checkpoint(self, step: int, final: bool) -> None:
        algorithm_state, algorithm_tensors = self.algorithm.state_dict()
        state = {"kl": self.kl.state_dict(), "sampler": self.sampler.state_dict(),
                 **algorithm_state}
        tensors = {"optimizer": self.world.full_optimizer_state(self.optimizer),
                   "scheduler": self.scheduler.state_dict(),
                   "reference": self.reference.state_dict() if self.reference else None,
                   **algorithm_tensors}
        # The weights and the optimiser's state are whole in every process (gathered whole
        # from a sharded model): the first one saves them, for any number of processes to
        # resume from.
        weights = self.world.full_model_state(self.model)
        if self.world.is_main:
            save_checkpoint(self.output_dir, step, final=final, model=self.model,
                            tokenizer=self.tokenizer, state=state, tensors=tensors,
                            config=self.config, reporter=self.reporter, weights=weights)
        self.world.barrier()

    def _restore(self, resumed: checkpoints.Checkpoint) -> None:
        """Continue after the checkpoint's step, with its optimiser, schedule, RNG state and the
        algorithm's state (the sampler's is restored once it is made)."""
        if resumed.step >= self.config.max_steps:
            raise checkpoints.CheckpointError(
                f"The checkpoint is at step {resumed.step}; raise max steps above it to train on.")
        self.world.load_optimizer_state(self.optimizer, resumed.tensors["optimizer"])
        self.scheduler.load_state_dict(resumed.tensors["scheduler"])
        if self.reference is not None:
            self.reference.load_state_dict(resumed.tensors.get("reference"))
        self.kl.load_state_dict(resumed.state["kl"])
        self.algorithm.load_state_dict(resumed.state, resumed.tensors)
        checkpoints.restore_rng_state(resumed.tensors["rng"])
        self.first_step = resumed.step + 1
        self.reporter.log(f"resumed from {resumed.path} after step {resumed.step}")


def group_seed(seed: int, step: int, group: int) -> int:
    """The seed of one prompt group's sampling: distinct for every (run seed, step, group)."""
    return ((seed * 1_000_003 + step) * 65_537 + group) % 2**63


def _std(values: torch.Tensor) -> float:
    """The sample std, 0 for a single value (torch gives NaN)."""
    return values.std().item() if values.numel() > 1 else 0.0
