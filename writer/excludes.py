"""Exclude patterns of a part.

Patterns are shell-style (`*`, `?`, `[...]`; `*` also crosses `/`).

- A pattern without `/` is matched against the name alone, at any depth:
  `*.tmp` excludes such files and directories anywhere in the part.
- A pattern with `/` is matched against the entry's path inside the part, as
  the snapshot shows it, written from the part's root with a leading `/`
  (`/john/Maildir/tmp/1.eml`), never against the source's absolute path: a
  part below a directory named `tmp` is not emptied by `*/tmp/*`.
  - A leading `/` anchors the pattern at the part's root: `/tmp/*` is the
    contents of the part's own top-level `tmp` only.
  - Otherwise the pattern may start at any depth, as if it began with `*/`:
    `Maildir/tmp/*` and `*/tmp/*` match `/john/Maildir/tmp/1.eml`, and
    `*/tmp/*` also matches `/tmp/x`.
- A pattern that starts with the part's own source path (`/var/spool/imap/*/tmp/*`
  for a part at `/var/spool/imap`, the form earlier versions needed) is read
  relative to it (`/*/tmp/*`).

An excluded directory is not entered: nothing below it is backed up.

Earlier versions matched patterns with `/` against the absolute path. A
pattern that picked out entries that way (`*/spool/tmp/*` for a part at
`/var/spool`) but matches none of them now is reported (`legacy_hits`), so
that a changed meaning does not go unnoticed.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

_SEP = b"\0"


def relative_pattern(pattern: str, sources: tuple[Path, ...] = ()) -> str:
    """The form of a pattern with `/` that is matched against paths inside the
    part (see the module's description)."""
    for source in sources:
        root = str(source).rstrip("/")
        if root and pattern.startswith(root + "/"):
            return pattern[len(root):]
    if pattern.startswith(("/", "*")):
        return pattern
    return "*/" + pattern


class Excludes:
    """A compiled set of exclude patterns of one part.

    `root` is the part's staging key (its name): the path inside the part is
    what follows it in an entry's key. `sources` are the spellings of the
    part's source path (as given, resolved) for patterns written against it.
    """

    def __init__(self, patterns: list[str], root: bytes = b"",
                 sources: tuple[Path, ...] = ()) -> None:
        self.patterns = list(patterns)
        self._root_len = len(root)
        by_path = [fnmatch.translate(relative_pattern(p, sources))
                   for p in patterns if "/" in p]
        by_name = [fnmatch.translate(p) for p in patterns if "/" not in p]
        self._path = self._compile(by_path)
        self._name = self._compile(by_name)
        # The old reading of each pattern with '/', unless it took in the
        # whole part through the source's own ancestors (`*/tmp/*` for a
        # part below /tmp): that was the mistake, not an intent.
        self._legacy: list[tuple[str, re.Pattern[bytes]]] = []
        for pattern in patterns:
            if "/" not in pattern:
                continue
            old = re.compile(os.fsencode(fnmatch.translate(pattern)), re.DOTALL)
            if not any(old.match(os.fsencode(f"{str(src).rstrip('/')}/\x01"))
                       for src in sources):
                self._legacy.append((pattern, old))
        self.legacy_hits: dict[str, bytes] = {}
        """Patterns with '/' that the absolute path of an entry matched
        but its path inside the part does not: pattern -> the first path."""

    @staticmethod
    def _compile(regexes: list[str]) -> re.Pattern[bytes] | None:
        if not regexes:
            return None
        return re.compile(os.fsencode("|".join(f"(?:{r})" for r in regexes)), re.DOTALL)

    def excluded(self, key: bytes, name: bytes, path: bytes = b"") -> bool:
        """Whether the entry staged under `key` (named `name`, at the
        absolute `path`) is left out."""
        if self._name is not None and self._name.match(name):
            return True
        if self._path is None:
            return False
        inside = key[self._root_len:].replace(_SEP, b"/")
        if self._path.match(inside) is not None:
            return True
        for pattern, old in self._legacy:
            if pattern not in self.legacy_hits and old.match(path):
                self.legacy_hits[pattern] = inside
        return False
