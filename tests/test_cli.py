"""The `histfs` command line as a user sees it.

Every test runs `python -m histfs` in a subprocess against real directories
and real repositories (no mocks), and checks only public behaviour: exit
statuses, what is printed on stdout and stderr, and what ends up in the
repository (read back through `index.model.repository`).

- bad input: exit status 2, one `histfs: error:` line naming the problem, no
  traceback, nothing published;
- an unreadable file: exit status 1, the file named and counted, the snapshot
  published without it;
- where the repository and host come from (`--repo`, `HISTFS_REPO`, the
  configuration file, the machine's host name);
- the configuration file: repository, host, compression, parts, excludes,
  disabled parts, and command-line values overriding it;
- the output of `backup --json` and of `snapshots` (plain, `--json`, `--host`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from index.errors import PathNotFound
from index.format.config import FORMAT_VERSION
from index.format.types import Kind
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_reader import SnapshotReader
from tests.conftest import ROOT, backup_json, histfs

NOBODY = 65534

# The source tree most tests back up: path inside the part -> content.
FILES = {
    "a.txt": b"alpha\n",
    "sub/b.txt": b"bravo " * 1000,
    "sub/deeper/c.bin": bytes(range(256)) * 40,
}
TOTAL = sum(len(data) for data in FILES.values())


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Create `root` holding `files` (relative path -> content)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A small source directory with FILES."""
    return make_tree(tmp_path / "src", FILES)


def assert_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit status 2, exactly one `histfs: error:` line holding every one of
    `words` (so no traceback), nothing on stdout; returns the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("histfs: error: "), line
    for word in words:
        assert word in line, (word, line)
    assert proc.stdout == ""
    return line


def children(snap: SnapshotReader, path: str) -> list[bytes]:
    """Names in directory `path` of a snapshot ("" is the root: the parts)."""
    entry = snap.root() if not path else snap.resolve(path)
    assert entry.kind == Kind.DIRECTORY
    return [name for name, _ in snap.children(entry.entry_id)]


def content(snap: SnapshotReader, path: str) -> bytes:
    """The bytes of regular file `path` in a snapshot."""
    entry = snap.resolve(path)
    assert entry.kind == Kind.REGULAR
    return snap.read(entry, 0, entry.size)


def list_snapshots(repo_path: Path) -> list[SnapshotRef]:
    """The snapshots a repository holds, read afresh from disk."""
    repo = Repository.open(repo_path)
    try:
        return repo.snapshots()
    finally:
        repo.close()


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- bad input ----------------------------------------------------------------


