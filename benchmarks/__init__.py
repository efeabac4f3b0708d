"""Benchmarks: `make bench-train` runs `python -m benchmarks.bench_train`. They print figures;
they are not tests and assert nothing about timings."""
