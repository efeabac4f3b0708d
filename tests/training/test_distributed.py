"""The built-in trainer as N processes under torchrun (training.parallel), CPU and gloo: a step
over 2 processes equals one over 1 on the same global batch, checkpoints resume with another
process count, only the first process reports, and one failing process fails the run; the same
with the policy sharded by FSDP2 (`sharding: fsdp`), whose checkpoints resume in one process.

Every run here is a real torchrun with real processes. The random tiny model never answers a
sum, so the child rewards longer completions (as tests/training/conftest's length_rewarded does
in-process): groups then differ and the policy moves from the first step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.spec.config import RunConfig

REPO_ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import os, sys
import training.loops.online
import training.spec.tasks
from training.spec.tasks import AdditionTask

def longer_is_better(prompts, completions, *, answer, **columns):
    # one answer per completion: the prompts scored are those the completions answer
    return [float(len(c)) for c, _ in zip(completions, answer, strict=True)]

training.spec.tasks.TASKS["arithmetic"] = AdditionTask(
    low=0, high=9, reward_functions={"correct": longer_is_better})

if os.environ.get("FAIL_ON_RANK") == os.environ["RANK"]:
    def failing_score(*args, **kwargs):
        raise RuntimeError("scoring broke on this process")
    training.loops.online.score_rollouts = failing_score

from training.process import main
sys.exit(main())
"""

# Measured per process or in time: not expected to agree between process counts.
UNEQUAL = ("time/", "perf/")


def torchrun(folder: Path, processes: int, config: dict, *, fail_on_rank: int | None = None,
             ) -> tuple[list[str], int, str]:
    """One training run under torchrun with `processes` CPU processes, checkpoints under
    folder/run; its stdout lines, exit code and stderr."""
    folder.mkdir(parents=True)
    request = folder / "request.json"
    request.write_text(json.dumps({"run_id": 1, "config": config,
                                   "output_dir": str(folder / "run")}))
    child = folder / "child.py"
    child.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "client")]),
           "PYTHONSAFEPATH": "1", "OMP_NUM_THREADS": "1"}
    if fail_on_rank is not None:
        env["FAIL_ON_RANK"] = str(fail_on_rank)
    with open(folder / "stdout", "w") as stdout, open(folder / "stderr", "w") as stderr:
        code = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
             f"--nproc-per-node={processes}", "--max-restarts=0", str(child),
             "--request", str(request)],
            cwd=folder, env=env, stdout=stdout, stderr=stderr, timeout=180).returncode
    return ((folder / "stdout").read_text().splitlines(), code,
            (folder / "stderr").read_text())


