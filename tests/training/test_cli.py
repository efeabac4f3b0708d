"""`python -m training.cli config.yaml`: training from a config file, without the web app."""

import json
import os
import subprocess
import sys

import yaml

from tests.conftest import tiny_run_config
from training import checkpoints


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", *args], capture_output=True,
                          text=True, timeout=300, env=os.environ)


def test_a_yaml_config_trains_and_checkpoints(tmp_path, tiny_model):
    # A path, as a config file whose author owns the machine may give.
    config = tiny_run_config(tiny_model, max_steps=2, model=str(tiny_model))
    settings = {key: config[key] for key in ("model", "max_steps", "prompts_per_step",
                                             "group_size", "max_new_tokens", "rollout_backend")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**settings, "algorithm": "rloo"}))
    result = _run(str(tmp_path / "run.yaml"), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("step ")] == ["step 1",
                                                                                 "step 2"]
    assert f"checkpoint: {tmp_path / 'out' / 'checkpoint-2'}" in lines
    assert lines[-1] == "done"
    assert (tmp_path / "out" / "checkpoint-2" / "model.safetensors").is_file()


def test_an_invalid_config_file_names_every_bad_setting(tmp_path):
    (tmp_path / "bad.yaml").write_text("group_size: many\nloss_type: mean\ncolour: blue\n")
    result = _run(str(tmp_path / "bad.yaml"))
    assert result.returncode == 2
    for name in ("group_size", "loss_type", "colour: unknown setting"):
        assert name in result.stderr


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    result = _run(str(tmp_path / "list.json"))
    assert result.returncode == 2
    assert "must hold a mapping of settings" in result.stderr


def test_a_config_nested_by_section_trains_with_the_algorithms_own_settings(tmp_path,
                                                                             tiny_model):
    nested = {"model": {"model": str(tiny_model)},
              "algorithm": {"algorithm": "ppo", "gae_lambda": 0.9, "value_coef": 0.25},
              "rollout": {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 4,
                          "rollout_backend": "transformers"},
              "max_steps": 1}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(nested))
    result = _run(str(tmp_path / "run.yaml"), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    state = json.loads((tmp_path / "out" / "checkpoint-1" / checkpoints.TRAINER_STATE).read_text())
    assert state["config"]["gae_lambda"] == 0.9 and state["config"]["value_coef"] == 0.25


def test_a_setting_in_the_wrong_section_or_given_twice_is_refused(tmp_path):
    (tmp_path / "bad.yaml").write_text("group_size: 4\nrollout: {group_size: 8}\n"
                                       "kl: {learning_rate: 0.001}\n")
    result = _run(str(tmp_path / "bad.yaml"))
    assert result.returncode == 2
    assert "group_size: given twice" in result.stderr
    assert "learning_rate: belongs in section 'optimisation', not 'kl'" in result.stderr
