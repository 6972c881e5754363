"""Where a mail part keeps each user's Maildir: a template such as
"%d/%n/Maildir", relative to the part's path, with the variables of
Dovecot's mail_location (%d the domain, %n the user without it, %u
user@domain, %% a '%').

The same template is matched against a snapshot's directories to find the
users (`match`), and filled in for one user to find the live Maildir
(`fill`). Names are bytes, as in a snapshot; a user is bytes too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VARIABLES = {"d": "the domain", "n": "the user without the domain", "u": "user@domain"}
_VALUE_RE = {"d": rb"[^@]+", "n": rb"[^@]+", "u": rb"[^@]+@[^@]+"}
"""What a variable matches inside one directory name: a domain and a
local part hold no '@'; %u is both around one."""
_TOKEN_RE = re.compile(r"%(.?)")


class MailboxPathError(ValueError):
    """A template that cannot name a Maildir per user (the message says why)."""


@dataclass(frozen=True, slots=True)
class MailboxPath:
    """A parsed template: per directory level, either its literal name or
    a pattern with variables."""

    text: str
    levels: tuple[tuple[bytes | str, ...], ...]
    """Per level, its pieces: bytes as written, or a variable's letter."""

    @classmethod
    def parse(cls, text: str) -> MailboxPath:
        """Read `text`; raises MailboxPathError naming what is wrong."""
        if not text:
            raise MailboxPathError("is empty")
        if text.startswith(("/", "~")):
            raise MailboxPathError(f"{text!r} must be relative to the part's path, "
                                   "e.g. \"%d/%n/Maildir\"")
        levels = []
        for level in text.split("/"):
            if level in ("", ".", ".."):
                raise MailboxPathError(f"{text!r} has an empty, '.' or '..' level")
            levels.append(_pieces(text, level))
        found = {p for level in levels for p in level if isinstance(p, str)}
        if not found & {"n", "u"}:
            raise MailboxPathError(f"{text!r} names no user: use %n or %u")
        return cls(text, tuple(levels))

    @property
    def variables(self) -> set[str]:
        """The variables the template uses."""
        return {p for level in self.levels for p in level if isinstance(p, str)}

    def match_level(self, depth: int, name: bytes,
                    known: dict[str, bytes]) -> dict[str, bytes] | None:
        """The variables that directory name `name` at `depth` gives, with
        those `known` from the levels above standing as they were found
        there; None if it does not match."""
        out, seen = [], set()
        for p in self.levels[depth]:
            if isinstance(p, bytes):
                out.append(re.escape(p))
            elif p in known:
                out.append(re.escape(known[p]))
            elif p in seen:
                out.append(b"(?P=" + p.encode() + b")")
            else:
                seen.add(p)
                out.append(b"(?P<" + p.encode() + b">" + _VALUE_RE[p] + b")")
        m = re.fullmatch(b"".join(out), name)
        return None if m is None else {**known, **m.groupdict()}

    def is_literal(self, depth: int) -> bool:
        """Whether the level at `depth` has no variable."""
        return all(isinstance(p, bytes) for p in self.levels[depth])

    def literal(self, depth: int) -> bytes:
        """The name of a level without variables."""
        return b"".join(p for p in self.levels[depth] if isinstance(p, bytes))

    def user_of(self, values: dict[str, bytes]) -> bytes | None:
        """The user the variables found along a path make, or None when they
        disagree (%u against %n@%d)."""
        u, n, d = values.get("u"), values.get("n"), values.get("d")
        if u is not None:
            local, _, domain = u.rpartition(b"@")
            if (n is not None and n != local) or (d is not None and d != domain):
                return None
            return u
        assert n is not None  # parse() wants %n or %u
        return n + b"@" + d if d is not None else n

    def fill(self, user: bytes) -> bytes | None:
        """The path of `user`'s Maildir relative to the part, or None when
        `user` cannot be one of this template's (no domain where %d or %u
        needs one, a '/' or an unsafe name)."""
        values = user_values(user)
        if not values["n"] or (not values["d"] and self.variables & {"d", "u"}):
            return None
        if self.variables == {"n"} and b"@" in user:
            # %n alone keeps no domain: a user named with one is not this
            # template's (john@example.org is not the user "john").
            return None
        names = []
        for level in self.levels:
            name = b"".join(p if isinstance(p, bytes) else values[p] for p in level)
            if name in (b".", b"..") or b"/" in name or b"\0" in name or name.startswith(b"."):
                return None
            names.append(name)
        return b"/".join(names)


def user_values(user: bytes) -> dict[str, bytes]:
    """The variables a user gives: %u the user, %n its part before the last
    '@' (all of it without one), %d the part after ("" without one)."""
    local, at, domain = user.rpartition(b"@")
    return {"u": user, "n": local, "d": domain} if at else {"u": user, "n": user, "d": b""}


def _pieces(text: str, level: str) -> tuple[bytes | str, ...]:
    """One level of the template: literal bytes and variable letters."""
    pieces: list[bytes | str] = []
    pos = 0
    for m in _TOKEN_RE.finditer(level):
        if m.start() > pos:
            pieces.append(level[pos:m.start()].encode("utf-8", "surrogateescape"))
        letter = m.group(1)
        if letter == "%":
            pieces.append(b"%")
        elif letter in VARIABLES:
            if pieces and isinstance(pieces[-1], str):
                raise MailboxPathError(f"{text!r}: %{pieces[-1]}%{letter} has no text "
                                       "between the two variables")
            pieces.append(letter)
        else:
            known = ", ".join(f"%{k} ({v})" for k, v in VARIABLES.items())
            raise MailboxPathError(f"{text!r}: %{letter} is not supported; use {known}")
        pos = m.end()
    if pos < len(level):
        pieces.append(level[pos:].encode("utf-8", "surrogateescape"))
    merged: list[bytes | str] = []
    for p in pieces:
        if isinstance(p, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += p
        else:
            merged.append(p)
    return tuple(merged)
