"""Merging folders of a mailbox from a snapshot into a live Maildir that a
running server (Dovecot) uses at the same time.

What is live is never replaced nor deleted. A message whose base name (the
part before ':') is in the live folder's cur/ or new/, whatever its flags,
is left alone. A missing one is written into the folder's tmp/, verified
chunk by chunk as it is read, synced, then linked under its name from the
snapshot into cur/ (new/ if it was there) and its tmp/ name removed, as
Maildir delivery is done: the server never sees half a message, and a link
never replaces a file. A message whose data cannot be read is not written
(an error names it) and the others go on.

New files and folders get the owner and group of the Maildir's root, its
mode for directories and that mode without execute bits for files; a
message keeps its modification time, which Dovecot shows as the date it
was received. Folders the live Maildir lacks are created with cur/, new/,
tmp/ and `maildirfolder`, and added to its `subscriptions` file if it has
one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from index.errors import HistfsError
from index.format.names import show_path
from index.model.snapshot_reader import SnapshotReader
from index.tools.maildir_snapshot import SUBDIRS, Folder, Message, base_name, messages
from index.tools.stream import file_pieces
from writer.maildir_subscriptions import subscribe

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FOLDER_DIRS = (b"cur", b"new", b"tmp")
_KEYWORDS = b"dovecot-keywords"
"""Which letter of a file name's flags is which keyword, per folder."""


class MergeError(HistfsError):
    """The live Maildir cannot be merged into at all."""


@dataclass(frozen=True, slots=True)
class Placement:
    """A folder of the snapshot and where its messages go."""

    folder: Folder | None
    """None: only make sure the target folder exists."""
    target: bytes
    """The live folder's IMAP name: b"INBOX", b"Projects.Sub"."""

    @property
    def dir_name(self) -> bytes:
        """The live folder's directory in the Maildir (b"" for INBOX)."""
        return b"" if self.target == b"INBOX" else b"." + self.target


@dataclass
class MergeStats:
    """What a merge did (or, dry, would do)."""

    restored: int = 0
    already: int = 0
    """Messages left alone: their base name is in the live folder."""
    folders_created: list[bytes] = field(default_factory=list)
    subscribed: list[bytes] = field(default_factory=list)
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Owner:
    uid: int
    gid: int
    dir_mode: int
    file_mode: int


