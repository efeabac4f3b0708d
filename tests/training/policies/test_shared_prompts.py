"""Running each distinct prompt once, and no padding after a short completion, gives the full
forward pass's logits, hidden states and gradients, on left-padded prompts of different lengths
and completions of different lengths: packed (SDPA attention) and on a cached prompt (eager)."""

import pytest
import torch

from training.policies.loading import apply_lora, load_policy
from training.rollouts.logprobs import micro_batch_order
from training.rollouts.generation import Rollouts
from training.policies import shared_prompts
from training.policies.shared_prompts import completion_states

PAD = 0


def _rows(prompts: list[list[int]], completions: list[list[int]], owners: list[int],
          ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """input_ids, attention_mask (n, P + T) with prompt owners[i] left-padded, then completion
    i right-padded (mask 0 after it, as after an EOS)."""
    prompt_width = max(len(p) for p in prompts)
    width = max(len(c) for c in completions)
    ids, masks = [], []
    for completion, owner in zip(completions, owners, strict=True):
        prompt = prompts[owner]
        left, right = prompt_width - len(prompt), width - len(completion)
        ids.append([PAD] * left + prompt + completion + [PAD] * right)
        masks.append([0] * left + [1] * (len(prompt) + len(completion)) + [0] * right)
    return torch.tensor(ids), torch.tensor(masks), width


def _whole_rows(model, input_ids, attention_mask, width):
    """The reference: the model's own forward pass over every row, whole and padded."""
    positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                   output_hidden_states=True)
    return (output.logits[:, -(width + 1):-1], output.hidden_states[-1][:, -(width + 1):-1])


@pytest.fixture(params=["sdpa", "eager"])
def tiny_policy(tiny_model, request):
    """The tiny model with SDPA attention (rows packed) or eager attention (a cached prompt)."""
    model, _ = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    model.set_attn_implementation(request.param)
    return model


# Two prompts of different lengths; rows 0-2 share prompt 0, rows 3-4 prompt 1, out of order.
PROMPTS = [[101, 102, 103, 104, 105], [201, 202, 203]]
COMPLETIONS = [[11, 12, 13, 14], [21, 22], [31], [41, 42, 43], [51, 52, 53, 54]]
OWNERS = [0, 1, 0, 1, 0]


def test_shared_prompt_pass_matches_every_row_run_whole(tiny_policy):
    input_ids, attention_mask, width = _rows(PROMPTS, COMPLETIONS, OWNERS)
    shared = completion_states(tiny_policy, input_ids, attention_mask, width, hidden=True)
    logits, hidden = _whole_rows(tiny_policy, input_ids, attention_mask, width)
    mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in COMPLETIONS]).bool()
    assert shared.logits.shape == logits.shape == (5, width, tiny_policy.config.vocab_size)
    torch.testing.assert_close(shared.logits[mask], logits[mask], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shared.hidden[mask], hidden[mask], atol=1e-5, rtol=1e-4)


def _same_gradients(model, input_ids, attention_mask, width, mask):
    targets = input_ids[:, -width:]

    def gradients(logits: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        logp = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        logp[mask].sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    shared = gradients(completion_states(model, input_ids, attention_mask, width).logits)
    whole = gradients(_whole_rows(model, input_ids, attention_mask, width)[0])
    for got, expected in zip(shared, whole, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_gradients_from_every_row_reach_the_shared_prompt_pass(tiny_policy):
    input_ids, attention_mask, width = _rows(PROMPTS, COMPLETIONS, OWNERS)
    mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in COMPLETIONS]).bool()
    _same_gradients(tiny_policy, input_ids, attention_mask, width, mask)


def test_a_prompt_whose_rows_fill_several_packed_sequences(tiny_policy, monkeypatch):
    """Rows of 4, 1 and 4 positions at 5 positions a sequence: prompt 0 runs in two sequences
    (4 + 1, then 4), and a sequence's tail is padding."""
    monkeypatch.setattr(shared_prompts, "PACKED_SLOTS", 5)
    input_ids, attention_mask, width = _rows(PROMPTS, COMPLETIONS, [0, 0, 0, 1, 1])
    mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in COMPLETIONS]).bool()
    shared = completion_states(tiny_policy, input_ids, attention_mask, width, hidden=True)
    logits, hidden = _whole_rows(tiny_policy, input_ids, attention_mask, width)
    torch.testing.assert_close(shared.logits[mask], logits[mask], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shared.hidden[mask], hidden[mask], atol=1e-5, rtol=1e-4)
    _same_gradients(tiny_policy, input_ids, attention_mask, width, mask)


def test_an_untied_output_layer_gets_its_own_dense_gradient(tiny_policy):
    """The sparse embedding lookup is for a tied embedding only: untied, both weights get the
    gradients of the full forward pass, and the optimiser sees dense ones."""
    tiny_policy.lm_head.weight = torch.nn.Parameter(tiny_policy.lm_head.weight.detach().clone())
    input_ids, attention_mask, width = _rows(PROMPTS, COMPLETIONS, OWNERS)
    mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in COMPLETIONS]).bool()
    _same_gradients(tiny_policy, input_ids, attention_mask, width, mask)
    assert not tiny_policy.get_input_embeddings().weight.grad.is_sparse


def test_lora_model_shares_prompts_too(tiny_policy):
    model = apply_lora(tiny_policy, rank=4, alpha=8)
    input_ids, attention_mask, width = _rows(PROMPTS, COMPLETIONS, OWNERS)
    shared = completion_states(model, input_ids, attention_mask, width).logits
    logits, _ = _whole_rows(model, input_ids, attention_mask, width)
    mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in COMPLETIONS]).bool()
    torch.testing.assert_close(shared[mask], logits[mask], atol=1e-5, rtol=1e-4)


def test_one_token_completions(tiny_policy):
    input_ids, attention_mask, width = _rows(PROMPTS, [[7], [8], [9]], [0, 0, 1])
    shared = completion_states(tiny_policy, input_ids, attention_mask, width).logits
    logits, _ = _whole_rows(tiny_policy, input_ids, attention_mask, width)
    torch.testing.assert_close(shared, logits, atol=1e-5, rtol=1e-4)


def test_micro_batches_keep_a_prompts_completions_together_longest_first():
    input_ids, attention_mask, width = _rows(PROMPTS, COMPLETIONS, OWNERS)
    completion_mask = attention_mask[:, -width:]
    rollouts = Rollouts(input_ids=input_ids, attention_mask=attention_mask,
                        completion_mask=completion_mask, lengths=completion_mask.sum(1),
                        truncated=torch.zeros(5, dtype=torch.bool), texts=[""] * 5)
    # prompt 0 (rows 0, 2, 4: lengths 4, 1, 4) has the longest completion, so it goes first
    assert micro_batch_order(rollouts).tolist() == [0, 4, 2, 3, 1]