def test_missing_source_path(repo: Repository, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    proc = histfs("backup", "--repo", str(repo.root), "--host", "mx1", f"mail={missing}")
    assert_error(proc, "mail", str(missing), "does not exist")
    assert repo.snapshots() == []


def test_source_is_a_file(repo: Repository, src: Path) -> None:
    file = src / "a.txt"
    proc = histfs("backup", "--repo", str(repo.root), "--host", "mx1", f"mail={file}")
    assert_error(proc, "mail", str(file), "not a directory")
    assert repo.snapshots() == []


def test_part_argument_without_equals_sign(repo: Repository) -> None:
    proc = histfs("backup", "--repo", str(repo.root), "--host", "mx1", "mail")
    assert_error(proc, "'mail'", "NAME=PATH")


def test_invalid_part_name(repo: Repository) -> None:
    proc = histfs("backup", "--repo", str(repo.root), "--host", "mx1", "../x=/tmp")
    assert_error(proc, "invalid part name", "'../x'")
    assert repo.snapshots() == []


@pytest.mark.parametrize("command", ["backup", "snapshots"])
def test_repository_does_not_exist(command: str, tmp_path: Path, src: Path) -> None:
    missing = tmp_path / "no-repo"
    extra = ["--host", "mx1", f"mail={src}"] if command == "backup" else []
    proc = histfs(command, "--repo", str(missing), *extra)
    assert_error(proc, "no histfs repository", str(missing))
    assert not missing.exists()


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "full"
    target.mkdir()
    (target / "precious").write_bytes(b"keep me")
    proc = histfs("init", "--encryption", "none", str(target))
    assert_error(proc, str(target), "not an empty directory")
    assert sorted(p.name for p in target.iterdir()) == ["precious"]
    assert (target / "precious").read_bytes() == b"keep me"


def test_init_creates_a_repository(tmp_path: Path) -> None:
    target = tmp_path / "new-repo"
    proc = histfs("init", "--encryption", "none", str(target), check=0)
    assert str(target) in proc.stdout
    assert proc.stderr == ""
    assert Repository.open(target).snapshots() == []


@pytest.mark.parametrize("command", ["backup", "snapshots"])
def test_repository_of_a_newer_format(command: str, tmp_path: Path, src: Path) -> None:
    Repository.init(tmp_path / "repo").close()
    config_file = tmp_path / "repo" / "config"
    doc = json.loads(config_file.read_text())
    assert doc["version"] == FORMAT_VERSION
    doc["version"] = FORMAT_VERSION + 1
    config_file.write_text(json.dumps(doc))
    extra = ["--host", "mx1", f"mail={src}"] if command == "backup" else []
    proc = histfs(command, "--repo", str(tmp_path / "repo"), *extra)
    assert_error(proc, f"format {FORMAT_VERSION + 1}", "newer", "upgrade")
    assert not (tmp_path / "repo" / "snapshots" / "mx1").exists()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param("repository = \n", ["not valid TOML"], id="invalid-toml"),
        pytest.param('colour = "red"\n', ["unknown key", "'colour'"], id="unknown-top-key"),
        pytest.param('[[part]]\nname = "mail"\npath = "{src}"\nexclud = ["*.tmp"]\n',
                     ["part[0].exclud", "unknown key"], id="unknown-part-key"),
        pytest.param('compression = "high"\n', ["compression", "expected int", "'high'"],
                     id="compression-not-int"),
        pytest.param('[[part]]\nname = "mail"\npath = "{src}"\nenabled = "yes"\n',
                     ["part[0].enabled", "expected bool", "'yes'"], id="enabled-not-bool"),
        pytest.param("compression = 23\n", ["compression", "0 (off) to 22", "23"],
                     id="compression-out-of-range"),
        pytest.param('[[part]]\nname = "mail"\npath = "{src}"\nchunk_size = "2KiB"\n',
                     ["part[0].chunk_size", "4KiB to 4MiB", "'2KiB'"],
                     id="chunk-size-too-small"),
        pytest.param('[[part]]\nname = "mail"\npath = "{src}"\nchunk_size = "8 kB"\n',
                     ["part[0].chunk_size", "expected a size", "'8 kB'"],
                     id="chunk-size-bad-unit"),
    ],
)
def test_bad_config_file(body: str, words: list[str], repo: Repository, src: Path,
                         tmp_path: Path) -> None:
    # The file names a working repository, so the only problem is `body`.
    cfg = write_config(tmp_path / "histfs.toml",
                       f'repository = "{repo.root}"\n' + body.format(src=src))
    proc = histfs("backup", "--config", str(cfg), "--host", "mx1", f"mail={src}")
    assert_error(proc, str(cfg), *words)
    assert repo.snapshots() == []


def test_missing_config_file(tmp_path: Path, src: Path) -> None:
    cfg = tmp_path / "absent.toml"
    proc = histfs("backup", "--config", str(cfg), f"mail={src}")
    assert_error(proc, str(cfg), "no such configuration file")


def test_compression_out_of_range_on_the_command_line(repo: Repository, src: Path) -> None:
    proc = histfs("backup", "--repo", str(repo.root), "--host", "mx1",
                  "--compression", "23", f"mail={src}")
    assert_error(proc, "compression", "23")
    assert repo.snapshots() == []


