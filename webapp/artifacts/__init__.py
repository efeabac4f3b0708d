"""Artifacts: files that tracked runs' scripts log (MLflow's log_artifact, log_dict, log_text,
log_table, log_image; transformers' checkpoints) and the models they log (MLflow 3's logged
models), kept in the artifact store: the local filesystem embedded, an S3-compatible bucket in
full mode."""
