"""Exclude patterns of a part.

A pattern with a '/' is matched (shell-style, '*' also crossing '/') against
the absolute source path; a pattern without one against the name alone, so
`*.tmp` excludes such files anywhere and `*/tmp/*` the contents of every
`tmp` directory.
"""

from __future__ import annotations

import fnmatch
import os
import re


class Excludes:
    """A compiled set of exclude patterns."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = list(patterns)
        by_path = [fnmatch.translate(p) for p in patterns if "/" in p]
        by_name = [fnmatch.translate(p) for p in patterns if "/" not in p]
        self._path = self._compile(by_path)
        self._name = self._compile(by_name)

    @staticmethod
    def _compile(regexes: list[str]) -> re.Pattern[bytes] | None:
        if not regexes:
            return None
        return re.compile(os.fsencode("|".join(f"(?:{r})" for r in regexes)), re.DOTALL)

    def excluded(self, path: bytes, name: bytes) -> bool:
        """Whether the entry at `path` (named `name`) is left out."""
        if self._name is not None and self._name.match(name):
            return True
        return self._path is not None and self._path.match(path) is not None
