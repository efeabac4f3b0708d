"""The runs table of a project: every run of every experiment, with the columns a user chose
(config values, metric summaries), sorted, filtered, searched, grouped, and paged by keyset."""
