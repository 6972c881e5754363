"""Everything that changes a repository: backups (and later prune and gc)."""