@pytest.mark.parametrize("command", ["backup", "snapshots"])
def test_no_repository_given(command: str, src: Path) -> None:
    assert "HISTFS_REPO" not in os.environ
    extra = ["--host", "mx1", f"mail={src}"] if command == "backup" else []
    proc = histfs(command, *extra)
    assert_error(proc, "no repository given", "--repo", "HISTFS_REPO")


@pytest.mark.parametrize("command", ["backup", "snapshots"])
def test_invalid_host_name(command: str, repo: Repository, src: Path) -> None:
    extra = [f"mail={src}"] if command == "backup" else []
    proc = histfs(command, "--repo", str(repo.root), "--host", "a/b", *extra)
    assert_error(proc, "invalid host name", "'a/b'")
    assert repo.snapshots() == []
    assert not (repo.root / "snapshots" / "a").exists()


# -- a file that cannot be read -------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that user nobody can reach (pytest's tmp_path is private
    to root); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="histfs-cli-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _unprivileged() -> list[str]:
    """A command prefix that runs as a user who cannot read root's 0600
    files: none when not root, else setpriv to user nobody."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("runs as root and setpriv (util-linux) is not installed: "
                    "no way to make a file unreadable to the backup")
    return [setpriv, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


@dataclass
class Unreadable:
    """A source with one file the backup cannot read, and how to back it up."""

    source: Path
    secret: Path
    repo: Path
    prefix: list[str]
    env: dict[str, str]

    def backup(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`histfs backup` of the source as the unprivileged user."""
        return subprocess.run(
            [*self.prefix, sys.executable, "-m", "histfs", "backup", "--repo",
             str(self.repo), "--host", "mx1", *args, f"mail={self.source}"],
            capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=60)


@pytest.fixture
def unreadable(shared_dir: Path) -> Unreadable:
    """FILES plus sub/secret, which the backup's user cannot read: root's
    mode 0600 file read as user nobody (or, when not root, a mode 000 file)."""
    prefix = _unprivileged()
    source = make_tree(shared_dir / "src", FILES)
    secret = source / "sub" / "secret"
    secret.write_bytes(b"root only\n")
    secret.chmod(0o600 if prefix else 0o000)
    Repository.init(shared_dir / "repo").close()
    cache = shared_dir / "cache"
    cache.mkdir()
    if prefix:
        _chown_tree(shared_dir / "repo", NOBODY)
        _chown_tree(cache, NOBODY)
    env = {**os.environ, "HISTFS_CACHE_DIR": str(cache)}
    return Unreadable(source, secret, shared_dir / "repo", prefix, env)


def test_unreadable_file_is_a_warning(unreadable: Unreadable) -> None:
    secret = unreadable.secret
    proc = unreadable.backup("--json")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    summary = json.loads(proc.stdout)
    assert summary["exit_status"] == 1
    assert summary["files_failed"] == 1
    assert summary["files_new"] == len(FILES)
    assert summary["warnings"] == [f"{secret}: Permission denied"]

    repo = Repository.open(unreadable.repo)
    try:
        assert repo.snapshots() == [SnapshotRef("mx1", summary["snapshot"])]
        with repo.open_snapshot(repo.snapshots()[0]) as snap:
            assert children(snap, "mail/sub") == [b"b.txt", b"deeper"]
            for rel, data in FILES.items():
                assert content(snap, f"mail/{rel}") == data
            with pytest.raises(PathNotFound):
                snap.resolve("mail/sub/secret")
    finally:
        repo.close()

    # Without --json the warning is a line of its own on stderr.
    proc = unreadable.backup()
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stderr.splitlines() == [f"histfs: warning: {secret}: Permission denied"]
    assert ", 1 failed" in proc.stdout
    assert len(list_snapshots(unreadable.repo)) == 2


def test_json_backup_still_names_warnings_on_stderr(unreadable: Unreadable) -> None:
    proc = unreadable.backup("--json")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert json.loads(proc.stdout)["files_failed"] == 1
    assert proc.stderr.splitlines() == [
        f"histfs: warning: {unreadable.secret}: Permission denied"]


