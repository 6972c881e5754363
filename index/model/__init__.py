"""The repository: opening it, its local cache, reading snapshot indexes
and the chunks they point at, and writing new indexes (SnapshotWriter,
SnapshotEditor) for the writer to publish."""
