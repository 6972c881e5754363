"""The on-disk format (docs/FORMAT.md): byte layouts, names, encryption.

Imports nothing of histfs above it."""
