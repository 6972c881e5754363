"""The `histfs` command: argument and configuration parsing, output."""
