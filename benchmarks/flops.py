"""The machine's limit and the work a GRPO step does, in FLOPs, for the benchmarks that hold a
step's phases against it (bench_train on CPU, bench_gpu on a GPU).

A transformer's matmuls cost 2 FLOPs per parameter per token forward and twice that backward
(Kaplan et al. 2020, "Scaling Laws for Neural Language Models", §2.1), attention's own
quadratic term left out (small at these lengths). With N the parameters that take part in a
matmul (a tied embedding counted once: it is the output layer's matmul, and its lookup costs
nothing) and T the tokens of prompts and completions:

    forward (reference log-probs, old log-probs)   2·N·T
    update (forward and backward)                  6·N·T

The denominator is measured, not taken from a datasheet: the best of a few rounds of a large
square matmul in the precision the step computes in, on the same machine in the same run.
"""

from __future__ import annotations

import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

FORWARD_FLOPS_PER_PARAM_TOKEN = 2
UPDATE_FLOPS_PER_PARAM_TOKEN = 6

MATMUL_SIZE = {"cuda": 8192, "cpu": 2048}
MATMUL_ROUNDS = 5


def matmul_rate(device: str, dtype: torch.dtype = torch.bfloat16) -> float:
    """FLOP/s of a large square `dtype` matmul on `device` (2·n³ FLOPs each), the best of a few
    rounds after a warm-up: what the machine reaches on its most favourable kernel."""
    size = MATMUL_SIZE[device]
    repeats = 20 if device == "cuda" else 2
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty_like(a)
    torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(MATMUL_ROUNDS):
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        _synchronize(device)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return best


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_parameters(model_dir: str) -> int:
    """N for the model saved in `model_dir`: its parameters, a tied embedding counted once
    (built on the meta device: no weights are loaded)."""
    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())  # shared tensors are listed once


def forward_flops(params: int, tokens: float) -> float:
    return FORWARD_FLOPS_PER_PARAM_TOKEN * params * tokens


def update_flops(params: int, tokens: float) -> float:
    return UPDATE_FLOPS_PER_PARAM_TOKEN * params * tokens


def flop(value: float) -> str:
    """FLOP in the unit that reads best: a GPU's are TFLOP, a CPU's GFLOP."""
    return f"{value / 1e12:.2f} TFLOP" if value >= 1e12 else f"{value / 1e9:.2f} GFLOP"
