"""Read-only tools on a repository: restore, check, history."""
