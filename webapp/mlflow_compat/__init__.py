"""MLflow-compatible tracking: a script that logs with the mlflow client (or with a trainer's
`report_to="mlflow"`) logs into an rlab project, without a change to its code.

    MLFLOW_TRACKING_URI=https://rlab.example/mlflow/<project id>
    MLFLOW_TRACKING_TOKEN=rlab_…   # or the token as MLFLOW_TRACKING_PASSWORD (any username)

MLflow's experiments are the project's tracked experiments (MLflow's "Default" experiment, id 0,
is one called Default), its runs are their runs, its parameters their config, its metrics their
metric points; its artifacts and logged models go to the artifact store (webapp.artifacts). The
REST calls that logging, searching and artifacts make are answered (see urls.py); anything else
(the model registry, traces, prompts) is MLflow's NOT_IMPLEMENTED error."""