# -- where the repository and the host come from --------------------------------


def test_histfs_repo_stands_in_for_repo(repo: Repository, src: Path) -> None:
    env = {"HISTFS_REPO": str(repo.root)}
    proc = histfs("backup", "--host", "mx1", "--json", f"mail={src}", env=env, check=0)
    summary = json.loads(proc.stdout)
    assert summary["repository"] == str(repo.root)
    assert repo.snapshots() == [SnapshotRef("mx1", summary["snapshot"])]

    proc = histfs("snapshots", "--json", env=env, check=0)
    assert [(r["host"], r["name"]) for r in json.loads(proc.stdout)] == [
        ("mx1", summary["snapshot"])]


def test_repo_option_wins_over_histfs_repo(repo: Repository, src: Path,
                                           tmp_path: Path) -> None:
    env = {"HISTFS_REPO": str(tmp_path / "elsewhere")}
    histfs("backup", "--repo", str(repo.root), "--host", "mx1", f"mail={src}",
           env=env, check=0)
    proc = histfs("snapshots", "--repo", str(repo.root), "--json", env=env, check=0)
    assert len(json.loads(proc.stdout)) == 1
    # And HISTFS_REPO alone really points at the missing directory.
    assert_error(histfs("snapshots", env=env), str(tmp_path / "elsewhere"))


def test_host_defaults_to_the_short_host_name(repo: Repository, src: Path) -> None:
    host = socket.gethostname().split(".")[0]
    proc = histfs("backup", "--repo", str(repo.root), "--json", f"mail={src}", check=0)
    summary = json.loads(proc.stdout)
    assert summary["host"] == host
    assert repo.snapshots() == [SnapshotRef(host, summary["snapshot"])]


# -- the configuration file ---------------------------------------------------------

# What the [[part]] "mail" holds, and what of it its excludes leave out.
MAIL = {
    "keep.txt": b"a" * 200_000,  # compresses to almost nothing
    "cur/1.msg": b"Subject: one\n\nbody\n",
    "cur/dovecot.lock": b"lock",
    "tmp/scratch": b"half-delivered",
    "tmp/deeper/more": b"also scratch",
}
MAIL_KEPT = ["keep.txt", "cur/1.msg"]
MAIL_EXCLUDED = ["cur/dovecot.lock", "tmp/scratch", "tmp/deeper"]


@pytest.fixture
def config_file(tmp_path: Path, repo: Repository) -> Path:
    """A configuration with repository, host, compression 0 and two parts,
    the second disabled."""
    mail = make_tree(tmp_path / "spool", MAIL)
    dumps = make_tree(tmp_path / "dumps", {"db.sql": b"CREATE TABLE t;\n"})
    # tmp_path lies below /tmp: "*/tmp/*" must still leave out only the
    # part's own tmp/ (patterns are matched inside the part).
    return write_config(tmp_path / "histfs.toml", f"""\
repository = "{repo.root}"
host = "cfghost"
compression = 0

[[part]]
name = "mail"
path = "{mail}"
exclude = ["*/tmp/*", "*.lock"]

[[part]]
name = "pgsql"
path = "{dumps}"
enabled = false
""")


