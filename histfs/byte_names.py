"""Paths of bytes on the command line and in JSON: a name that is not
valid UTF-8 (a mailbox written by an old client) must survive being
printed, parsed by a script and given back.

JSON carries such a path losslessly as base64 under `<key>_b64` in place of
`<key>`; text shows it with `\\xNN` escapes (`show_path`), and every
command reads that text form back (`typed_path`)."""

from __future__ import annotations

import base64
import os

from index.format.names import read_shown_path


def json_path(path: bytes, key: str = "path") -> dict[str, str]:
    """`{key: text}` for a UTF-8 path, else `{key_b64: base64 of its bytes}`
    (json.dumps would write the undecodable bytes as lone surrogates, which
    jq and most parsers turn into U+FFFD)."""
    try:
        return {key: path.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{key}_b64": base64.b64encode(path).decode("ascii")}


def typed_paths(text: str) -> list[bytes]:
    """The paths an argument may mean, the likelier first: its own bytes,
    then, if it is the text form histfs prints for a name that is not
    UTF-8 (`bad\\xff\\xfename`), the bytes that form stands for."""
    literal = os.fsencode(text)
    shown = read_shown_path(text)
    return [literal] if shown is None or shown == literal else [literal, shown]
