"""The read-only FUSE filesystem over index/ (see docs and README)."""
