"""The exit statuses of `histfs`, which cron jobs, tape jobs and alerts test."""

EXIT_OK = 0
EXIT_WARNINGS = 1
"""Done, with warnings (files that could not be read, damaged snapshots)."""
EXIT_FAILED = 2
"""Not done: an error, or a bug."""
