"""Where a repository's files live (a directory, a bucket) and the protocol
on them: locks, holds, garbage lists, private local files."""
