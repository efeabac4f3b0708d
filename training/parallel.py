"""Data parallelism over the devices of one host: the processes of a run under torchrun.

A run that asks for N devices is started as N processes (`torch.distributed.run`, one per
device; worker.training_command). Every process draws the same global batch of prompts (the
sampler is seeded alike in all of them), keeps its contiguous share of whole prompt groups,
generates and scores them, and trains a DistributedDataParallel copy of the policy. What spans
the batch is reduced across processes so that a step equals one process's on the same batch:
the loss normalisers (completions, tokens), the rewards the advantages are computed from, and the
metrics. Only the first process (rank 0) reports; see training.process.

With `sharding: fsdp` the policy is sharded instead (FSDP2's `fully_shard`, per decoder layer,
then the root): each process keeps a share of the parameters, gradients and optimiser state,
and gathers a layer's parameters for its forward and backward. Generation needs every layer many
times with a different number of forward passes in each process, so the whole model is gathered
once around it (`World.whole_model`). Checkpoints hold the whole model and optimiser state, as
DDP's do, so that either kind of run resumes from them with any number of processes.

`World` is the one place that knows the process group: a single process gets `World.single()`,
whose reductions are identities, so the loops have one code path.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
from typing import Any, Iterator

import torch


class DataParallelUnsupported(ValueError):
    """The run uses a feature that cannot be split over several processes yet; the message
    names the settings to change (RunConfig.data_parallel_errors)."""


class PeerFailed(RuntimeError):
    """Another process of the run failed (or was stopped) while this one waited on it: that
    process reports why, so this one ends quietly."""


# What gloo and NCCL say when another process of the group went away mid-collective (DDP's
# gradient reduction runs inside backward, outside World's own collectives).
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
              "NCCL communicator was aborted", "remote process exited")


def lost_peer(exc: BaseException) -> bool:
    """Whether `exc` says that another process of the run is gone, rather than what went wrong
    in this one."""
    if isinstance(exc, PeerFailed):
        return True
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and any(text in str(exc) for text in _PEER_GONE))


class World:
    """This process's place among the run's processes, and the collectives the loops use."""

    def __init__(self, rank: int, size: int, local_rank: int, *, distributed: bool,
                 local_size: int | None = None):
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.local_size = local_size or size  # processes on this host
        self.distributed = distributed
        self.sharded = False  # the policy is FSDP2-sharded (wrap)

    @classmethod
    def single(cls) -> World:
        return cls(0, 1, 0, distributed=False)

    @classmethod
    def from_environment(cls) -> World | None:
        """The world torchrun describes in RANK, WORLD_SIZE and LOCAL_RANK; None outside it."""
        if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
            return None
        size = int(os.environ["WORLD_SIZE"])
        return cls(int(os.environ["RANK"]), size,
                   int(os.environ.get("LOCAL_RANK", os.environ["RANK"])), distributed=True,
                   local_size=int(os.environ.get("LOCAL_WORLD_SIZE", size)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, resolved: str) -> torch.device:
        """This process's device: on CUDA the LOCAL_RANK-th visible GPU, else the CPU."""
        if resolved == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device(resolved)

    def start(self, device: torch.device) -> None:
        """Join the process group: NCCL between GPUs, gloo between CPU processes."""
        if not self.distributed or torch.distributed.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        # A long step on one process (a checkpoint, an evaluation on rank 0) is no failure.
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(hours=2),
                                             **kwargs)

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    # What this process holds of a global batch of `count` prompt groups.
    def group_range(self, count: int) -> range:
        share = count // self.size
        return range(self.rank * share, (self.rank + 1) * share)

    def wrap(self, model: torch.nn.Module, *, shard: bool = False) -> torch.nn.Module:
        """The model as the update runs it: DistributedDataParallel, which averages the
        gradients over the processes during backward (the loss is scaled by the world size to
        make that average a sum; training.loops.policy_update). With `shard`, the model itself
        is sharded in place (FSDP2), which averages the gradients in the same way with a
        reduce-scatter, leaving each process its share; the optimiser must be made after."""
        if not self.distributed:
            return model
        if shard:
            from torch.distributed.fsdp import fully_shard

            for layer in decoder_layers(model):
                fully_shard(layer)
            fully_shard(model)
            self.sharded = True
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [model.device] if model.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def sync_gradients(self, model: torch.nn.Module, last: bool) -> None:
        """Before a micro-batch's backward. DDP reduces the gradients once, after the last
        micro-batch's backward. A sharded model reduce-scatters after every one instead: each
        process then holds only its share of the gradients between micro-batches, which is
        what sharding is for (same sum, more communication)."""
        if self.distributed and not self.sharded:
            model.require_backward_grad_sync = last

    @contextlib.contextmanager
    def whole_model(self, model: torch.nn.Module) -> Iterator[None]:
        """The sharded model's parameters gathered whole for what follows (generation), and
        kept whole through its forward passes: each process may then run a different number of
        them without the others. Sharded again after. Nothing to do for an unsharded model."""
        if not self.sharded:
            yield
            return
        from torch.distributed.fsdp import FSDPModule

        modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
        layers = [m for m in modules if m is not model]  # the root keeps FSDP2's own setting
        try:
            for module in layers:
                module.set_reshard_after_forward(False)
            for module in modules:
                self._collective(module.unshard)
            yield
        finally:
            for module in modules:
                module.reshard()
            for module in layers:
                module.set_reshard_after_forward(True)

    def full_model_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        """The sharded model's whole state dict, on the CPU of the first process (None in the
        others); every process must call it. None for an unsharded model (it is whole)."""
        if not self.sharded:
            return None
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(model, options=options)
        if not self.is_main:
            return None
        # A tied weight (lm_head = embed_tokens) comes gathered once per name: keep the first,
        # as the model saves it whole.
        unique = {name for name, _ in model.named_parameters()}
        for name, _ in model.named_parameters(remove_duplicate=False):
            if name not in unique:
                state.pop(name, None)
        return state

    def full_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimiser's state dict with every sharded tensor gathered whole: the format of an
        unsharded optimiser's (tensors by parameter index), so DDP and one-process runs resume
        from it too. Every process must call it."""
        from torch.distributed.tensor import DTensor

        state = optimizer.state_dict()
        if not self.sharded:
            return state
        whole = {index: {key: value.full_tensor().cpu() if isinstance(value, DTensor) else value
                         for key, value in values.items()}
                 for index, values in state["state"].items()}
        return {**state, "state": whole}

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer,
                             state: dict[str, Any]) -> None:
        """Load a whole optimiser state (full_optimizer_state's, or an unsharded run's) into
        this process's optimiser: for a sharded parameter each tensor of its shape becomes this
        process's shard of it."""
        if self.sharded:
            from torch.distributed.tensor import DTensor, distribute_tensor

            params = [p for group in optimizer.param_groups for p in group["params"]]
            if len(state["state"]) and max(int(i) for i in state["state"]) >= len(params):
                raise ValueError("the optimiser state is for more parameters than the model's")

            def shard(value, param):
                if (isinstance(param, DTensor) and torch.is_tensor(value)
                        and value.shape == param.shape):
                    return distribute_tensor(value.to(param.device), param.device_mesh,
                                             param.placements)
                return value

            state = {**state, "state": {
                index: {key: shard(value, params[int(index)]) for key, value in values.items()}
                for index, values in state["state"].items()}}
        optimizer.load_state_dict(state)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Every process's `values` (n, ...), all of one shape, in rank order: (size*n, ...)."""
        if not self.distributed:
            return values
        local = values.to(self._device)
        parts = [torch.empty_like(local) for _ in range(self.size)]
        self._collective(torch.distributed.all_gather, parts, local)
        return torch.cat(parts).to(values.device)

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Each value summed over the processes; every process passes the same keys."""
        return self._reduce(values, torch.distributed.ReduceOp.SUM)

    def max(self, values: dict[str, float]) -> dict[str, float]:
        return self._reduce(values, torch.distributed.ReduceOp.MAX)

    def _reduce(self, values: dict[str, float], op) -> dict[str, float]:
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        packed = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                              device=self._device)
        self._collective(torch.distributed.all_reduce, packed, op=op)
        return dict(zip(keys, packed.tolist()))

    def gather_objects(self, value: Any) -> list[Any]:
        """Every process's picklable `value`, in rank order (on every process). Values are the
        run's own records, never anything read from outside."""
        if not self.distributed:
            return [value]
        data = torch.frombuffer(bytearray(pickle.dumps(value)), dtype=torch.uint8)
        size = torch.tensor([data.numel()], device=self._device)
        sizes = self.gather(size).tolist()
        padded = torch.zeros(max(sizes), dtype=torch.uint8, device=self._device)
        padded[:data.numel()] = data.to(self._device)
        parts = self.gather(padded).view(self.size, -1).cpu()
        return [pickle.loads(parts[i, :n].numpy().tobytes()) for i, n in enumerate(sizes)]

    def barrier(self) -> None:
        if self.distributed:
            self._collective(torch.distributed.barrier)

    @property
    def _device(self) -> torch.device:
        if torch.distributed.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _collective(self, function, *args, **kwargs) -> None:
        try:
            function(*args, **kwargs)
        except (RuntimeError, torch.distributed.DistError) as exc:
            raise PeerFailed(f"rank {self.rank}: another process of the run is gone ({exc})") \
                from exc


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's transformer blocks (FSDP2 shards each on its own, so that one block's
    parameters at a time are gathered): the modules transformers names in `_no_split_modules`,
    which it keeps whole when it splits a model over devices."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise DataParallelUnsupported(
            f"sharding: {type(model).__name__} does not name its decoder layers, so it cannot be "
            f"sharded: set sharding to ddp")
    return layers
