"""Checkpoints: what a folder holds, how many are kept, that a half-written one is never
visible, LoRA checkpoints, and the resumptions a run refuses."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import training.spec.tasks
from training import checkpoints
from training.spec.config import RunConfig
from training.spec.events import ListReporter
from training.policies.loading import apply_lora, load_adapter, load_policy
from training.spec.tasks import AdditionTask
from training.loops.train import Outcome, train


def _longer_is_better(prompts, completions, **columns):
    """The random tiny model never answers right: reward length instead, so that the
    completions of a group differ and the policy moves from the first step."""
    return [float(len(c)) for c in completions]


def _run(config, output_dir=None):
    reporter = ListReporter()
    return train(config, reporter, output_dir=output_dir), reporter


def _hidden_folders(folder):
    return [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(".")]


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    """A run of 2 steps that checkpoints every step and keeps 1 checkpoint."""
    config = RunConfig(model=str(tiny_model), max_steps=2, prompts_per_step=2, group_size=3,
                       max_new_tokens=6, micro_batch_size=4, rollouts_logged_per_step=0,
                       rollout_backend="transformers", learning_rate=1e-2, checkpoint_every=1,
                       keep_checkpoints=1)
    output_dir = tmp_path_factory.mktemp("checkpointed-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(training.spec.tasks.TASKS, "arithmetic",
                      AdditionTask(low=0, high=9, reward_functions={"correct": _longer_is_better}))
        outcome, reporter = _run(config, output_dir)
    assert outcome is Outcome.COMPLETED
    return config, reporter, output_dir


@pytest.fixture(scope="module")
def policy(tiny_model):
    return load_policy(str(tiny_model), dtype=torch.float32, device="cpu")


@pytest.fixture(scope="module")
def lora_checkpoint(policy, tiny_model, tmp_path_factory):
    """A LoRA policy whose adapters are not zero, and its checkpoint."""
    _, tokenizer = policy
    model, _ = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    model = apply_lora(model, rank=2, alpha=4.0)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.05, generator=torch.Generator().manual_seed(0))
    config = RunConfig(model=str(tiny_model), lora_rank=2, lora_alpha=4.0).to_dict()
    path = checkpoints.save(tmp_path_factory.mktemp("lora-checkpoint"), 3, model=model,
                            tokenizer=tokenizer, state={"config": config}, tensors={}, keep=1)
    return model, path


def _logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer(["Compute 2 + 3."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits  # (1, L, V)


def _save(folder, step, policy, **kwargs):
    model, tokenizer = policy
    return checkpoints.save(folder, step, model=model, tokenizer=tokenizer,
                            state=kwargs.pop("state", {"config": {}}),
                            tensors=kwargs.pop("tensors", {}), keep=kwargs.pop("keep", 10))


def test_each_checkpoint_is_announced_and_the_last_is_final(run):
    _, reporter, output_dir = run
    events = reporter.of_kind("checkpoint")
    assert [(e["step"], e["path"], e["final"]) for e in events] == [
        (1, str(output_dir / "checkpoint-1"), False), (2, str(output_dir / "checkpoint-2"), True)]


def test_only_the_newest_checkpoints_are_kept(run):
    _, _, output_dir = run
    assert checkpoints.list_checkpoints(output_dir) == [output_dir / "checkpoint-2"]
    assert not (output_dir / "checkpoint-1").exists()
    assert not _hidden_folders(output_dir)


def test_a_checkpoint_is_a_model_folder_with_the_run_state(run, tiny_model):
    config, _, output_dir = run
    folder = output_dir / "checkpoint-2"
    model = AutoModelForCausalLM.from_pretrained(folder)
    initial = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert not torch.equal(model.get_input_embeddings().weight,
                           initial.get_input_embeddings().weight)  # trained
    assert AutoTokenizer.from_pretrained(folder).chat_template
    assert (folder / "generation_config.json").is_file()
    state = json.loads((folder / checkpoints.TRAINER_STATE).read_text())
    assert state["step"] == 2 and state["config"] == config.to_dict()
    assert state["kl"] == {"beta": 0.0} and "spo_tracker" not in state  # GRPO keeps none
    assert "rng" in state["sampler"]
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.bin"))  # nothing pickled
    tensors = checkpoints.load(folder).tensors
    assert set(tensors["rng"]) >= {"python", "numpy", "torch"}
    assert tensors["optimizer"]["state"]  # AdamW moments of a trained model
    assert tensors["scheduler"]["last_epoch"] == 2
    assert tensors["reference"] is None and "value_head" not in tensors
    loaded = checkpoints.load(folder)
    assert loaded.step == 2 and loaded.adapter is None


def test_keep_counts_steps_as_numbers(policy, tmp_path):
    for step in (9, 10, 11):
        _save(tmp_path, step, policy, keep=2)
    assert checkpoints.list_checkpoints(tmp_path) == [tmp_path / "checkpoint-10",
                                                      tmp_path / "checkpoint-11"]


def test_a_save_that_fails_leaves_no_checkpoint_folder(policy, tmp_path):
    _save(tmp_path, 1, policy)
    with pytest.raises(TypeError):  # a generator cannot be pickled: the last file fails
        _save(tmp_path, 2, policy, tensors={"broken": (x for x in [])})
    assert not (tmp_path / "checkpoint-2").exists()
    assert checkpoints.list_checkpoints(tmp_path) == [tmp_path / "checkpoint-1"]
    assert not _hidden_folders(tmp_path)


def test_a_leftover_staging_folder_is_not_a_checkpoint(policy, tmp_path):
    # What a process killed while saving step 3 leaves behind.
    staging = tmp_path / ".checkpoint-3-x1y2z3"
    staging.mkdir()
    (staging / "config.json").write_text("{")
    assert checkpoints.list_checkpoints(tmp_path) == []
    _save(tmp_path, 4, policy, keep=1)
    assert checkpoints.list_checkpoints(tmp_path) == [tmp_path / "checkpoint-4"]
    assert checkpoints.load(tmp_path / "checkpoint-4").step == 4


def test_saving_a_step_again_replaces_it(policy, tmp_path):
    _save(tmp_path, 1, policy, state={"config": {}, "note": "first"})
    _save(tmp_path, 1, policy, state={"config": {}, "note": "second"})
    assert checkpoints.load(tmp_path / "checkpoint-1").state["note"] == "second"
    assert checkpoints.list_checkpoints(tmp_path) == [tmp_path / "checkpoint-1"]


def test_a_lora_checkpoint_is_the_merged_model_plus_its_adapters(policy, lora_checkpoint,
                                                                 tiny_model):
    _, tokenizer = policy
    model, path = lora_checkpoint
    merged = AutoModelForCausalLM.from_pretrained(path)
    assert not any("lora" in name for name in merged.state_dict())
    expected = _logits(model, tokenizer)
    assert torch.allclose(_logits(merged, tokenizer), expected, atol=1e-5)
    assert not torch.allclose(_logits(policy[0], tokenizer), expected, atol=1e-3)  # not base
    assert checkpoints.load(path).adapter == path / checkpoints.ADAPTER
    assert (path / checkpoints.ADAPTER / "adapter_config.json").is_file()
    fresh, _ = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    fresh = apply_lora(fresh, rank=2, alpha=4.0)
    load_adapter(fresh, path / checkpoints.ADAPTER)
    assert torch.allclose(_logits(fresh, tokenizer), expected, atol=1e-5)


def _refused(config) -> str:
    outcome, reporter = _run(config)
    assert outcome is Outcome.FAILED
    assert not reporter.of_kind("metrics")
    [error] = reporter.of_kind("error")
    return error["message"]


def test_resuming_from_a_folder_that_is_not_a_checkpoint_is_refused(tiny_model, tmp_path):
    config = RunConfig(model=str(tiny_model), rollout_backend="transformers")
    message = _refused(dataclasses.replace(config, resume_from=str(tiny_model)))
    assert str(tiny_model) in message and "is not an rlab checkpoint" in message
    message = _refused(dataclasses.replace(config, resume_from=str(tmp_path / "gone")))
    assert "gone" in message and "does not exist" in message


def test_a_lora_checkpoint_resumes_only_with_lora(tiny_model, lora_checkpoint):
    _, path = lora_checkpoint
    config = RunConfig(model=str(tiny_model), rollout_backend="transformers",
                       resume_from=str(path))
    assert "holds LoRA adapters" in _refused(config)


def test_a_full_checkpoint_resumes_only_without_lora(run):
    config, _, output_dir = run
    message = _refused(dataclasses.replace(config, lora_rank=4,
                                           resume_from=str(output_dir / "checkpoint-2")))
    assert "fully fine-tuned" in message and "LoRA rank 0" in message


@pytest.mark.parametrize("setting, value", [("algorithm", "ppo"),
                                            ("prompt_sampler", "difficulty_filter")])
def test_a_checkpoint_resumes_only_with_its_algorithm_and_sampler(run, setting, value):
    config, _, output_dir = run
    saved = getattr(config, setting)
    message = _refused(dataclasses.replace(config, **{setting: value},
                                           resume_from=str(output_dir / "checkpoint-2")))
    assert f"with {setting} {saved}" in message and f"same {setting}" in message


@pytest.mark.parametrize("max_steps", [1, 2])
def test_a_checkpoint_at_or_after_max_steps_is_refused(run, max_steps):
    config, _, output_dir = run
    message = _refused(dataclasses.replace(config, max_steps=max_steps,
                                           resume_from=str(output_dir / "checkpoint-2")))
    assert "at step 2" in message and "raise max steps" in message


class _RunsCode:
    """Unpickling this calls os.system: what a crafted training state would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickled_training_state_is_refused_without_running_it(policy, tmp_path):
    folder = _save(tmp_path, 3, policy, keep=1)
    for name in (checkpoints.TRAINING_TENSORS, checkpoints.TRAINING_STRUCTURE):
        (folder / name).unlink()
    marker = tmp_path / "code-ran"
    torch.save({"optimizer": _RunsCode(marker)}, folder / "training_state.pt")
    with pytest.raises(checkpoints.CheckpointError, match="older rlab"):
        checkpoints.load(folder)
    assert not marker.exists()


