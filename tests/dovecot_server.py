"""A real Dovecot for the tests, and an IMAP client's view of a mailbox.

The server runs in the foreground (`dovecot -F -c CONF`) with everything
in a directory of its own: its base_dir, state_dir, log file, a
passwd-file of two users in two domains and their Maildirs under
vmail/%d/%n/Maildir, owned by a mail uid that is not root. It listens on
127.0.0.1 on a free port, without TLS, and is stopped by the PID in its
PID file; no process of it is left behind.
"""

from __future__ import annotations

import contextlib
import email
import imaplib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAIL_UID = 5000
"""Dovecot refuses root as a mail user; a uid with no account is enough."""
PASSWORD = "secret"
USERS = ("john@example.org", "mary@example.net")

_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = histfs-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1000
mail_location = maildir:{root}/vmail/%d/%n/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _children(pid: int) -> set[int]:
    """Every process descending from `pid`."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command name may hold spaces: the fields after ')'.
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass
class Dovecot:
    """A running test Dovecot."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def conf(self) -> Path:
        """Its configuration file (for doveadm -c)."""
        return self.root / "dovecot.conf"

    @property
    def vmail(self) -> Path:
        """Where the Maildirs are: vmail/DOMAIN/USER/Maildir."""
        return self.root / "vmail"

    def maildir(self, user: str) -> Path:
        """`user`'s Maildir."""
        local, _, domain = user.partition("@")
        return self.vmail / domain / local / "Maildir"

    def log(self) -> str:
        """What the server logged."""
        with contextlib.suppress(OSError):
            return (self.root / "dovecot.log").read_text(errors="replace")
        return ""

    @contextlib.contextmanager
    def session(self, user: str) -> Iterator[imaplib.IMAP4]:
        """An IMAP session logged in as `user`, logged out at the end."""
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=60)
        try:
            imap.login(user, PASSWORD)
            yield imap
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                imap.logout()


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    """Start a Dovecot of its own; stop it, and every process it started."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    assert os.path.exists(binary), "dovecot is not installed: run scripts/setup-env " \
        "with HISTFS_EXTRAS=test (Debian's dovecot-imapd)"
    # Not below pytest's tmp_path, which only root may enter: the mail
    # processes run as MAIL_UID and the login ones as dovenull.
    root = Path(tempfile.mkdtemp(prefix="histfs-dovecot-"))
    root.chmod(0o711)
    port = free_port()
    for sub in ("run", "state", "vmail"):
        (root / sub).mkdir()
    os.chown(root / "vmail", MAIL_UID, MAIL_UID)
    (root / "users").write_text("".join(
        f"{u}:{{PLAIN}}{PASSWORD}:{MAIL_UID}:{MAIL_UID}::"
        f"{root}/vmail/{u.partition('@')[2]}/{u.partition('@')[0]}::\n" for u in USERS))
    (root / "dovecot.conf").write_text(_CONF.format(root=root, port=port))
    with open(root / "stderr", "wb") as stderr:
        proc = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")],
                                stdout=subprocess.DEVNULL, stderr=stderr)
    server = Dovecot(root, port, proc)
    try:
        _wait_listening(server)
        yield server
    finally:
        _stop(server)
        shutil.rmtree(root, ignore_errors=True)


def _wait_listening(server: Dovecot) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, (
            f"dovecot exited: {(server.root / 'stderr').read_text()} {server.log()}")
        with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", server.port), timeout=1) as s:
            if s.recv(100).startswith(b"* OK"):
                return
        time.sleep(0.1)
    raise AssertionError(f"dovecot did not listen on port {server.port}: {server.log()}")


def _stop(server: Dovecot) -> None:
    """SIGTERM to the master named by the PID file (Popen's process is that
    master: -F keeps it in the foreground), then make sure that none of
    its processes is left."""
    pid_file = server.root / "run" / "master.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else server.proc.pid
    family = _children(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    deadline = time.monotonic() + 10
    left = family
    while left and time.monotonic() < deadline:
        left = {p for p in left if os.path.exists(f"/proc/{p}")}
        time.sleep(0.05)
    for p in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    assert not left, f"dovecot processes left after its master ended: {sorted(left)}"


# -- what a mail client sees ---------------------------------------------

_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")


def message(msgid: str, subject: str, body: str = "") -> bytes:
    """A small RFC 5322 message."""
    return (f"From: Alice <alice@example.com>\r\nTo: someone@example.org\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{msgid}>\r\n"
            f"Date: Fri, 13 Nov 2026 10:00:00 +0000\r\n\r\n{body or subject}\r\n").encode()


def append(imap: imaplib.IMAP4, folder: str, msgid: str, flags: str = "") -> None:
    """APPEND one message to `folder` with `flags` (e.g. "\\\\Seen $Label1")."""
    typ, data = imap.append(_quoted(folder), f"({flags})" if flags else None, None,
                            message(msgid, f"message {msgid}"))
    assert typ == "OK", data


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def folders(imap: imaplib.IMAP4) -> list[str]:
    """The folders LIST shows (modified UTF-7 names as they are)."""
    typ, data = imap.list()
    assert typ == "OK", data
    names = []
    for line in data:
        assert isinstance(line, bytes)
        name = line.rpartition(b' "." ')[2].decode()
        names.append(name[1:-1] if name.startswith('"') else name)
    return sorted(names)


def contents(imap: imaplib.IMAP4, folder: str) -> list[tuple[str, frozenset[str]]]:
    """(Message-ID, flags without \\Recent) of every message of `folder`,
    sorted; a message twice is there twice."""
    typ, data = imap.select(_quoted(folder), readonly=True)
    assert typ == "OK", (folder, data)
    if data == [b"0"]:
        return []
    typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert typ == "OK", data
    found = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        m = _FLAGS_RE.search(item[0])
        assert m is not None, item
        flags = frozenset(f.decode() for f in m.group(1).split()) - {"\\Recent"}
        found.append((email.message_from_bytes(item[1])["Message-ID"].strip("<>"), flags))
    return sorted(found, key=lambda x: (x[0], sorted(x[1])))


def mailbox_state(server: Dovecot, user: str) -> dict[str, list[tuple[str, frozenset[str]]]]:
    """Every folder of `user` and its messages, as IMAP shows them."""
    with server.session(user) as imap:
        return {f: contents(imap, f) for f in folders(imap)}
