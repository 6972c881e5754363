"""`histfs mailbox restore` against a real Dovecot, seen through imaplib as
a mail client sees it: a deleted folder and expunged messages come back
with the flags they had that day, nothing is duplicated, nothing live is
lost, the other user is untouched, and a second run restores nothing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import histfs
from tests.dovecot_server import (
    MAIL_UID,
    USERS,
    Dovecot,
    append,
    contents,
    folders,
    mailbox_state,
    running_dovecot,
)

JOHN, MARY = USERS
State = dict[str, list[tuple[str, frozenset[str]]]]


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot of this test's own."""
    with running_dovecot() as server:
        yield server


def write_config(tmp_path: Path, server: Dovecot) -> Path:
    """A configuration whose mail part is the server's vmail/."""
    config = tmp_path / "histfs.toml"
    config.write_text(f"""repository = "{tmp_path / 'repo'}"
host = "mx1"

[[part]]
name = "mail"
path = "{server.vmail}"
layout = "maildir"
mailbox_path = "%d/%n/Maildir"
after_mailbox_restore = "doveadm -c {server.conf} force-resync -u %u '*'"
""")
    histfs("init", "--encryption", "none", str(tmp_path / "repo"), check=0)
    return config


def backup(config: Path) -> str:
    """A backup with `config`; the new snapshot's name."""
    proc = histfs("backup", "--config", str(config), "--json", check=0)
    name = json.loads(proc.stdout)["snapshot"]
    assert isinstance(name, str)
    return name


def restore(config: Path, at: str, *args: str, check: int | None = 0) -> dict[str, object]:
    """`histfs mailbox restore --json` and its summary."""
    proc = histfs("mailbox", "restore", "--config", str(config), "--at", at, "--json", *args,
                  check=check)
    summary: dict[str, object] = json.loads(proc.stdout)
    return summary


def counts(summary: dict[str, object]) -> tuple[object, object, object]:
    """What a restore reports having done (or, dry, would do)."""
    return summary["restored"], summary["already_there"], summary["folders_created"]


