"""Sweeps: a base experiment launched over search axes (a grid, random or log-uniform ranges,
seeds) by grid, random or Optuna's TPE search, with a median pruner on a chosen metric, a budget
of runs and a concurrency limit. The Optuna study lives in rlab's own database."""
