"""Forward passes over prompt + completion rows that run each distinct prompt once.

A GRPO micro-batch holds G completions of the same prompt, and a DPO one both replies of a pair;
the prompt is often longer than the completions (SmolLM2's chat template alone adds a 30-token
system prompt). Running the full rows would compute every prompt's activations G times, in the
forward and in the backward pass. Here the distinct prompts run once, their key/value cache is
copied to the rows that share them (an index, so gradients from every row flow back into the
one prompt pass), and each row runs on top of it from its prompt's last token:

    prompt p,  positions 0 … P − 2         one pass per distinct prompt: the key/value cache
    row i,     positions P − 1 … P + T − 2  on the cache of prompt p(i)

Token t of a completion is predicted by position P − 1 + t, so the second pass gives exactly
the T positions wanted (the last completion token is never an input). The result equals the
full forward pass up to floating-point rounding.

A model sharded by FSDP2 (training.parallel) runs whole rows: it frees each layer's gathered
parameters after the layer's first backward, which two forward passes into one backward would
need again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CompletionStates:
    """What the model computes at the positions that predict each completion token."""

    logits: torch.Tensor  # (n, T, V): logits[:, t] predicts completion token t
    hidden: torch.Tensor | None = None  # (n, T, H) the last hidden state there, if asked for


def completion_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      completion_length: int, *, hidden: bool = False) -> CompletionStates:
    """Logits (and last hidden states) at the positions that predict the last
    `completion_length` tokens of each row.

    input_ids, attention_mask (n, P + T), prompts left-padded. Position ids follow the
    attention mask, as in `generate`, so left padding does not shift them. Rows whose prompt
    columns (tokens and mask) are equal share one prompt pass; with no two alike, the rows run
    whole, in one pass.
    """
    prompt_length = input_ids.shape[1] - completion_length
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (n, P + T)
    prompts = torch.cat([input_ids[:, :prompt_length], attention_mask[:, :prompt_length]], dim=1)
    distinct, prompt_of_row = torch.unique(prompts, dim=0, return_inverse=True)  # (m, 2P), (n,)
    if distinct.shape[0] == input_ids.shape[0] or prompt_length < 2 or _sharded(model):
        return _whole_rows(model, input_ids, attention_mask, position_ids, completion_length,
                           hidden)

    cached = prompt_length - 1  # the prompt's last token runs with its row: it predicts token 0
    prompt_ids = distinct[:, :cached]
    prompt_mask = distinct[:, prompt_length:prompt_length + cached]
    cache = model(input_ids=prompt_ids, attention_mask=prompt_mask,
                  position_ids=(prompt_mask.cumsum(dim=1) - 1).clamp(min=0),
                  logits_to_keep=1, use_cache=True).past_key_values
    for layer in cache.layers:  # every row gets its prompt's keys and values
        layer.keys, layer.values = layer.keys[prompt_of_row], layer.values[prompt_of_row]
    end = input_ids.shape[1] - 1  # the last completion token predicts nothing asked for
    output = model(input_ids=input_ids[:, cached:end], attention_mask=attention_mask[:, :end],
                   position_ids=position_ids[:, cached:end], past_key_values=cache,
                   cache_position=torch.arange(cached, end, device=input_ids.device),
                   use_cache=True, output_hidden_states=hidden)
    return CompletionStates(logits=output.logits,  # (n, T, V)
                            hidden=output.hidden_states[-1] if hidden else None)


def _whole_rows(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, completion_length: int,
                hidden: bool) -> CompletionStates:
    output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=completion_length + 1, use_cache=False,
                   output_hidden_states=hidden)
    states = None
    if hidden:
        states = output.hidden_states[-1][:, -(completion_length + 1):-1]  # (n, T, H)
    return CompletionStates(logits=output.logits[:, :-1], hidden=states)  # (n, T, V)


def _sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
