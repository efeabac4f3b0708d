"""The figures bench-train derives from rlab's own metrics, and the work it credits each phase
with."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from benchmarks.bench_train import _parse_args, rlab_phases
from benchmarks.flops import forward_flops, matmul_parameters, update_flops
from training.policies.loading import build_tiny_model


def test_the_reference_forward_is_taken_out_of_the_update_and_the_rest_is_bookkeeping():
    steps = [{"time/generate_s": 3.0, "time/score_s": 0.1, "time/reference_s": 0.5,
              "time/update_s": 2.5, "time/weight_sync_s": 0.4, "time/step_s": 6.2},
             {"time/generate_s": 5.0, "time/score_s": 0.1, "time/reference_s": 0.7,
              "time/update_s": 2.7, "time/weight_sync_s": 0.6, "time/step_s": 8.6}]

    phases = rlab_phases(steps, seconds_per_step=7.5)

    assert phases == pytest.approx({"generate": 4.0, "score": 0.1, "reference": 0.6,
                                    "update": 2.0, "weight sync": 0.5, "bookkeeping": 0.3})


def test_a_phase_an_algorithm_times_besides_is_listed_under_its_own_name():
    steps = [{"time/generate_s": 1.0, "time/update_s": 1.0, "time/value_s": 0.25,
              "time/step_s": 2.5}]

    phases = rlab_phases(steps, seconds_per_step=2.5)

    assert phases["value"] == 0.25
    assert phases["bookkeeping"] == pytest.approx(0.25)


def test_a_tied_embedding_counts_once_among_the_matmul_parameters(tmp_path):
    folder = build_tiny_model(tmp_path / "tiny")  # 49,152 × 64 embedding, tied to the output

    params = matmul_parameters(str(folder))

    model = AutoModelForCausalLM.from_pretrained(folder)
    assert params == sum(p.numel() for p in model.parameters())
    assert params < sum(t.numel() for t in model.state_dict().values())  # lm_head listed too


def test_an_update_costs_three_forward_passes():
    assert update_flops(1_000, 10) == 3 * forward_flops(1_000, 10) == 60_000


@pytest.mark.parametrize(("native", "argv", "dtypes"), [
    (True, [], ["float32", "bfloat16"]),
    (False, [], ["float32"]),  # emulated bf16 would time the emulation, for hours
    (False, ["--dtype", "bfloat16"], ["bfloat16"]),  # asked for: run anyway
    (True, ["--quick"], ["float32"]),
])
def test_the_bf16_round_runs_by_default_only_where_the_cpu_has_bf16(monkeypatch, native, argv,
                                                                      dtypes):
    monkeypatch.setattr("benchmarks.bench_train.native_bf16", lambda device: native)
    assert _parse_args(argv).dtypes == dtypes
