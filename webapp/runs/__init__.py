"""Runs: a run's life from launch to its end (models, with the status state machine; services;
selectors), what a run reports (ingestion), runs that scripts outside rlab report (tracking),
what it may load (model_sources), where its files are (files), the port to the broker that
sends it to a worker (broker), its metric series (metric_series), its page with its config
(config_table), and the comparison of a project's runs (compare).

Its models also hold what other apps show of a run (metric points, rollouts, log lines,
checkpoints): those apps (live, rollouts, evaluations, reviews) read them from here, since
moving a model costs a data migration."""
