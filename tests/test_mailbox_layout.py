"""Mail parts without a server: the mailbox_path template (%d, %n, %u),
the configuration's errors, users and folders with odd names found in a
snapshot, the merge's owner, modes and subscriptions, a damaged chunk, and
the after_mailbox_restore command."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from histfs.config import load_config
from index.errors import ConfigError
from index.format import imap_utf7
from index.format.mailbox_path import MailboxPath, MailboxPathError
from index.model.repository import Repository
from tests.conftest import histfs
from tests.test_restore import damage_chunk
from writer.maildir_subscriptions import LOCK, SubscriptionsLocked, subscribe

REMY = "r\udce9my@example.org"
"""A user whose name is not UTF-8 (b"r\\xe9my", Latin-1), as a str of the
command line."""


@pytest.mark.parametrize(("text", "error"), [
    ("", "is empty"),
    ("/var/vmail/%d/%n", "must be relative"),
    ("~/Maildir", "must be relative"),
    ("Maildir", "names no user"),
    ("%d/Maildir", "names no user"),
    ("%d//%n", "empty, '.' or '..' level"),
    ("%d/../%n", "empty, '.' or '..' level"),
    ("%Ln/Maildir", "%L is not supported"),
    ("%n%d", "no text between"),
])
def test_templates_that_name_no_maildir(text: str, error: str) -> None:
    with pytest.raises(MailboxPathError, match=error):
        MailboxPath.parse(text)


def test_a_template_filled_in_and_matched() -> None:
    t = MailboxPath.parse("%d/%n/Maildir")
    assert t.fill(b"john@example.org") == b"example.org/john/Maildir"
    assert t.fill(b"john") is None  # %d needs a domain
    assert t.fill(b"../x@example.org") is None
    assert t.fill(b"john@..") is None
    assert t.fill(b"a b@ex\xe4mple.de") == b"ex\xe4mple.de/a b/Maildir"
    assert t.match_level(1, b"anne marie", {"d": b"x.org"}) == {"d": b"x.org",
                                                                 "n": b"anne marie"}
    assert t.match_level(1, b"x@y", {}) is None
    assert t.is_literal(2) and t.literal(2) == b"Maildir"
    # %n alone: users without a domain, and none with one.
    home = MailboxPath.parse("%n/Maildir")
    assert home.fill(b"john") == b"john/Maildir" and home.fill(b"john@x.org") is None
    mixed = MailboxPath.parse("%d/users/%n.%d%%")
    assert mixed.fill(b"jo@x.org") == b"x.org/users/jo.x.org%"
    # What a level above found stands in the names below it.
    assert mixed.match_level(2, b"jo.x.org%", {"d": b"x.org"}) == {"d": b"x.org", "n": b"jo"}
    assert mixed.match_level(2, b"jo.y.org%", {"d": b"x.org"}) is None
    twice = MailboxPath.parse("%n-%n")
    assert twice.match_level(0, b"ab-ab", {}) == {"n": b"ab"}
    assert twice.match_level(0, b"ab-cd", {}) is None
    # The same variable twice in one name must be the same both times.
    assert mixed.user_of({"d": b"x.org", "n": b"jo"}) == b"jo@x.org"
    whole = MailboxPath.parse("%u")
    assert whole.fill(b"jo@x.org") == b"jo@x.org" and whole.fill(b"jo") is None
    assert whole.user_of({"u": b"jo@x.org", "d": b"y.org"}) is None


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "histfs.toml"
    path.write_text(f'repository = "{tmp_path / "repo"}"\n{body}')
    return path


def _backed_up(tmp_path: Path, vmail: Path, after: str,
               template: str = "%d/%n/Maildir") -> Path:
    """A config of host mx1 whose one part is the mail part `vmail`, a new
    repository, and a first backup."""
    config = _config(tmp_path, f"""host = "mx1"
