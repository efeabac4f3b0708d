"""rlab's training library: plain Python, torch and transformers; it never imports Django.

Two parts, with the arrows running one way (import-linter checks them in `make test`):

- `training.spec` describes a run without running it: settings, evaluation recipes, tasks,
  rewards, datasets, events, model references. No torch: the web app, the worker and the SDK
  import this part only, so that they validate configs with the definitions the trainer uses.
- The engine runs it: `training.loops` (the online loop, DPO's, evaluation, the policy update)
  on top of `training.samplers` (which prompts each step trains on), `training.algorithms` (one
  file per method), `training.rollouts` (generation backends, scoring) and `training.policies`
  (loading models, references, reward models), with `training.ops`, `training.checkpoints`,
  and two entry points: `training.process` (the process a worker starts) and `training.cli`
  (train from a config file).
"""