def test_config_file_is_used(config_file: Path, repo: Repository) -> None:
    proc = histfs("backup", "--config", str(config_file), "--json", check=0)
    summary = json.loads(proc.stdout)
    assert summary["host"] == "cfghost"
    assert summary["repository"] == str(repo.root)
    assert summary["files_new"] == len(MAIL_KEPT)
    # compression = 0: the 200 kB of "a" are stored as they are.
    assert summary["bytes_added"] >= len(MAIL["keep.txt"])
    (ref,) = repo.snapshots()
    assert ref == SnapshotRef("cfghost", summary["snapshot"])
    with repo.open_snapshot(ref) as snap:
        assert children(snap, "") == [b"mail"]  # pgsql is disabled
        assert [p["name"] for p in snap.meta["parts"]] == ["mail"]
        for rel in MAIL_KEPT:
            assert content(snap, f"mail/{rel}") == MAIL[rel]
        for rel in MAIL_EXCLUDED:
            with pytest.raises(PathNotFound):
                snap.resolve(f"mail/{rel}")
        # "*/spool/tmp/*" leaves out what is in tmp/, not tmp/ itself.
        assert children(snap, "mail/tmp") == []
        assert children(snap, "mail/cur") == [b"1.msg"]


def test_command_line_overrides_config_file(config_file: Path, repo: Repository,
                                            tmp_path: Path) -> None:
    etc = make_tree(tmp_path / "etc", {"main.cf": b"b" * 200_000})
    other = Repository.init(tmp_path / "other-repo")
    try:
        proc = histfs("backup", "--config", str(config_file), "--repo", str(other.root),
                      "--host", "cli-host", "--compression", "3", "--json",
                      f"etc={etc}", check=0)
        summary = json.loads(proc.stdout)
        assert summary["host"] == "cli-host"
        assert summary["repository"] == str(other.root)
        # --compression 3 instead of the file's 0.
        assert summary["bytes_added"] < 20_000
        assert repo.snapshots() == []
        (ref,) = other.snapshots()
        assert ref == SnapshotRef("cli-host", summary["snapshot"])
        with other.open_snapshot(ref) as snap:
            # NAME=PATH arguments replace the file's parts.
            assert children(snap, "") == [b"etc"]
            assert content(snap, "etc/main.cf") == b"b" * 200_000
    finally:
        other.close()


# -- snapshots ----------------------------------------------------------------------


def test_snapshots_json_after_two_backups(repo: Repository, src: Path) -> None:
    first = backup_json(repo.root, f"mail={src}")
    second = backup_json(repo.root, f"mail={src}")
    assert first["bytes_added"] > 0  # type: ignore[operator]
    assert (second["files_unchanged"], second["bytes_read"], second["bytes_added"]) == (
        len(FILES), 0, 0)

    rows = json.loads(histfs("snapshots", "--repo", str(repo.root), "--json",
                             check=0).stdout)
    assert [r["name"] for r in rows] == [first["snapshot"], second["snapshot"]]
    assert [r["name"] for r in rows] == [ref.name for ref in repo.snapshots()]
    for row in rows:
        assert row["host"] == "mx1"
        assert row["parts"] == ["mail"]
        assert row["files"] == len(FILES)
        assert row["logical_bytes"] == TOTAL
    assert [r["bytes_added"] for r in rows] == [first["bytes_added"], 0]


def test_snapshots_table_and_host_filter(repo: Repository, src: Path) -> None:
    names = {host: [str(backup_json(repo.root, f"mail={src}", host=host)["snapshot"])
                    for _ in range(n)]
             for host, n in (("mx1", 2), ("mx2", 1))}

    proc = histfs("snapshots", "--repo", str(repo.root), check=0)
    header, *lines = proc.stdout.splitlines()
    assert header.split() == ["host", "snapshot", "files", "size", "added", "parts"]
    rows = [line.split() for line in lines]
    assert [(r[0], r[1]) for r in rows] == [
        ("mx1", names["mx1"][0]), ("mx1", names["mx1"][1]), ("mx2", names["mx2"][0])]
    assert TOTAL == 16246  # shown as "16.2 kB"
    for r in rows:
        assert r[2] == str(len(FILES))
        assert r[3:5] == ["16.2", "kB"]
        assert r[-1] == "mail"
    assert rows[1][5:7] == ["0", "B"]  # the second backup of mx1 added nothing

    proc = histfs("snapshots", "--repo", str(repo.root), "--host", "mx2", check=0)
    header, *lines = proc.stdout.splitlines()
    assert header.split()[0] == "host"
    assert [line.split()[:2] for line in lines] == [["mx2", names["mx2"][0]]]

    rows = json.loads(histfs("snapshots", "--repo", str(repo.root), "--host", "mx1",
                             "--json", check=0).stdout)
    assert [(r["host"], r["name"]) for r in rows] == [("mx1", n) for n in names["mx1"]]