[[part]]
name = "mail"
path = "{vmail}"
layout = "maildir"
mailbox_path = "{template}"
after_mailbox_restore = "{after}"
""")
    histfs("init", "--encryption", "none", str(tmp_path / "repo"), check=0)
    histfs("backup", "--config", str(config), check=0)
    return config


@pytest.mark.parametrize(("body", "error"), [
    ('layout = "maildir"\n', "needs both layout and mailbox_path"),
    ('mailbox_path = "%d/%n"\n', "needs both layout and mailbox_path"),
    ('layout = "mdbox"\nmailbox_path = "%d/%n"\n', "mdbox, sdbox, LAYOUT=fs and Cyrus"),
    ('layout = "maildir"\nmailbox_path = "/var/%n"\n', "part[0].mailbox_path: '/var/%n' must"),
    ('layout = "maildir"\nmailbox_path = "%n"\nafter_mailbox_restore = 1\n',
     "after_mailbox_restore: expected str"),
])
def test_mail_part_errors_are_one_line(tmp_path: Path, body: str, error: str) -> None:
    path = _config(tmp_path, f'[[part]]\nname = "mail"\npath = "/var/vmail"\n{body}')
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]")) as exc:
        load_config(path)
    assert "\n" not in str(exc.value)


def test_a_command_part_has_no_mail_layout(tmp_path: Path) -> None:
    path = _config(tmp_path, '[[part]]\nname = "db"\nkind = "command"\ncommand = "true"\n'
                             'file = "x"\nlayout = "maildir"\n')
    with pytest.raises(ConfigError, match="layout: not a key of a part of kind"):
        load_config(path)


def test_imap_utf7() -> None:
    for text, encoded in [("Café", b"Caf&AOk-"), ("A & B", b"A &- B"), ("日本語", b"&ZeVnLIqe-"),
                          ("plain", b"plain")]:
        assert imap_utf7.encode(text) == encoded
        assert imap_utf7.decode(encoded) == text
    assert imap_utf7.decode(b"bad&%%-") is None


def _maildir(path: Path, messages: dict[str, bytes] | None = None) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for rel, data in (messages or {}).items():
        (path / rel).write_bytes(data)
    return path


@pytest.fixture
def odd_vmail(tmp_path: Path) -> tuple[Path, Path]:
    """A repository with one snapshot of a mail part whose users and folders
    have odd names; (config, vmail)."""
    vmail = tmp_path / "vmail"
    _maildir(vmail / "example.org/john/Maildir", {
        "cur/1.M1P1.mx:2,S": b"john 1\n", "new/2.M2P2.mx": b"john 2\n"})
    _maildir(vmail / "example.org/john/Maildir/.Caf&AOk-", {"cur/3.M3P3.mx:2,FS": b"cafe\n"})
    _maildir(vmail / "example.org/john/Maildir/.with space.sub", {"cur/4.M4:2,": b"4\n"})
    (vmail / "example.org/john/Maildir/.Caf&AOk-/dovecot-keywords").write_bytes(b"0 $Label1\n")
    _maildir(vmail / "example.org/anne marie/Maildir", {"cur/5.M5:2,S": b"anne\n"})
    _maildir(Path(os.fsdecode(bytes(vmail) + b"/example.org/r\xe9my/Maildir")),
             {"cur/6.M6:2,S": b"remy\n"})
    # Neither of these is a user's Maildir.
    (vmail / "example.org/nomaildir/Maildir").mkdir(parents=True)
    _maildir(vmail / "example.org/.hidden/Maildir")
    (vmail / "example.org/file").mkdir()
    (vmail / "example.org/file/Maildir").write_bytes(b"not a directory")
    (vmail / "lost+found").mkdir()
    config = _backed_up(tmp_path, vmail, "")
    return config, vmail


@pytest.mark.timeout(120)
def test_users_and_folders_with_odd_names(odd_vmail: tuple[Path, Path]) -> None:
    config, _ = odd_vmail
    listed = json.loads(histfs("mailbox", "list", "--config", str(config), "--json",
                               check=0).stdout)
    users = {u.get("user") or u.get("user_b64"): u for u in listed["users"]}
    assert sorted(users) == ["anne marie@example.org", "culteUBleGFtcGxlLm9yZw==",
                             "john@example.org"]
    john = users["john@example.org"]
    assert [(f["name"], f["messages"]) for f in john["folders"]] == [
        ("INBOX", 2), ("Caf&AOk-", 1), ("with space.sub", 1)]
    text = histfs("mailbox", "list", "--config", str(config), "last", check=0).stdout
    assert "Café (Caf&AOk-)" in text and "r\\xe9my@example.org" in text


@pytest.mark.timeout(120)
def test_merge_keeps_owner_mode_and_subscriptions(odd_vmail: tuple[Path, Path]) -> None:
    config, vmail = odd_vmail
    root = vmail / "example.org/john/Maildir"
    for path in [root, *root.rglob("*")]:
        os.chown(path, 1234, 2345, follow_symlinks=False)
    root.chmod(0o750)
    # The user deleted the folder Café and a message of INBOX; the
    # subscriptions file (version 2) names a folder histfs knows nothing of.
    for path in sorted((root / ".Caf&AOk-").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (root / ".Caf&AOk-").rmdir()
    (root / "cur/1.M1P1.mx:2,S").rename(root / "cur/1.M1P1.mx:2,RS")
    received = (root / "new/2.M2P2.mx").stat().st_mtime_ns
    (root / "new/2.M2P2.mx").unlink()
    subscriptions = b"V\t2\n\nOther\tfolder\nwith space\tsub\n"
    (root / "subscriptions").write_bytes(subscriptions)
    os.chown(root / "subscriptions", 1234, 2345)

    summary = json.loads(histfs("mailbox", "restore", "--config", str(config), "--at", "last",
                                "john@example.org", "--json", check=0).stdout)
    assert (summary["restored"], summary["already_there"]) == (2, 2)
    assert summary["folders_created"] == [{"name": "Caf&AOk-"}]
    assert summary["after_command"] is None
    # The flags the live message has now are its own.
    assert sorted(os.listdir(root / "cur")) == ["1.M1P1.mx:2,RS"]
    assert (root / "new/2.M2P2.mx").read_bytes() == b"john 2\n"
    cafe = root / ".Caf&AOk-"
    assert (cafe / "cur/3.M3P3.mx:2,FS").read_bytes() == b"cafe\n"
    assert (cafe / "dovecot-keywords").read_bytes() == b"0 $Label1\n"
    for path in [cafe, cafe / "cur", cafe / "new", cafe / "tmp"]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o750)
    for path in [cafe / "maildirfolder", cafe / "cur/3.M3P3.mx:2,FS", root / "new/2.M2P2.mx"]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o640)
    assert os.listdir(root / "tmp") == [] and os.listdir(cafe / "tmp") == []
    # The received date (the file's mtime) is the snapshot's.
    assert (root / "new/2.M2P2.mx").stat().st_mtime_ns == received
    assert (root / "subscriptions").read_bytes() == subscriptions + b"Caf&AOk-\n"
    assert (root / "subscriptions").stat().st_uid == 1234
    assert not (root / LOCK.decode()).exists()

    # A user whose name is not UTF-8, into a new folder named in Unicode.
    remy = Path(os.fsdecode(bytes(vmail) + b"/example.org/r\xe9my/Maildir"))
    summary = json.loads(histfs("mailbox", "restore", "--config", str(config), "--at", "last",
                                REMY, "--into", "Zurück é", "--json", check=0).stdout)
    assert summary["user_b64"] and summary["restored"] == 1
    assert (remy / ".Zur&APw-ck &AOk-/cur/6.M6:2,S").read_bytes() == b"remy\n"
    # A folder that is not there.
    proc = histfs("mailbox", "restore", "--config", str(config), "--at", "last",
                  "john@example.org", "--folder", "Nope", check=2)
    assert "Nope: no such folder" in proc.stderr and proc.stderr.count("\n") == 1
    proc = histfs("mailbox", "restore", "--config", str(config), "--at", "last",
                  "john@example.org", "--into", "a/b", check=2)
    assert "--into 'a/b'" in proc.stderr


@pytest.mark.timeout(120)
def test_a_damaged_message_is_not_written_and_the_rest_is(tmp_path: Path) -> None:
    """A message whose chunk is damaged is left out with an error naming it
    (exit 2); the other messages are restored, the after command still
    runs, and tmp/ holds nothing."""
    vmail = tmp_path / "vmail"
    root = _maildir(vmail / "example.org/john/Maildir", {
        f"cur/{i}.M{i}:2,S": f"message {i} ".encode() * (100 + i) for i in range(3)})
    marker = tmp_path / "after"
    config = _backed_up(tmp_path, vmail, f"echo %u > {marker}")
    repo = Repository.open(tmp_path / "repo")
    try:
        damage_chunk(repo, repo.select("mx1"), "mail/example.org/john/Maildir/cur/1.M1:2,S")
    finally:
        repo.close()
    for name in os.listdir(root / "cur"):
        (root / "cur" / name).unlink()
    proc = histfs("mailbox", "restore", "--config", str(config), "--at", "last",
                  "john@example.org", check=2)
    assert "INBOX/cur/1.M1:2,S: not restored" in proc.stderr
    assert proc.stdout.splitlines()[0].split()[:2] == ["restored", "2"]
    assert sorted(os.listdir(root / "cur")) == ["0.M0:2,S", "2.M2:2,S"]
    assert os.listdir(root / "tmp") == []
    assert marker.read_text() == "john@example.org\n"


@pytest.mark.timeout(120)
def test_after_command_failing_is_a_warning(odd_vmail: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    config, _ = odd_vmail
    text = config.read_text().replace('after_mailbox_restore = ""',
                                      "after_mailbox_restore = \"echo %u >&2; exit 3\"")
    config.write_text(text)
    proc = histfs("mailbox", "restore", "--config", str(config), "--at", "last",
                  "anne marie@example.org", check=1)
    assert "failed: exited with status 3: anne marie@example.org" in proc.stderr
    # Nothing was missing: nothing restored, the command runs all the same.
    assert proc.stdout.splitlines()[1].split()[:3] == ["already", "there", "1"]


def test_subscriptions_version_1_and_a_held_lock(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert subscribe(fd, [b"New"]) == []  # no file: nothing to do
        (tmp_path / "subscriptions").write_bytes(b"INBOX\nOld.Sub")  # no final newline
        assert subscribe(fd, [b"Old.Sub", b"New.Deep"]) == [b"New.Deep"]
        assert (tmp_path / "subscriptions").read_bytes() == b"INBOX\nOld.Sub\nNew.Deep\n"
        # Another writer holds Dovecot's dot-lock: wait for it.
        (tmp_path / "subscriptions.lock").write_bytes(b"")
        with pytest.raises(SubscriptionsLocked):
            subscribe(fd, [b"Later"], wait=0.2)
        assert (tmp_path / "subscriptions.lock").exists()
        release = threading.Timer(0.3, (tmp_path / "subscriptions.lock").unlink)
        release.start()
        started = time.monotonic()
        assert subscribe(fd, [b"Later"], wait=10) == [b"Later"]
        assert time.monotonic() - started >= 0.25
        release.join()
        assert (tmp_path / "subscriptions").read_bytes().endswith(b"New.Deep\nLater\n")
    finally:
        os.close(fd)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("template", "maildirs", "users"), [
    # Dovecot's maildir:~/Maildir with homes in /home/%n: the part is /home.
    ("%n/Maildir", ["john/Maildir", "mary/Maildir", "mary/other"], ["john", "mary"]),
    # Postfix's virtual_mailbox_base with maps of "example.org/john/".
    ("%d/%n", ["example.org/john", "example.net/mary"],
     ["john@example.org", "mary@example.net"]),
    # One directory per address.
    ("users/%u", ["users/john@example.org", "users/notanaddress"], ["john@example.org"]),
])
def test_common_templates_find_their_users(tmp_path: Path, template: str,
                                           maildirs: list[str], users: list[str]) -> None:
    vmail = tmp_path / "vmail"
    for rel in maildirs:
        _maildir(vmail / rel, {"cur/1.M1:2,S": rel.encode()})
    config = _backed_up(tmp_path, vmail, "", template)
    listed = json.loads(histfs("mailbox", "list", "--config", str(config), "--json",
                               check=0).stdout)
    assert [u["user"] for u in listed["users"]] == users
    (vmail / maildirs[0] / "cur/1.M1:2,S").unlink()
    summary = json.loads(histfs("mailbox", "restore", "--config", str(config), "--at", "last",
                                users[0], "--json", check=0).stdout)
    assert (summary["restored"], summary["already_there"]) == (1, 0)
    assert (vmail / maildirs[0] / "cur/1.M1:2,S").read_bytes() == maildirs[0].encode()
