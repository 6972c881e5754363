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

Besides patterns, a directory is left out when it holds a valid
CACHEDIR.TAG (`exclude_caches`, https://bford.info/cachedir/) or a marker
file named in `exclude_if_present`; with `one_file_system` a directory on
another file system than the part's is kept, empty, and not entered. These
are looked at once per directory, never per file.

Patterns can be read from a file (`exclude_from`): one a line, blank lines
and lines starting with `#` ignored, surrounding white space dropped.

Earlier versions matched patterns with `/` against the absolute path. A
pattern that picked out entries that way (`*/spool/tmp/*` for a part at
`/var/spool`) but matches none of them now is reported (`legacy_hits`), so
that a changed meaning does not go unnoticed.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from pathlib import Path

from index.errors import ConfigError
from writer.long_paths import reachable
from writer.parts import Part

_SEP = b"\0"
CACHEDIR_TAG = b"CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
# Pattern syntaxes of other tools (borg's): read as shell patterns they
# would leave out nothing, silently.
_FOREIGN_PREFIXES = ("re:", "sh:", "pp:", "pf:", "fm:")


def patterns_from_file(path: Path) -> list[str]:
    """The exclude patterns in the file `path` (see the module's
    description); raises ConfigError naming the file and line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"exclude file {path}: {exc.strerror}") from None
    patterns = []
    for number, line in enumerate(raw.splitlines(), 1):
        # Non-UTF-8 names survive: patterns are matched as bytes again.
        text = os.fsdecode(line.strip())
        if not text or text.startswith("#"):
            continue
        if text.startswith(_FOREIGN_PREFIXES):
            raise ConfigError(f"exclude file {path}, line {number}: {text!r}: only shell "
                              "patterns are understood (no re:, sh:, pp:, pf:, fm:)")
        patterns.append(text)
    return patterns


def check_marker_name(name: str, where: str) -> str:
    """A name for `exclude_if_present`: one file name, no `/`."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ConfigError(f"{where}: expected a file name without '/', got {name!r}")
    return name


def is_cache_dir(path: bytes) -> bool:
    """Whether directory `path` holds a valid CACHEDIR.TAG: a regular file
    (not followed if a link) starting with the standard's signature."""
    try:
        with reachable(path) as p:
            fd = os.open(p + b"/" + CACHEDIR_TAG, os.O_RDONLY | os.O_NOFOLLOW
                         | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return os.pread(fd, len(CACHEDIR_SIGNATURE), 0) == CACHEDIR_SIGNATURE
    except OSError:
        return False
    finally:
        os.close(fd)


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


def part_excludes(part: Part, resolved: Path, st: os.stat_result) -> Excludes:
    """The excludes of `part`, whose source resolves to `resolved`, the
    directory `st`."""
    return Excludes(list(part.exclude), part.name.encode(), (part.path, resolved),
                    part.exclude_caches, part.exclude_if_present,
                    st.st_dev if part.one_file_system else None)


class Excludes:
    """A compiled set of exclude patterns of one part.

    `root` is the part's staging key (its name): the path inside the part is
    what follows it in an entry's key. `sources` are the spellings of the
    part's source path (as given, resolved) for patterns written against it.
    """

    def __init__(self, patterns: list[str], root: bytes = b"",
                 sources: tuple[Path, ...] = (), caches: bool = False,
                 markers: tuple[str, ...] = (), device: int | None = None) -> None:
        """`caches`, `markers`: leave out directories holding a valid
        CACHEDIR.TAG, or a file of one of these names; `device`: the part's
        file system, when no other one is to be entered."""
        self.patterns = list(patterns)
        self._caches = caches
        self._markers = [os.fsencode(m) for m in markers]
        self._device = device
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

    def left_out_dir(self, path: bytes) -> bool:
        """Whether the directory at `path` is left out for what it holds
        (a cache tag or a marker file)."""
        if self._markers:
            with reachable(path) as p:
                for marker in self._markers:
                    if os.path.lexists(p + b"/" + marker):
                        return True
        return self._caches and is_cache_dir(path)

    def stays_out(self, st: os.stat_result) -> bool:
        """Whether the directory `st` lies on a file system not to be entered."""
        return self._device is not None and st.st_dev != self._device
