"""The JSON API (django-ninja): projects, experiments, runs, metrics, rollouts, logs, imports and
tracked runs (routers/), authenticated by personal API tokens (tokens, auth)."""
