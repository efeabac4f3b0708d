"""The four loss aggregations on a hand-computed batch, whole and split into micro-batches."""

import pytest
import torch

from training.algorithms.aggregation import AGGREGATIONS, BatchShape

# Two completions: 3 tokens with losses 1, 2, 3 and 1 token with loss 6; max length 4.
PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0, 0.0], [6.0, 0.0, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
EXPECTED = {
    "grpo": ((1 + 2 + 3) / 3 + 6 / 1) / 2,  # 4.0
    "dapo": (1 + 2 + 3 + 6) / 4,  # 3.0
    "dr_grpo": (1 + 2 + 3 + 6) / (2 * 4),  # 1.5
    "bnpo": (1 + 2 + 3 + 6) / 4,  # one micro-batch: the same as dapo
}
SPLIT_BNPO = ((1 + 2 + 3) / 3 + 6 / 1) / 2  # two micro-batches of one: mean of their means


@pytest.mark.parametrize("name", sorted(AGGREGATIONS))
def test_whole_batch(name):
    shape = BatchShape(sequences=2, tokens=4, max_completion_length=4, micro_batches=1)
    assert AGGREGATIONS[name](PER_TOKEN, MASK, shape).item() == pytest.approx(EXPECTED[name])


@pytest.mark.parametrize("name", sorted(AGGREGATIONS))
def test_micro_batch_shares_add_up_to_the_batch_loss(name):
    shape = BatchShape(sequences=2, tokens=4, max_completion_length=4, micro_batches=2)
    total = sum(AGGREGATIONS[name](PER_TOKEN[i:i + 1], MASK[i:i + 1], shape).item()
                for i in range(2))
    expected = SPLIT_BNPO if name == "bnpo" else EXPECTED[name]
    assert total == pytest.approx(expected)
