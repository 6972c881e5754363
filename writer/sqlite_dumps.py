"""A part of `kind = "sqlite"`: for each database, `<part>/<base name>`,
an online copy made by `python -m writer.sqlite_copy` (see there) and
streamed in as any dump is."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from index.model.cache import cache_root
from index.store.private import private_dir
from writer.dumps import Dump


@dataclass(frozen=True)
class SqliteDumps:
    """The settings of a part of kind "sqlite": database files of
    distinct base names."""

    paths: tuple[Path, ...]

    def describe(self) -> str:
        """The databases, as the snapshot records the part's source."""
        return "sqlite " + " ".join(str(p) for p in self.paths)

    def dumps(self) -> Iterator[Dump]:
        """A copy of each database, made in the local cache."""
        work_dir = private_dir(cache_root(), own=False)
        for path in self.paths:
            yield Dump(path.name, (sys.executable, "-m", "writer.sqlite_copy", str(path),
                                   str(work_dir)),
                       what=f"the copy of the SQLite database {path}")