def test_snapshots_of_an_empty_repository(repo: Repository) -> None:
    assert histfs("snapshots", "--repo", str(repo.root), check=0).stdout == "no snapshots\n"
    assert json.loads(histfs("snapshots", "--repo", str(repo.root), "--json",
                             check=0).stdout) == []


# -- backup --json ------------------------------------------------------------------


def test_backup_json_summary(repo: Repository, src: Path) -> None:
    proc = histfs("backup", "--repo", str(repo.root), "--host", "mx1", "--json",
                  f"mail={src}", check=0)
    assert proc.stderr == ""
    summary = json.loads(proc.stdout)  # one object: nothing before or after it
    assert isinstance(summary, dict)
    assert {"files_new", "files_changed", "files_unchanged", "files_failed", "bytes_read",
            "bytes_added", "duration_seconds", "snapshot", "exit_status"} <= summary.keys()
    assert (summary["files_new"], summary["files_changed"], summary["files_unchanged"],
            summary["files_failed"]) == (len(FILES), 0, 0, 0)
    assert summary["bytes_read"] == TOTAL
    assert summary["bytes_added"] > 0
    assert isinstance(summary["duration_seconds"], float | int)
    assert 0 <= summary["duration_seconds"] < 60
    assert summary["exit_status"] == 0
    assert repo.snapshots() == [SnapshotRef("mx1", summary["snapshot"])]

    (src / "a.txt").write_bytes(b"alpha, changed\n")
    summary = backup_json(repo.root, f"mail={src}")
    assert (summary["files_new"], summary["files_changed"], summary["files_unchanged"],
            summary["files_failed"]) == (0, 1, len(FILES) - 1, 0)
    assert summary["bytes_read"] == len(b"alpha, changed\n")
    assert [r.name for r in repo.snapshots()][-1] == summary["snapshot"]


@pytest.mark.parametrize("args", [
    ["backup", "--lock-wait", "-1"], ["backup", "--lock-wait", "nan"],
    ["backup", "--lock-wait", "inf"], ["backup", "--lock-wait", "1e999"],
    ["prune", "--keep-last", "1", "--lock-wait", "-0.5"],
    ["prune", "--keep-last", "1", "--lock-wait", "NaN"],
    ["gc", "--wait", "nan"], ["gc", "--wait", "-1"], ["gc", "--grace", "inf"],
    ["gc", "--grace", "1e400"],
], ids=lambda a: " ".join(a))
def test_durations_must_be_finite_and_not_negative(args: list[str], repo: Repository,
                                                   src: Path) -> None:
    option, given = args[-2], args[-1]
    extra = ["--host", "mx1", f"mail={src}"] if args[0] == "backup" else []
    proc = histfs(*args, "--repo", str(repo.root), *extra)
    assert_error(proc, f"{option}: expected seconds, 0 or more, got {float(given)}")
    assert repo.snapshots() == []


def test_a_negative_mount_cache_is_refused(repo: Repository, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = histfs("mount", "--repo", str(repo.root), "--cache-mb", "-1", str(mnt))
    assert_error(proc, "--cache-mb: expected MiB, 0 or more, got -1")
    assert not os.path.ismount(mnt)


def test_hook_timeout_of_zero_is_refused(repo: Repository, src: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "histfs.toml", f'repository = "{repo.root}"\n'
                       '[hooks]\nbefore = "true"\ntimeout = "0s"\n')
    proc = histfs("backup", "--config", str(cfg), "--host", "mx1", f"mail={src}")
    assert_error(proc, str(cfg), "hooks.timeout: must be more than 0")
