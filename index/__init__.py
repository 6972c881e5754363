"""The repository and its on-disk format: the only code that knows byte layouts."""