def events_of(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


def metrics_by_step(events: list[dict]) -> dict[int, dict[str, float]]:
    return {e["step"]: {k: v for k, v in e["values"].items() if not k.startswith(UNEQUAL)}
            for e in events if e["kind"] == "metrics"}


def weights(folder: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(folder / "run" / f"checkpoint-{step}" / "model.safetensors")


def initial_weights(tiny_model: Path) -> dict[str, torch.Tensor]:
    return load_file(tiny_model / "model.safetensors")


def assert_same_metrics(got: dict[int, dict[str, float]], want: dict[int, dict[str, float]],
                        ) -> None:
    assert got.keys() == want.keys()
    for step in want:
        assert got[step].keys() == want[step].keys(), step
        for key, value in want[step].items():
            assert got[step][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (step, key)


def assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor],
                        start: dict[str, torch.Tensor]) -> None:
    """Each tensor's training moved it the same way: the runs differ by under 1% of how far
    they moved. (Not element by element: AdamW divides by √v, so the rounding noise of a
    gradient that is nearly 0 becomes a step of up to the learning rate in that element.)"""
    assert got.keys() == want.keys()
    for name in want:
        moved = (want[name] - start[name]).norm()
        assert (got[name] - want[name]).norm() <= 1e-2 * moved + 1e-6, name


def rollout_texts(events: list[dict]) -> list[tuple]:
    return [(e["step"], item["group"], item["prompt"], item["completion"])
            for e in events if e["kind"] == "rollouts" for item in e["items"]]


def config_for(tiny_model, devices: int, **overrides) -> dict:
    """3 steps of 4 prompts × G=3 at a learning rate that moves the tiny model visibly, with
    a KL penalty (a reference per process); a checkpoint after every step."""
    values = dict(model=str(tiny_model), rollout_backend="transformers", max_steps=3,
                  prompts_per_step=4, group_size=3, max_new_tokens=6,
                  micro_batch_size=4, learning_rate=1e-3, beta=0.04, checkpoint_every=1,
                  keep_checkpoints=3, rollouts_logged_per_step=12, token_details_per_step=4,
                  devices=devices)
    values.update(overrides)
    return RunConfig.from_dict(values, paths=True).to_dict()


@pytest.fixture(scope="module")
def grpo_runs(tiny_model, tmp_path_factory):
    """The same GRPO run in 1 process and in 2: (folder, events) each."""
    root = tmp_path_factory.mktemp("grpo")
    runs = {}
    for processes in (1, 2):
        folder = root / f"p{processes}"
        lines, code, stderr = torchrun(folder, processes, config_for(tiny_model, processes))
        assert code == 0, (lines, stderr[-6000:])
        runs[processes] = (folder, lines)
    return runs


def test_two_processes_equal_one_on_the_same_batch(grpo_runs):
    (one, one_lines), (two, two_lines) = grpo_runs[1], grpo_runs[2]
    one_events, two_events = events_of(one_lines), events_of(two_lines)

    assert rollout_texts(two_events) == rollout_texts(one_events)  # the same prompts, samples
    assert len(rollout_texts(one_events)) == 3 * 12
    assert_same_metrics(metrics_by_step(two_events), metrics_by_step(one_events))
    assert metrics_by_step(one_events)[2]["loss/policy"] != 0
    assert_same_weights(weights(two, 2), weights(one, 2), weights(one, 1))
    assert not torch.equal(weights(one, 2)["model.norm.weight"],
                           weights(one, 1)["model.norm.weight"])  # the policy did move


def test_only_the_first_process_reports(grpo_runs):
    _, lines = grpo_runs[2]
    events = events_of(lines)  # every line on stdout is an event
    kinds = [e["kind"] for e in events]

    assert kinds.count("done") == 1 and kinds[-1] == "done"
    assert kinds.count("status") == 1
    assert sorted(e["step"] for e in events if e["kind"] == "metrics") == [1, 2, 3]
    assert sorted(e["step"] for e in events if e["kind"] == "checkpoint") == [1, 2, 3]
    groups = [item["group"] for e in events if e["kind"] == "rollouts" and e["step"] == 1
              for item in e["items"]]
    assert groups == [g for g in range(4) for _ in range(3)]  # both processes' groups


@pytest.mark.parametrize(("saved_by", "resumed_in"), [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_with_another_process_count(grpo_runs, tiny_model, tmp_path,
                                                          saved_by, resumed_in):
    unbroken, unbroken_lines = grpo_runs[saved_by]
    config = config_for(tiny_model, resumed_in,
                        resume_from=str(unbroken / "run" / "checkpoint-1"))

    lines, code, stderr = torchrun(tmp_path / "resumed", resumed_in, config)

    assert code == 0, (lines, stderr[-6000:])
    events = events_of(lines)
    want = metrics_by_step(events_of(unbroken_lines))
    assert_same_metrics(metrics_by_step(events), {step: want[step] for step in (2, 3)})
    assert_same_weights(weights(tmp_path / "resumed", 3), weights(unbroken, 3),
                        weights(unbroken, 1))


def test_dapo_normaliser_spans_both_processes(tiny_model, tmp_path):
    """DAPO divides by the tokens of the whole batch, Dr. GRPO-style sums by a constant: with
    completions of different lengths on the two processes, only the global count gives the
    one-process loss."""
    runs = {}
    for processes in (1, 2):
        config = config_for(tiny_model, processes, loss_type="dapo", max_steps=2,
                            checkpoint_every=0, beta=0.0, max_new_tokens=8)
        lines, code, stderr = torchrun(tmp_path / f"p{processes}", processes, config)
        assert code == 0, (lines, stderr[-6000:])
        runs[processes] = events_of(lines)

    assert_same_metrics(metrics_by_step(runs[2]), metrics_by_step(runs[1]))
    assert_same_weights(weights(tmp_path / "p2", 2), weights(tmp_path / "p1", 2),
                        initial_weights(tiny_model))


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_a_failing_process_fails_the_run(tiny_model, tmp_path, sharding):
    lines, code, stderr = torchrun(tmp_path / "failing", 2,
                                   config_for(tiny_model, 2, sharding=sharding), fail_on_rank=1)

    assert code != 0
    events = events_of(lines)
    errors = [e["message"] for e in events if e["kind"] == "error"]
    assert errors and "scoring broke on this process" in errors[-1], stderr[-3000:]
    assert not [e for e in events if e["kind"] in ("done", "metrics")]


@pytest.fixture(scope="module")
def fsdp_run(tiny_model, tmp_path_factory):
    """The GRPO run of grpo_runs in 2 processes with the policy sharded by FSDP2."""
    folder = tmp_path_factory.mktemp("fsdp") / "p2"
    lines, code, stderr = torchrun(folder, 2, config_for(tiny_model, 2, sharding="fsdp"))
    assert code == 0, (lines, stderr[-6000:])
    return folder, lines


def test_fsdp_over_two_processes_equals_one(fsdp_run, grpo_runs):
    (one, one_lines), (two, two_lines) = grpo_runs[1], fsdp_run
    one_events, two_events = events_of(one_lines), events_of(two_lines)

    assert rollout_texts(two_events) == rollout_texts(one_events)
    assert_same_metrics(metrics_by_step(two_events), metrics_by_step(one_events))
    # the checkpoint holds the whole model, as a one-process run saves it
    assert weights(two, 2).keys() == weights(one, 2).keys()
    assert_same_weights(weights(two, 2), weights(one, 2), weights(one, 1))
    assert_same_weights(weights(two, 3), weights(one, 3), weights(one, 1))
    config = json.loads((two / "run" / "checkpoint-3" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]


@pytest.mark.parametrize(("saved_by", "resumed_in"), [("fsdp", 1), (1, "fsdp")])
def test_an_fsdp_checkpoint_resumes_in_one_process_and_back(fsdp_run, grpo_runs, tiny_model,
                                                             tmp_path, saved_by, resumed_in):
    """The checkpoint of a sharded run holds the whole optimiser state (by parameter, as one
    process saves it): one process goes on from it, and a sharded run from one process's."""
    unbroken, unbroken_lines = fsdp_run if saved_by == "fsdp" else grpo_runs[1]
    processes, sharding = (2, "fsdp") if resumed_in == "fsdp" else (1, "ddp")
    config = config_for(tiny_model, processes, sharding=sharding,
                        resume_from=str(unbroken / "run" / "checkpoint-1"))

    lines, code, stderr = torchrun(tmp_path / "resumed", processes, config)

    assert code == 0, (lines, stderr[-6000:])
    want = metrics_by_step(events_of(unbroken_lines))
    assert_same_metrics(metrics_by_step(events_of(lines)), {step: want[step] for step in (2, 3)})
    assert_same_weights(weights(tmp_path / "resumed", 3), weights(unbroken, 3),
                        weights(unbroken, 1))
