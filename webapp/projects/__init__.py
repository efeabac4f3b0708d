"""Projects: a team's projects, the activity signal that apps beneath reviews send (activity),
what a project holds on disk (disk_use), and whole-project backup and restore (backup)."""
