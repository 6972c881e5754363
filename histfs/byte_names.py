"""Paths of bytes typed on the command line: a name that is not valid
UTF-8 (a mailbox written by an old client) must survive being printed and
given back. Text output shows it with `\\xNN` escapes (`show_path`), JSON
as base64 (`json_path`); every command that takes a path inside a
snapshot reads the text form back through `typed_paths`."""

from __future__ import annotations

import os

from index.format.names import read_shown_path


def typed_paths(text: str) -> list[bytes]:
    """The paths an argument may mean, the likelier first: its own bytes,
    then, if it is the text form histfs prints for a name that is not
    UTF-8 (`bad\\xff\\xfename`), the bytes that form stands for."""
    literal = os.fsencode(text)
    shown = read_shown_path(text)
    return [literal] if shown is None or shown == literal else [literal, shown]
