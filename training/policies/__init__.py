"""The models a run holds: loading the policy (with LoRA), its KL references, learned reward
models, and the forward pass that runs a shared prompt once."""
