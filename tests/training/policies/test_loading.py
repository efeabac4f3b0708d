"""training.policies.loading: a policy loads with its dropout off."""

import json
import shutil

import torch

from training.policies.loading import load_policy


def test_a_policy_trained_with_dropout_loads_with_it_off(tiny_model, tmp_path):
    # The same weights, saved with attention dropout 0.5: in training mode, as the update runs,
    # two forward passes must agree, or stored log-probs (π_old, π_ref) would not match.
    folder = shutil.copytree(tiny_model, tmp_path / "dropout")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.5}))
    model, tokenizer = load_policy(str(folder), dtype=torch.float32, device="cpu")
    assert model.config.attention_dropout == 0.0
    assert all(module.attention_dropout == 0.0 for module in model.modules()
               if hasattr(module, "attention_dropout")
               and isinstance(module.attention_dropout, float))
    model.train()
    ids = tokenizer("Compute 2 + 3.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model(ids).logits)
