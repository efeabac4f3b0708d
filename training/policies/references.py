"""Reference policies for the KL term: what π_ref is, and how it changes during a run.

    initial  the frozen initial policy (DeepSeekMath, TRL's default)
    ema      π_ref ← η·π_ref + (1 − η)·π_θ after every step: an anchor that follows the policy
             slowly, so the KL stops holding it near where it started
    soup     the weight average ½(θ_a + θ_b) of two models of the policy's architecture, as in
             SALSA (Chegini et al., 2024): a reference further from either, allowing more
             exploration
    none     no reference and no KL

A LoRA policy's initial reference is the policy with its adapters switched off: no copy of the
weights is needed. Every other reference is a plain model without gradients.
"""

from __future__ import annotations

import copy

import torch

from training.spec.config import RunConfig
from training.policies.loading import load_policy, merged_weights


class ReferenceMismatch(ValueError):
    """A soup reference whose models cannot be averaged or compared with the policy, or a
    teacher (KDRL's) that does not share the policy's vocabulary."""


class AdaptersOff(torch.nn.Module):
    """The base model under a LoRA policy: calls run with the adapters disabled."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    @property
    def config(self):
        return self.policy.config

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.policy.get_input_embeddings()

    def get_output_embeddings(self) -> torch.nn.Module | None:
        return self.policy.get_output_embeddings()

    def forward(self, *args, **kwargs):
        with self.policy.disable_adapter(), torch.no_grad():
            return self.policy(*args, **kwargs)


class Reference:
    """π_ref for one run: `model` computes its log-probs; `after_step` moves an EMA reference."""

    def __init__(self, model: torch.nn.Module, kind: str, ema_rate: float = 0.0):
        self.model = model
        self.kind = kind
        self.ema_rate = ema_rate

    @torch.no_grad()
    def after_step(self, policy: torch.nn.Module) -> None:
        """η·π_ref + (1 − η)·π_θ, weight by weight (merged weights for a LoRA policy)."""
        if self.kind != "ema":
            return
        mine = self.model.state_dict()
        moved = set()  # tied weights (embeddings and LM head) appear under two names
        for name, weight in merged_weights(policy):
            target = mine[name]
            if target.data_ptr() not in moved:
                target.lerp_(weight.to(target.dtype), 1 - self.ema_rate)
                moved.add(target.data_ptr())

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """What a checkpoint must keep to resume: only an EMA reference has moved."""
        return self.model.state_dict() if self.kind == "ema" else None

    def load_state_dict(self, state: dict[str, torch.Tensor] | None) -> None:
        if self.kind == "ema" and state is not None:
            self.model.load_state_dict(state)


def make_reference(config: RunConfig, policy: torch.nn.Module,
                   device: torch.device) -> Reference | None:
    """The run's reference, or None when none is used (RunConfig.uses_reference).

    `policy` must be the initial policy (before any update). Raises ModelNotFound for a soup
    model that cannot be found and ReferenceMismatch for one whose weights do not fit.
    """
    if not config.uses_reference:
        return None
    if config.reference == "soup":
        soup = _soup(config, device)
        shapes = {name: w.shape for name, w in merged_weights(policy)}
        if {name: w.shape for name, w in soup.state_dict().items()} != shapes:
            raise ReferenceMismatch("The soup's models do not have the policy's architecture, so "
                                    "the KL to them is undefined. Pick checkpoints of the policy.")
        return Reference(soup, "soup")
    if config.reference == "initial" and hasattr(policy, "disable_adapter"):
        return Reference(AdaptersOff(policy), "initial")
    copied = _plain_copy(policy) if config.reference == "ema" else copy.deepcopy(policy)
    return Reference(frozen(copied), config.reference, config.reference_ema_rate)


def _plain_copy(policy: torch.nn.Module) -> torch.nn.Module:
    """A copy of the policy as a plain model: a LoRA policy's adapters merged in."""
    if not hasattr(policy, "merge_and_unload"):
        return copy.deepcopy(policy)
    return copy.deepcopy(policy).merge_and_unload()


def _soup(config: RunConfig, device: torch.device) -> torch.nn.Module:
    first_ref, second_ref = (item.strip() for item in config.reference_soup.split(","))
    first, _ = load_policy(first_ref, dtype=torch.float32, device=device)
    second, _ = load_policy(second_ref, dtype=torch.float32, device=device)
    theirs = second.state_dict()
    mine = first.state_dict()
    if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
        raise ReferenceMismatch(f"The soup's models {first_ref!r} and {second_ref!r} have "
                                f"different architectures; their weights cannot be averaged.")
    averaged = set()  # tied weights (embeddings and LM head) appear under two names
    with torch.no_grad():
        for name, weight in mine.items():
            if weight.data_ptr() not in averaged:
                weight.lerp_(theirs[name], 0.5)
                averaged.add(weight.data_ptr())
    del second
    return frozen(first)


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model

