"""Reviews: labels and notes on rollouts, comments, tags and notes on runs, and the project's
activity feed."""
