"""Where completions come from and what they score: the generation backends (transformers,
vLLM) and the reward scoring of a batch."""
