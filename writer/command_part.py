"""A part of `kind = "command"`: a command's standard output stored as one
file, `<part>/<file>`.

The command runs through /bin/sh -c with this process's environment (where
credentials belong: never on its command line, which the snapshot records
as the part's source)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from writer.dumps import Dump


@dataclass(frozen=True)
class CommandDumps:
    """The settings of a part of kind "command"."""

    command: str
    file: str

    def describe(self) -> str:
        """The command line, as the snapshot records the part's source."""
        return self.command

    def dumps(self) -> Iterator[Dump]:
        """The one dump: the command run by the shell."""
        yield Dump(self.file, ("/bin/sh", "-c", self.command),
                   what=f"the command {self.command!r}")
