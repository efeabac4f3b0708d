"""rlab's training library: plain Python, torch and transformers; it never imports Django.

Importing this package (or `training.config`, `training.events`) must stay cheap and free of
torch, so that the web app can validate configs with the same definitions the trainer uses.
"""
