"""Forward passes over prompt + completion rows that run each distinct prompt once and no
padding after a short completion.

A GRPO micro-batch holds G completions of the same prompt, and a DPO one both replies of a pair;
the prompt is often longer than the completions (SmolLM2's chat template alone adds a 30-token
system prompt), and completions end at different lengths. Running the full rows would compute
every prompt's activations G times, and every row out to the longest completion, in the forward
and in the backward pass.

Packed (SDPA attention, the default): one sequence per distinct prompt holds the prompt once,
then each of its rows end to end, row i as the segment that predicts its tokens:

    prompt p,  positions 0 … P − 2          attends to itself, causally
    row i,     positions P − 1 … P + L_i − 2  attends to prompt p and to itself, causally

(the segment is the prompt's last token, then completion tokens 0 … L_i − 2: token t is
predicted by position P − 1 + t, and the last token is never an input). A 4D mask says who sees
whom, so one forward pass runs it all and each weight is used once. The mask is dense (every
position is scored against the whole sequence), so a sequence holds at most PACKED_SLOTS row
positions; a prompt with more rows than that starts another sequence and runs again there.

Cached (other attention implementations, which take no 4D boolean mask): the distinct prompts
run once, their key/value cache is copied to the rows that share them (an index, so gradients
from every row flow back into the one prompt pass), and the rows run padded on top of it.

Either way the result equals the full forward pass up to floating-point rounding. A model
sharded by FSDP2 (training.parallel) runs whole rows: it frees each layer's gathered parameters
after the layer's first backward, which two uses of a layer in one backward would need again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Row positions a packed sequence holds at most, after its prompt. Each position is scored
# against the whole sequence; at 1,024 that costs less than the padding packing saves.
PACKED_SLOTS = 1024


@dataclass
class CompletionStates:
    """What the model computes at the positions that predict each completion token."""

    logits: torch.Tensor  # (n, T, V): logits[:, t] predicts completion token t
    hidden: torch.Tensor | None = None  # (n, T, H) the last hidden state there, if asked for


def completion_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      completion_length: int, *, hidden: bool = False) -> CompletionStates:
    """Logits (and last hidden states) at the positions that predict the last
    `completion_length` tokens of each row; past a row's end (where its completion mask is 0)
    they are those of its last token or of padding, for the caller to mask.

    input_ids, attention_mask (n, P + T), prompts left-padded, completions right-padded (mask 0
    after the EOS). Position ids follow the attention mask, as in `generate`, so left padding
    does not shift them. Rows whose prompt columns (tokens and mask) are equal share one prompt.
    """
    prompt_length = input_ids.shape[1] - completion_length
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (n, P + T)
    if prompt_length < 2 or _sharded(model):
        return _whole_rows(model, input_ids, attention_mask, position_ids, completion_length,
                           hidden)
    prompts = torch.cat([input_ids[:, :prompt_length], attention_mask[:, :prompt_length]], dim=1)
    distinct, prompt_of_row = torch.unique(prompts, dim=0, return_inverse=True)  # (m, 2P), (n,)
    if _packs(model, prompt_length + PACKED_SLOTS):
        return _packed(model, input_ids, attention_mask, position_ids, completion_length,
                       distinct, prompt_of_row, hidden)
    if distinct.shape[0] == input_ids.shape[0]:
        return _whole_rows(model, input_ids, attention_mask, position_ids, completion_length,
                           hidden)
    return _cached(model, input_ids, attention_mask, position_ids, completion_length, distinct,
                   prompt_of_row, hidden)


def _packs(model, keys: int) -> bool:
    """Whether the rows can run packed: that needs a 4D boolean mask, which SDPA attention takes
    as given (eager attention adds its mask, flash attention takes none), and no sliding window
    shorter than the keys a packed sequence holds."""
    config = _unwrapped(model).config
    window = getattr(config, "sliding_window", None)
    windowed = (window is not None and getattr(config, "use_sliding_window", True)
                and window < keys)
    return config._attn_implementation == "sdpa" and not windowed


def _bins(prompt_of_row: list[int], lengths: list[int]) -> list[int]:
    """The packed sequence of each row: rows in order, a new sequence where the prompt changes
    or the rows would pass PACKED_SLOTS positions (a longer row has a sequence alone).
    training.rollouts.logprobs orders a micro-batch's rows by prompt."""
    bins, sequence, used, last_prompt = [], -1, 0, None
    for prompt, length in zip(prompt_of_row, lengths, strict=True):
        if prompt != last_prompt or used + length > PACKED_SLOTS:
            sequence, used, last_prompt = sequence + 1, 0, prompt
        bins.append(sequence)
        used += length
    return bins