def test_the_training_state_round_trips_without_pickle(tmp_path):
    weight = torch.randn(4, 3)
    tree = {"optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
                          "param_groups": [{"params": [0], "betas": (0.9, 0.999)}]},
            "tied": {"embed": weight, "head": weight},  # one storage, two names
            "rng": {"python": (3, (1, 2, 3), None),
                    "numpy": ("MT19937", np.arange(5, dtype=np.uint32), 2, 0, 0.0)},
            "nothing": None}
    checkpoints._save_tree(tree, tmp_path)
    loaded = checkpoints._load_tree(tmp_path)
    assert loaded["optimizer"]["state"][0]["step"].item() == 3.0
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(loaded["tied"]["embed"], weight)
    assert torch.equal(loaded["tied"]["head"], weight)
    assert loaded["rng"]["python"] == (3, (1, 2, 3), None)
    assert loaded["rng"]["numpy"][1].dtype == np.uint32
    assert loaded["rng"]["numpy"][1].tolist() == [0, 1, 2, 3, 4]
    assert loaded["nothing"] is None


def test_a_damaged_training_state_is_a_checkpoint_error(policy, tmp_path):
    folder = _save(tmp_path, 3, policy, keep=1)
    (folder / checkpoints.TRAINING_STRUCTURE).write_text('{"optimizer": {"$tensor": "999"}}')
    with pytest.raises(checkpoints.CheckpointError, match="damaged"):
        checkpoints.load(folder)