def tree(root: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """Every path below `root`: mode, owner, group, mtime and content hash."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            found[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid,
                                                  st.st_mtime_ns, digest)
    return found


def by_id(messages: list[tuple[str, frozenset[str]]]) -> dict[str, frozenset[str]]:
    """Flags by Message-ID; each ID must be there once."""
    ids = [m for m, _ in messages]
    assert len(ids) == len(set(ids)), f"duplicated messages: {sorted(ids)}"
    return dict(messages)


@dataclass
class Scenario:
    """Two users' mailboxes, two backups, then what john did."""

    server: Dovecot
    config: Path
    first: str
    second: str
    john_first: State
    """john's mailbox at the first backup."""
    john_before: State
    """... and live before the restore."""
    mary_before: State


INBOX_FLAGS = ["\\Seen", "", "\\Seen \\Flagged", "\\Answered", "$Label1", "\\Seen \\Answered"]


@pytest.fixture
def scenario(dovecot: Dovecot, tmp_path: Path) -> Scenario:
    """1. Messages with flags in several folders of both users, a backup,
    more messages and flags, a second backup; 2. john deletes a folder
    (and its sub-folder), expunges two INBOX messages, changes flags."""
    config = write_config(tmp_path, dovecot)
    with dovecot.session(JOHN) as imap:
        for folder in ("Projects", "Projects.Sub", "Archive"):
            assert imap.create(folder)[0] == "OK"
        assert imap.subscribe("Projects")[0] == "OK"
        for i, flags in enumerate(INBOX_FLAGS):
            append(imap, "INBOX", f"inbox-{i}@example.org", flags)
        for i, flags in enumerate(["\\Flagged", "\\Seen", "$Label1 \\Seen"]):
            append(imap, "Projects", f"projects-{i}@example.org", flags)
        for i in range(2):
            append(imap, "Projects.Sub", f"sub-{i}@example.org", "\\Seen")
            append(imap, "Archive", f"archive-{i}@example.org", "\\Seen")
    with dovecot.session(MARY) as imap:
        assert imap.create("Work")[0] == "OK"
        for i in range(3):
            append(imap, "INBOX", f"mary-{i}@example.net", "\\Seen" if i else "")
        for i in range(2):
            append(imap, "Work", f"work-{i}@example.net", "\\Flagged")
    john_first = mailbox_state(dovecot, JOHN)
    first = backup(config)

    with dovecot.session(JOHN) as imap:
        append(imap, "INBOX", "later-0@example.org", "\\Seen")
        append(imap, "INBOX", "later-1@example.org")
        imap.select("INBOX")
        assert imap.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK"
    second = backup(config)

    with dovecot.session(JOHN) as imap:
        assert imap.delete("Projects.Sub")[0] == "OK"
        assert imap.delete("Projects")[0] == "OK"
        imap.select("INBOX")
        # inbox-0 and inbox-2 (sequence numbers 1 and 3) are expunged.
        assert imap.store("1,3", "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert imap.expunge()[0] == "OK"
        # inbox-3 (now 2): \Answered off, \Seen on.
        assert imap.store("2", "FLAGS", "(\\Seen)")[0] == "OK"
    return Scenario(dovecot, config, first, second, john_first,
                    mailbox_state(dovecot, JOHN), mailbox_state(dovecot, MARY))


@pytest.mark.timeout(300)
def test_a_deleted_folder_and_expunged_messages_come_back(scenario: Scenario) -> None:
    s = scenario
    assert "Projects" not in s.john_before
    # --dry-run: the same counts, and not one byte of the mail tree changed.
    before = tree(s.server.vmail)
    dry = restore(s.config, s.first, JOHN, "--dry-run")
    assert tree(s.server.vmail) == before
    assert dry["dry_run"] is True and dry["after_command"] is None

    done = restore(s.config, s.first, JOHN)
    # Restored: the 2 expunged INBOX messages and the 5 of the deleted
    # folders; the 4 INBOX and 2 Archive messages still there are left alone.
    assert counts(done) == counts(dry) == (7, 6, [{"name": "Projects"},
                                                  {"name": "Projects.Sub"}])
    assert done["errors"] == [] and done["exit_status"] == 0
    after_command = done["after_command"]
    assert isinstance(after_command, dict) and after_command["exit_status"] == 0

    after = mailbox_state(s.server, JOHN)
    assert sorted(after) == sorted([*s.john_before, "Projects", "Projects.Sub"])
    # The deleted folders, with that day's flags.
    for folder in ("Projects", "Projects.Sub"):
        assert after[folder] == s.john_first[folder]
    assert after["Archive"] == s.john_before["Archive"]
    inbox = by_id(after["INBOX"])
    first_inbox = by_id(s.john_first["INBOX"])
    live_inbox = by_id(s.john_before["INBOX"])
    # Nothing duplicated: every message of that day once, and the later ones.
    assert set(inbox) == set(first_inbox) | set(live_inbox)
    assert len(after["INBOX"]) == 8
    for msgid in ("inbox-0@example.org", "inbox-2@example.org"):
        assert inbox[msgid] == first_inbox[msgid]
    # Messages that were never deleted keep their live flags.
    for msgid, flags in live_inbox.items():
        assert inbox[msgid] == flags
    assert inbox["inbox-3@example.org"] == {"\\Seen"}
    assert inbox["inbox-1@example.org"] == {"\\Flagged"}
    # The other user is untouched.
    assert mailbox_state(s.server, MARY) == s.mary_before
    # Every file is the mail user's, none root's.
    for dirpath, dirnames, filenames in os.walk(s.server.maildir(JOHN)):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            assert (st.st_uid, st.st_gid) == (MAIL_UID, MAIL_UID), (dirpath, name)
    with s.server.session(JOHN) as imap:
        typ, data = imap.lsub()
        assert typ == "OK" and any(line.endswith(b" Projects") for line in data
                                   if isinstance(line, bytes))

    again = restore(s.config, s.first, JOHN)
    assert counts(again) == (0, 13, [])
    assert mailbox_state(s.server, JOHN) == after


@pytest.mark.timeout(300)
def test_into_a_new_folder(scenario: Scenario) -> None:
    s = scenario
    into = "Restored 2026-11-14"
    done = restore(s.config, s.first, JOHN, "--into", into)
    names = [into, f"{into}.Archive", f"{into}.Projects", f"{into}.Projects.Sub"]
    assert counts(done) == (13, 0, [{"name": n} for n in
                                    [into, f"{into}.Archive", f"{into}.Projects",
                                     f"{into}.Projects.Sub"]])
    after = mailbox_state(s.server, JOHN)
    assert sorted(after) == sorted([*s.john_before, *names])
    # That day's messages, with that day's flags, folder by folder ...
    assert after[into] == s.john_first["INBOX"]
    for folder in ("Archive", "Projects", "Projects.Sub"):
        assert after[f"{into}.{folder}"] == s.john_first[folder]
    # ... and the original folders as they were.
    for folder, messages in s.john_before.items():
        assert after[folder] == messages
    assert counts(restore(s.config, s.first, JOHN, "--into", into)) == (0, 13, [])
    # One folder only, into another new folder.
    one = restore(s.config, s.second, JOHN, "--folder", "Projects.Sub", "--into", "Again")
    assert counts(one) == (2, 0, [{"name": "Again"}, {"name": "Again.Projects.Sub"}])
    assert mailbox_state(s.server, MARY) == s.mary_before


@pytest.mark.timeout(300)
def test_an_unknown_user_is_a_one_line_error(scenario: Scenario) -> None:
    proc = histfs("mailbox", "restore", "--config", str(scenario.config), "--at",
                  scenario.first, "nobody@example.org", check=2)
    assert proc.stderr.count("\n") == 1
    assert "nobody@example.org" in proc.stderr and "histfs mailbox list" in proc.stderr
    listed = json.loads(histfs("mailbox", "list", "--config", str(scenario.config), "--at",
                               scenario.first, "--json", check=0).stdout)
    assert [u["user"] for u in listed["users"]] == [JOHN, MARY]
    john = listed["users"][0]
    assert john["path"] == "example.org/john/Maildir"
    assert {f["name"]: f["messages"] for f in john["folders"]} == {
        "INBOX": 6, "Archive": 2, "Projects": 3, "Projects.Sub": 2}


@pytest.mark.timeout(300)
def test_a_restore_while_the_user_is_connected_and_mail_arrives(
        dovecot: Dovecot, tmp_path: Path) -> None:
    config = write_config(tmp_path, dovecot)
    count = 300
    with dovecot.session(JOHN) as imap:
        for i in range(count):
            append(imap, "INBOX", f"old-{i}@example.org", "\\Seen" if i % 2 else "")
    first = backup(config)
    with dovecot.session(JOHN) as imap:
        imap.select("INBOX")
        assert imap.store("1:*", "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert imap.expunge()[0] == "OK"

    arrived: list[str] = []
    during: list[str] = []
    failures: list[BaseException] = []
    restoring = threading.Event()
    finished = threading.Event()

    def deliver() -> None:
        try:
            with dovecot.session(JOHN) as other:
                restoring.wait(60)
                for i in range(400):
                    if finished.is_set():
                        break
                    append(other, "INBOX", f"new-{i}@example.org")
                    arrived.append(f"new-{i}@example.org")
                    if not finished.is_set():
                        during.append(f"new-{i}@example.org")
                    time.sleep(0.005)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    with dovecot.session(JOHN) as user:
        assert user.select("INBOX") == ("OK", [b"0"])
        sender = threading.Thread(target=deliver)
        sender.start()
        restoring.set()
        proc = subprocess.run([sys.executable, "-m", "histfs", "mailbox", "restore",
                               "--config", str(config), "--at", first, "--json", JOHN],
                              capture_output=True, text=True, timeout=240)
        finished.set()
        sender.join(60)
        assert not failures, failures
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert (summary["restored"], summary["errors"]) == (count, [])
        assert during, "no message arrived while the restore ran"
        # The open session sees them all, once each.
        assert user.noop()[0] == "OK"
        typ, data = user.search(None, "ALL")
        assert typ == "OK" and data[0] is not None
        assert len(data[0].split()) == count + len(arrived)
    with dovecot.session(JOHN) as imap:
        ids = by_id(contents(imap, "INBOX"))
        assert set(ids) == {f"old-{i}@example.org" for i in range(count)} | set(arrived)
        assert folders(imap) == ["INBOX"]
    assert dovecot.proc.poll() is None, dovecot.log()