def _packed(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            position_ids: torch.Tensor, completion_length: int, distinct: torch.Tensor,
            prompt_of_row: torch.Tensor, hidden: bool) -> CompletionStates:
    """One forward pass over sequences (S, P − 1 + W): a prompt, then its rows end to end.

    Row i has L_i positions (its completion up to and with the EOS; at least 1). Segment ids
    give the mask: −1 for a prompt token, i for row i's positions, and a negative id of its own
    for each padding position (a prompt's left padding, a sequence's tail), which so sees only
    itself and no softmax runs over nothing. A position sees the earlier prompt tokens and the
    earlier positions of its own segment.
    """
    n, device = input_ids.shape[0], input_ids.device
    cached = input_ids.shape[1] - completion_length - 1  # prompt columns before the segments
    prompt_mask = distinct[:, cached + 1:cached + 1 + cached].bool()  # (m, P − 1)
    lengths = attention_mask[:, cached + 1:].sum(dim=1).clamp(min=1)  # (n,)
    bin_of_row = torch.tensor(_bins(prompt_of_row.tolist(), lengths.tolist()), device=device)
    sequences = int(bin_of_row[-1]) + 1
    # each row's first slot: the lengths of the rows before it in its sequence
    owned = torch.nn.functional.one_hot(bin_of_row, sequences) * lengths[:, None]  # (n, S)
    offsets = (owned.cumsum(dim=0) - owned).gather(1, bin_of_row[:, None]).squeeze(1)  # (n,)
    width = int(owned.sum(dim=0).max())  # W: the most row positions in a sequence
    prompts = torch.zeros(sequences, dtype=torch.long, device=device)
    prompts[bin_of_row] = prompt_of_row  # (S,) each sequence's prompt

    row_of_token = torch.arange(n, device=device).repeat_interleave(lengths)  # (K,)
    step = (torch.arange(row_of_token.shape[0], device=device)
            - (lengths.cumsum(dim=0) - lengths)[row_of_token])  # (K,) t within its row
    sequence, slot = bin_of_row[row_of_token], cached + offsets[row_of_token] + step  # (K,)
    source = cached + step  # (K,) the input column each slot runs
    length = cached + width
    ids = torch.zeros(sequences, length, dtype=input_ids.dtype, device=device)
    ids[:, :cached] = distinct[prompts, :cached]
    ids[sequence, slot] = input_ids[row_of_token, source]
    positions = torch.zeros(sequences, length, dtype=position_ids.dtype, device=device)
    positions[:, :cached] = (prompt_mask[prompts].long().cumsum(dim=1) - 1).clamp(min=0)
    positions[sequence, slot] = position_ids[row_of_token, source]
    own = -2 - torch.arange(length, device=device).expand(sequences, length)  # (S, L)
    prompt_token = torch.nn.functional.pad(prompt_mask[prompts], (0, width))  # (S, L)
    segment = torch.where(prompt_token, -1, own).index_put((sequence, slot), row_of_token)
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()  # (L, L)
    query, key = segment[:, :, None], segment[:, None, :]
    mask = causal & ((query == key) | ((key == -1) & (query >= -1)))  # (S, L, L)

    output = model(**_inputs(model, ids), attention_mask=mask[:, None],
                   position_ids=positions, logits_to_keep=width, use_cache=False,
                   output_hidden_states=hidden)
    t = torch.arange(completion_length, device=device)
    row_sequences = bin_of_row[:, None].expand(n, completion_length)  # (n, T)
    row_slots = offsets[:, None] + torch.minimum(t[None, :], lengths[:, None] - 1)  # (n, T)
    states = None
    if hidden:
        states = output.hidden_states[-1][:, cached:][row_sequences, row_slots]  # (n, T, H)
    return CompletionStates(logits=output.logits[row_sequences, row_slots],  # (n, T, V)
                            hidden=states)


def _inputs(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The model's inputs for `ids`: the ids, or, when its embedding is a plain one that is also
    the output layer's weight (tied), their embeddings from a lookup whose gradient is sparse:
    autograd then adds its few rows into the output layer's dense (V, H) gradient, where the
    embedding's own dense gradient would be a (V, H) tensor of zeros to build and add in full.
    Not across processes: DDP's gradient hooks expect the lookup inside the model's forward."""
    embedding = _unwrapped(model).get_input_embeddings()
    output = _unwrapped(model).get_output_embeddings()
    if (type(embedding) is torch.nn.Embedding and output is not None
            and output.weight is embedding.weight and not torch.distributed.is_initialized()):
        return {"inputs_embeds": torch.nn.functional.embedding(
            ids, embedding.weight, padding_idx=embedding.padding_idx, sparse=True)}
    return {"input_ids": ids}


def _cached(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            position_ids: torch.Tensor, completion_length: int, distinct: torch.Tensor,
            prompt_of_row: torch.Tensor, hidden: bool) -> CompletionStates:
    """The distinct prompts' pass, its key/value cache copied to their rows, then the rows,
    padded, from their prompt's last token (positions P − 1 … P + T − 2)."""
    prompt_length = input_ids.shape[1] - completion_length
    cached = prompt_length - 1  # the prompt's last token runs with its row: it predicts token 0
    prompt_mask = distinct[:, prompt_length:prompt_length + cached]  # (m, P − 1)
    cache = model(input_ids=distinct[:, :cached], attention_mask=prompt_mask,
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


def _unwrapped(model):
    """The model a DDP wrapper holds (training.parallel), whose config and layers it hides."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) \
        else model


def _sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
