"""Policy-optimisation algorithms, one file each: a config, `compute_advantages`, `compute_loss`."""
