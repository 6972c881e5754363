"""IMAP's modified UTF-7 (RFC 3501, 5.1.3): how Dovecot names a folder
with non-ASCII characters on disk and over IMAP ("Café" is "Caf&AOk-")."""

from __future__ import annotations

import base64


def encode(name: str) -> bytes:
    """`name` in modified UTF-7."""
    out: list[bytes] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append(b"&" + base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return b"".join(out)


def decode(name: bytes) -> str | None:
    """The text a modified UTF-7 name stands for, or None if it is not one."""
    out: list[str] = []
    pos = 0
    try:
        while pos < len(name):
            amp = name.find(b"&", pos)
            if amp < 0:
                amp = len(name)
            plain = name[pos:amp]
            if any(not 0x20 <= b <= 0x7E for b in plain):
                return None
            out.append(plain.decode("ascii"))
            if amp == len(name):
                break
            end = name.index(b"-", amp)
            chunk = name[amp + 1:end]
            if not chunk:
                out.append("&")
            else:
                raw = chunk.replace(b",", b"/")
                raw += b"=" * (-len(raw) % 4)
                out.append(base64.b64decode(raw, validate=True).decode("utf-16-be"))
            pos = end + 1
    except (ValueError, UnicodeDecodeError):
        return None
    return "".join(out)
