"""The mailboxes of a mail part in a snapshot: which users have a Maildir
there (found with the part's `mailbox_path` template), their folders and
their messages.

Folders are Maildir++, as Dovecot's default layout: the Maildir's root is
INBOX, and each directory `.Sub.Folder` directly below it is the folder
"Sub.Folder" ('.' separates the levels). A folder is a directory with a
`cur` or a `new` directory; a message is a regular file in either.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from index.errors import PathNotFound
from index.format.mailbox_path import MailboxPath
from index.format.names import safe_name
from index.format.types import Entry, EntryId, Kind
from index.model.snapshot_reader import SnapshotReader

INBOX = b"INBOX"
SUBDIRS = (b"cur", b"new")
"""Where a folder's messages are (tmp/ holds deliveries under way)."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One user's Maildir in a snapshot."""

    user: bytes
    path: bytes
    """Relative to the part: b"example.org/john/Maildir"."""
    entry_id: EntryId


@dataclass(frozen=True, slots=True)
class Folder:
    """One folder of a Maildir."""

    name: bytes
    """As IMAP shows it: b"INBOX", or b"Sub.Folder"."""
    dir_name: bytes
    """Its directory in the Maildir: b"" for INBOX, else b".Sub.Folder"."""
    entry_id: EntryId


@dataclass(frozen=True, slots=True)
class Message:
    """One message file of a folder."""

    subdir: bytes
    """b"cur" or b"new"."""
    name: bytes
    entry: Entry

    @property
    def base(self) -> bytes:
        """Its Maildir base name: what stays when its flags change."""
        return base_name(self.name)


def base_name(name: bytes) -> bytes:
    """The part of a Maildir file name before its info (":2,FLAGS")."""
    return name.partition(b":")[0]


def _subdirs(snap: SnapshotReader, dir_id: EntryId) -> Iterator[tuple[bytes, EntryId]]:
    """The directories directly in `dir_id`, with safe names not starting
    with '.' (a user is never a hidden directory)."""
    for name, child_id in snap.listing(dir_id):
        if safe_name(name) and not name.startswith(b".") \
                and snap.entry(child_id).kind == Kind.DIRECTORY:
            yield name, child_id


def _is_maildir(snap: SnapshotReader, dir_id: EntryId) -> bool:
    for sub in SUBDIRS:
        found = snap.lookup(dir_id, sub)
        if found is not None and snap.entry(found).kind == Kind.DIRECTORY:
            return True
    return False


def find_mailboxes(snap: SnapshotReader, part: str, template: MailboxPath) -> list[Mailbox]:
    """Every user's Maildir in part `part` of `snap`, sorted by user."""
    try:
        top = snap.resolve(part.encode())
    except PathNotFound:
        return []
    if top.kind != Kind.DIRECTORY:
        return []
    found: list[Mailbox] = []
    # Each path followed so far: (its names, its directory, the variables met).
    paths: list[tuple[list[bytes], EntryId, dict[str, bytes]]] = [([], top.entry_id, {})]
    for depth in range(len(template.levels)):
        deeper = []
        for names, dir_id, values in paths:
            if template.is_literal(depth):
                name = template.literal(depth)
                child = snap.lookup(dir_id, name)
                if child is not None and snap.entry(child).kind == Kind.DIRECTORY:
                    deeper.append(([*names, name], child, values))
                continue
            for name, child in _subdirs(snap, dir_id):
                met = template.match_level(depth, name, values)
                if met is not None:
                    deeper.append(([*names, name], child, met))
        paths = deeper
    for names, dir_id, values in paths:
        user = template.user_of(values)
        if user is not None and _is_maildir(snap, dir_id):
            found.append(Mailbox(user, b"/".join(names), dir_id))
    return sorted(found, key=lambda m: m.user)


def find_mailbox(snap: SnapshotReader, part: str, template: MailboxPath,
                 user: bytes) -> Mailbox | None:
    """`user`'s Maildir in `snap`, if there is one."""
    rel = template.fill(user)
    if rel is None:
        return None
    try:
        entry = snap.resolve(part.encode() + b"/" + rel)
    except PathNotFound:
        return None
    if entry.kind != Kind.DIRECTORY or not _is_maildir(snap, entry.entry_id):
        return None
    return Mailbox(user, rel, entry.entry_id)


def folders(snap: SnapshotReader, mailbox: Mailbox) -> list[Folder]:
    """The folders of a Maildir, INBOX first, then by name."""
    found = [Folder(INBOX, b"", mailbox.entry_id)] \
        if _is_maildir(snap, mailbox.entry_id) else []
    for name, child_id in snap.listing(mailbox.entry_id):
        if len(name) < 2 or name[:1] != b"." or name == b".." or not safe_name(name):
            continue
        if snap.entry(child_id).kind == Kind.DIRECTORY and _is_maildir(snap, child_id):
            found.append(Folder(name[1:], name, child_id))
    return found


def messages(snap: SnapshotReader, folder: Folder) -> Iterator[Message]:
    """The messages of a folder: regular files in cur/ and new/ (a name
    starting with '.' is not a message)."""
    for sub in SUBDIRS:
        sub_id = snap.lookup(folder.entry_id, sub)
        if sub_id is None or snap.entry(sub_id).kind != Kind.DIRECTORY:
            continue
        for name, child_id in snap.listing(sub_id):
            if not safe_name(name) or name.startswith(b"."):
                continue
            entry = snap.entry(child_id)
            if entry.kind == Kind.REGULAR:
                yield Message(sub, name, entry)


def select_folders(found: list[Folder], wanted: bytes | None) -> list[Folder]:
    """The folder named `wanted` and those beneath it (all without a
    name); "INBOX." before a name is the namespace prefix some servers
    show, and is dropped."""
    if wanted is None:
        return found
    if wanted.upper() == INBOX:
        return [f for f in found if f.name == INBOX]
    if wanted[:6].upper() == b"INBOX.":
        wanted = wanted[6:]
    return [f for f in found if f.name == wanted or f.name.startswith(wanted + b".")]
