"""The loops that drive a run: the online RL loop (`online`), DPO's offline one (`offline`),
periodic and stand-alone evaluation (`evaluation`), the μ-pass policy update, and what every
loop sets up the same way (`setup`: device, seeds, optimiser, step loop, checkpoints)."""