class MaildirMerge:
    """Merges placements of one snapshot into the live Maildir `root`."""

    def __init__(self, snap: SnapshotReader, root: Path, dry_run: bool = False) -> None:
        """`dry_run` counts what would be restored and created, and writes
        nothing."""
        self.snap = snap
        self.root = root
        self.dry_run = dry_run
        self.stats = MergeStats()
        self._seq = 0

    def merge(self, placements: list[Placement]) -> MergeStats:
        """Merge every placement; the stats (errors of single messages and
        folders in them). Raises MergeError if the live Maildir cannot be
        opened."""
        try:
            root_fd = os.open(self.root, _OPEN_DIR)
        except FileNotFoundError:
            raise MergeError(f"{self.root}: the live Maildir does not exist") from None
        except OSError as exc:
            raise MergeError(f"{self.root}: {exc.strerror}") from None
        try:
            st = os.fstat(root_fd)
            mode = stat.S_IMODE(st.st_mode)
            owner = _Owner(st.st_uid, st.st_gid, mode, mode & 0o666)
            for placement in placements:
                try:
                    self._place(root_fd, owner, placement)
                except OSError as exc:
                    self.stats.errors.append(f"{show_path(placement.target)}: {exc.strerror}")
            if self.stats.folders_created and not self.dry_run:
                try:
                    self.stats.subscribed = subscribe(root_fd, self.stats.folders_created)
                except (HistfsError, OSError) as exc:
                    self.stats.warnings.append(f"folders created but not subscribed: "
                                               f"{_reason(exc)}")
        finally:
            os.close(root_fd)
        return self.stats

    def _place(self, root_fd: int, owner: _Owner, placement: Placement) -> None:
        folder_fd = self._folder(root_fd, owner, placement)
        try:
            if placement.folder is None:
                return
            live = _live_bases(folder_fd) if folder_fd is not None else set()
            if self.dry_run or folder_fd is None:
                for msg in messages(self.snap, placement.folder):
                    self._count(msg, live)
                return
            subdir_fds = {sub: os.open(sub, _OPEN_DIR, dir_fd=folder_fd)
                          for sub in _FOLDER_DIRS}
            try:
                for msg in messages(self.snap, placement.folder):
                    if self._count(msg, live):
                        self._write(subdir_fds, owner, placement, msg)
                for sub in SUBDIRS:
                    os.fsync(subdir_fds[sub])
            finally:
                for fd in subdir_fds.values():
                    os.close(fd)
        finally:
            if folder_fd is not None:
                os.close(folder_fd)

    def _count(self, msg: Message, live: set[bytes]) -> bool:
        """Whether `msg` is to be written: its base name is not live (nor
        written already in this run); counted as restored, dry."""
        if msg.base in live:
            self.stats.already += 1
            return False
        live.add(msg.base)
        if self.dry_run:
            self.stats.restored += 1
            self.stats.bytes += msg.entry.size
        return not self.dry_run

    def _folder(self, root_fd: int, owner: _Owner, placement: Placement) -> int | None:
        """The live folder's directory, opened; created with its cur/, new/
        and tmp/ if missing (and dry, None then)."""
        name = placement.dir_name
        if not name:
            fd = os.dup(root_fd)
        else:
            try:
                fd = os.open(name, _OPEN_DIR, dir_fd=root_fd)
            except FileNotFoundError:
                self.stats.folders_created.append(placement.target)
                if self.dry_run:
                    return None
                fd = self._create(root_fd, owner, name)
                self._copy_keywords(fd, owner, placement.folder)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OSError(exc.errno, "exists and is not a directory (not "
                                  "followed)") from None
                raise
        if not self.dry_run:
            try:
                for sub in _FOLDER_DIRS:
                    _mkdir(fd, sub, owner)
            except BaseException:
                os.close(fd)
                raise
        return fd

    @staticmethod
    def _create(root_fd: int, owner: _Owner, name: bytes) -> int:
        """A new folder's directory, with `maildirfolder` in it (Maildir++
        marks a folder so); a server creating it at the same moment is
        no error."""
        _mkdir(root_fd, name, owner)
        fd = os.open(name, _OPEN_DIR, dir_fd=root_fd)
        try:
            with contextlib.suppress(FileExistsError):
                marker = os.open(b"maildirfolder", os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | os.O_NOFOLLOW | os.O_CLOEXEC, owner.file_mode, dir_fd=fd)
                _own(marker, owner)
                os.close(marker)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _copy_keywords(self, fd: int, owner: _Owner, folder: Folder | None) -> None:
        """The snapshot folder's `dovecot-keywords` into a folder created for
        it: the letters in its messages' flags keep their keywords."""
        if folder is None:
            return
        found = self.snap.lookup(folder.entry_id, _KEYWORDS)
        if found is None:
            return
        try:
            entry = self.snap.entry(found)
            data = b"".join(file_pieces(self.snap, entry))
            out = os.open(_KEYWORDS, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, owner.file_mode, dir_fd=fd)
            try:
                os.write(out, data)
                _own(out, owner)
            finally:
                os.close(out)
        except (HistfsError, OSError) as exc:
            self.stats.warnings.append(f"{show_path(folder.name)}: {_KEYWORDS.decode()} "
                                       f"not restored: {_reason(exc)}")

    def _write(self, fds: dict[bytes, int], owner: _Owner, placement: Placement,
               msg: Message) -> None:
        """Deliver one message: tmp/, then a link into cur/ or new/."""
        where = f"{show_path(placement.target)}/{show_path(msg.subdir)}/{show_path(msg.name)}"
        self._seq += 1
        tmp = f"{time.time_ns() // 1000}.P{os.getpid()}Q{self._seq}.histfs".encode()
        tmp_fd = fds[b"tmp"]
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, owner.file_mode, dir_fd=tmp_fd)
        except OSError as exc:
            self.stats.errors.append(f"{where}: not restored: {exc.strerror}")
            return
        try:
            try:
                for piece in file_pieces(self.snap, msg.entry):
                    view = memoryview(piece)
                    while view:
                        view = view[os.write(out, view):]
                _own(out, owner)
                os.utime(out, ns=(msg.entry.atime_ns, msg.entry.mtime_ns))
                os.fsync(out)
            finally:
                os.close(out)
            os.link(tmp, msg.name, src_dir_fd=tmp_fd, dst_dir_fd=fds[msg.subdir],
                    follow_symlinks=False)
        except FileExistsError:
            # Delivered under this very name since the folder was read.
            self.stats.already += 1
        except (HistfsError, OSError) as exc:
            self.stats.errors.append(f"{where}: not restored: {_reason(exc)}")
        else:
            self.stats.restored += 1
            self.stats.bytes += msg.entry.size
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=tmp_fd)


def _live_bases(folder_fd: int) -> set[bytes]:
    """The base names of the messages in a live folder's cur/ and new/."""
    found: set[bytes] = set()
    for sub in SUBDIRS:
        try:
            fd = os.open(sub, _OPEN_DIR, dir_fd=folder_fd)
        except FileNotFoundError:
            continue
        try:
            found.update(base_name(os.fsencode(n)) for n in os.listdir(fd))
        finally:
            os.close(fd)
    return found


def _mkdir(parent_fd: int, name: bytes, owner: _Owner) -> None:
    """Directory `name` with the Maildir's owner and mode, unless it exists."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        return
    fd = os.open(name, _OPEN_DIR, dir_fd=parent_fd)
    try:
        os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, owner.dir_mode)
    finally:
        os.close(fd)


def _own(fd: int, owner: _Owner) -> None:
    os.fchown(fd, owner.uid, owner.gid)
    # chown clears setuid/setgid: the mode comes after it.
    os.fchmod(fd, owner.file_mode)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
