"""Evaluation results: an evaluation's jobs and their metrics (selectors), launching a job on a
model or a checkpoint, comparing two jobs prompt by prompt (compare), the project's leaderboard
(leaderboard) and the exports (export).

Models stay in webapp.runs.models: an evaluation job is a Run of an evaluation experiment, with
its results as MetricPoint and Rollout rows; moving them would cost data migrations for no gain
in behaviour."""
