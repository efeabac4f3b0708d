"""Log-probs of rollouts under a model: micro-batches laid out to pad and compute little, the
forward pass that gives a completion's per-token log-probs and entropies, and the no-gradient
pass over a whole batch of rollouts (π_old's, π_ref's, or an algorithm's own forward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from training.ops import tempered, token_logprobs_and_entropy
from training.policies.shared_prompts import completion_states
from training.rollouts.generation import Rollouts
from training.spec.config import RunConfig


@dataclass
class TokenForward:
    """What one forward pass gives for each completion token: (n, T) each."""

    logp: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor | None = None  # an algorithm's per-token values (PPO's value head)


# (model, input_ids, attention_mask, completion_length, temperature, entropy_grad) -> forward
Forward = Callable[..., TokenForward]


def autocast(config: RunConfig, device: torch.device) -> torch.autocast:
    """bf16 compute for forward passes when the run asks for it; the weights, the optimiser
    state and the loss stay in fp32, since bf16 weights lose most small AdamW updates."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=config.dtype == "bfloat16")


def micro_batch_order(rollouts: Rollouts) -> torch.Tensor:
    """Row order for micro-batches (N,): the completions of one prompt together, so that a
    micro-batch runs their prompt once (training.policies.shared_prompts); longest completion first
    within a prompt, and prompts by their longest completion, so that similar lengths share a
    micro-batch (less padding to compute) and the largest, the one that could run out of
    memory, comes first."""
    prompt_length = rollouts.input_ids.shape[1] - rollouts.completion_mask.shape[1]
    prompts = torch.cat([rollouts.input_ids[:, :prompt_length],
                         rollouts.attention_mask[:, :prompt_length]], dim=1).cpu()
    _, prompt_of_row = torch.unique(prompts, dim=0, return_inverse=True)  # (N,)
    lengths = rollouts.lengths.cpu()
    longest = torch.zeros(int(prompt_of_row.max()) + 1, dtype=lengths.dtype).scatter_reduce(
        0, prompt_of_row, lengths, reduce="amax")  # (M,) each prompt's longest completion
    rows = sorted(range(len(lengths)), key=lambda i: (-int(longest[prompt_of_row[i]]),
                                                      int(prompt_of_row[i]), -int(lengths[i])))
    return torch.tensor(rows, dtype=torch.long)


def batch_forward(model, rollouts: Rollouts, config: RunConfig,
                  forward: Forward | None = None) -> TokenForward:
    """Log-probs and entropies (N, T) of every completion token under `model`, without
    gradient, and the values (N, T) of the same positions when `forward` gives them; 0 beyond
    each completion's end. `forward` defaults to `completion_forward`."""
    forward = forward or completion_forward
    device = rollouts.input_ids.device
    logps = torch.zeros(rollouts.completion_mask.shape, device=device)
    entropies = torch.zeros_like(logps)
    values = None
    was_training = model.training
    model.eval()
    order = micro_batch_order(rollouts)
    with torch.no_grad():
        for start in range(0, len(order), config.micro_batch_size):
            rows = order[start:start + config.micro_batch_size].to(device)  # (n,)
            input_ids, attention_mask, mask = micro_batch(rollouts, rows)
            with autocast(config, device):
                out = forward(model, input_ids, attention_mask, mask.shape[1],
                              config.temperature)  # (n, T')
            logps[rows, :mask.shape[1]] = out.logp * mask
            entropies[rows, :mask.shape[1]] = out.entropy * mask
            if out.values is not None:
                if values is None:
                    values = torch.zeros_like(logps)
                values[rows, :mask.shape[1]] = out.values * mask
    model.train(was_training)
    return TokenForward(logps, entropies, values)


def batch_logprobs(model, rollouts: Rollouts, config: RunConfig) -> torch.Tensor:
    """Log-probs (N, T) of every completion token under `model`, without gradient."""
    return batch_forward(model, rollouts, config).logp


def micro_batch(rollouts: Rollouts, rows: torch.Tensor,
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
    Rows that share a prompt run it once (training.policies.shared_prompts).
    """
    logits = completion_states(model, input_ids, attention_mask, completion_length).logits
    return token_logprobs_and_entropy(tempered(logits, temperature),
                                      input_ids[:, -completion_length:], entropy_grad=entropy_grad)


def completion_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       completion_length: int, temperature: float, *,
                       entropy_grad: bool = False) -> TokenForward:
    """`completion_logprobs` as a TokenForward: the forward pass of an algorithm with no
    per-token values."""
    return TokenForward(*completion_logprobs(model, input_ids, attention_mask, completion_length,
                                             temperature, entropy_grad=entropy_grad))
