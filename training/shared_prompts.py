"""Forward passes over prompt + completion rows that run each distinct prompt once.

A GRPO micro-batch holds G completions of the same prompt, and a DPO one both replies of a pair;
the prompt is often longer than the completions (SmolLM2's chat template alone adds a 30-token
system prompt). Running the full rows would compute every prompt's activations G times, in the
forward and in the backward pass. Here the distinct prompts run once, their key/value cache is
copied to the rows that share them (an index, so gradients from every row flow back into the
one prompt pass), and only the completions run on top of it:

    states of prompt p, positions 0 … P − 1        one pass per distinct prompt
    states of row i,   positions P … P + T − 2     on the cache of prompt p(i)

Token t of a completion is predicted by position P − 1 + t: the first by the prompt's last
position, the others by the completion's own positions, so the last completion token is never
an input. The result equals the full forward pass up to floating-point rounding.
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
    if distinct.shape[0] == input_ids.shape[0] or prompt_length == 0:
        return _whole_rows(model, input_ids, attention_mask, position_ids, completion_length,
                           hidden)

    prompt_ids, prompt_mask = distinct[:, :prompt_length], distinct[:, prompt_length:]
    prompt_pass = model(input_ids=prompt_ids, attention_mask=prompt_mask,
                        position_ids=(prompt_mask.cumsum(dim=1) - 1).clamp(min=0),
                        logits_to_keep=1, use_cache=True, output_hidden_states=hidden)
    logits = [prompt_pass.logits[prompt_of_row]]  # (n, 1, V): predicts completion token 0
    states = [prompt_pass.hidden_states[-1][prompt_of_row, -1:]] if hidden else []
    if completion_length > 1:
        cache = prompt_pass.past_key_values
        for layer in cache.layers:  # every row gets its prompt's keys and values
            layer.keys, layer.values = layer.keys[prompt_of_row], layer.values[prompt_of_row]
        end = input_ids.shape[1] - 1  # the last completion token predicts nothing asked for
        completion_pass = model(
            input_ids=input_ids[:, prompt_length:end], attention_mask=attention_mask[:, :end],
            position_ids=position_ids[:, prompt_length:end], past_key_values=cache,
            cache_position=torch.arange(prompt_length, end, device=input_ids.device),
            use_cache=True, output_hidden_states=hidden)
        logits.append(completion_pass.logits)  # (n, T − 1, V)
        if hidden:
            states.append(completion_pass.hidden_states[-1])
    return CompletionStates(logits=torch.cat(logits, dim=1),
                            hidden=torch.cat(states, dim=1) if hidden else None)


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
