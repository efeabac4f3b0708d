"""The run page's live parts: the event stream that updates it (stream, live_feed), its panels
(panels; templates/live/), and the charts' data (views: metrics as JSON and CSV).

Models stay in webapp.runs.models: this app reads Run, MetricPoint, Rollout, LogLine and
Checkpoint rows there, and moving a model to another app would cost a data migration of its
table for no gain in behaviour."""
