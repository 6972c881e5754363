"""The progress line of `histfs backup` and the counts it shares with the
summary and with `histfs snapshots`.

`files` means the same everywhere: every entry of the snapshot other than
a directory (regular files, symlinks, fifos, every name of a hard link).
The last progress line stays on the terminal and counts what the summary
counts, `snapshots` shows the same number, and all of them are what the
snapshot's index holds, also when files move during the walk.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from histfs.backup_progress import duration_text, progress_text
from index.model.repository import Repository
from tests.conftest import histfs
from writer import walk
from writer.backup import run_backup
from writer.parts import Part
from writer.stats import BackupStats

SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


def _tree(root: Path) -> Path:
    for i in range(40):
        box = root / f"user{i % 4}" / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (box / sub).mkdir(parents=True, exist_ok=True)
        (box / "cur" / f"{i}.eml").write_bytes(b"x" * (100 * i))
        (box / "tmp" / f"{i}.part").write_bytes(b"partial")
    (root / "user0/Maildir/cur/link").symlink_to("0.eml")
    os.link(root / "user0/Maildir/cur/4.eml", root / "user0/Maildir/hard.eml")
    (root / "user1/sym").symlink_to("Maildir")
    os.link(root / "user1/sym", root / "user1/sym-hard")
    os.mkfifo(root / "user2/fifo")
    (root / "user3/.cache/idx").mkdir(parents=True)
    (root / "user3/.cache/CACHEDIR.TAG").write_bytes(SIGNATURE)
    (root / "user3/.cache/idx/1").write_bytes(b"cache")
    return root


def _on_a_terminal(args: list[str], env: dict[str, str],
                   pause: Path | None = None) -> tuple[int, str, str]:
    """Run histfs with stderr on a 160-column pseudo-terminal; (exit status,
    stdout, what the terminal showed). With `pause`, the backup waits
    before building its index until the progress line was drawn a few times."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    full_env = {**os.environ, **env}
    if pause is not None:
        full_env["HISTFS_TEST_PAUSE_AT"] = f"before-index:{pause}"
    proc = subprocess.Popen([sys.executable, "-m", "histfs", *args], stdout=subprocess.PIPE,
                            stderr=slave, env=full_env, text=True)
    os.close(slave)
    shown = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=drain)
    reader.start()
    if pause is not None:
        deadline = time.monotonic() + 60
        while not (pause / "before-index.reached").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(2.5)
        (pause / "before-index.go").touch()
    out, _ = proc.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(master)
    return proc.returncode, out, shown.decode()


def _snapshot_files(repo: Path, name: str) -> tuple[int, int | None]:
    """(entries other than directories in the index, its recorded `files`)."""
    r = Repository.open(repo)
    try:
        (ref,) = [s for s in r.snapshots("mx1") if s.name == name]
        with r.open_snapshot(ref) as snap:
            held = sum(1 for path, entry in snap.walk()
                       if entry.kind.name != "DIRECTORY" and b"/" in path)
            return held, snap.meta.get("files")
    finally:
        r.close()


def _summary_files(out: str) -> tuple[int, list[int]]:
    m = re.search(r"^files +(\d+) \((\d+) new, (\d+) changed, (\d+) unchanged, (\d+) other\), "
                  r"(\d+) failed, (\d+) directories$", out, re.M)
    assert m, out
    return int(m.group(1)), [int(g) for g in m.groups()[1:5]]


@pytest.mark.timeout(180)
def test_progress_summary_and_snapshots_count_alike(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    source = _tree(tmp_path / "spool")
    config = tmp_path / "h.toml"
    config.write_text(f'repository = "{repo}"\nhost = "mx1"\nexclude_caches = true\n'
                      f'[[part]]\nname = "mail"\npath = "{source}"\nexclude = ["*/tmp/*"]\n')
    env = {"COLUMNS": "160"}
    for run in range(2):
        if run == 1:
            # Some new, some changed, some gone: the second run has a previous snapshot.
            (source / "user1/Maildir/new/n.eml").write_bytes(b"new")
            (source / "user2/Maildir/cur/2.eml").write_bytes(b"changed")
            (source / "user3/Maildir/cur/3.eml").unlink()
        pause = tmp_path / f"pause{run}"
        pause.mkdir()
        code, out, shown = _on_a_terminal(["backup", "--config", str(config)], env, pause)
        assert code == 0, (out, shown)
        lines = [line.strip() for line in re.split(r"[\r\n]", shown) if line.strip()]
        final = lines[-1]
        total, (new, changed, unchanged, other) = _summary_files(out)
        assert total == new + changed + unchanged + other
        m = re.match(r"([\d,]+) files, ", final)
        assert m and int(m.group(1).replace(",", "")) == total, (final, out)
        name = re.search(r"^snapshot +mx1/(\S+)$", out, re.M)
        assert name
        held, recorded = _snapshot_files(repo, name.group(1))
        assert held == recorded == total
        rows = json.loads(histfs("snapshots", "--repo", str(repo), "--json", check=0).stdout)
        assert [r["files"] for r in rows if r["name"] == name.group(1)] == [total]
        if run == 0:
            # 40 messages, a symlink and its hard-linked twin, a second name
            # of a message, a fifo; tmp/ and the tagged cache left out.
            assert (total, other) == (45, 4)
        else:
            assert (new, changed) == (1, 1) and total == 45
            # While it ran: the share of the previous snapshot's files and
            # bytes, and (paused after the walk) what it was doing.
            during = [line for line in lines if "% of files (" in line]
            assert during, lines
            assert re.match(r"\d+% of files \(45 of 45\), \d+% of bytes \([\d.]+ kB of "
                            r"[\d.]+ kB\), writing the snapshot index$", during[-1]), during


def test_progress_text_with_a_previous_snapshot() -> None:
    stats = BackupStats(files_unchanged=300, other=100, logical_bytes=250_000_000,
                        bytes_read=5_000_000, expected_files=1000,
                        expected_bytes=1_000_000_000, current=b"/var/spool/imap/john/cur")
    stats.started -= 60
    line = progress_text(stats, 150)
    assert line.startswith("40% of files (400 of 1,000), 25% of bytes (250.0 MB of 1.0 GB), ")
    # 32.5% done in a minute: about two more.
    assert re.search(r", 2m0\ds left  /var/spool/imap/john/cur$", line), line
    narrow = progress_text(stats, 90)
    assert len(narrow) == 90 and narrow.endswith("left  …imap/john/cur"), narrow
    final = progress_text(stats, 150, final=True)
    assert final.startswith("400 files, 250.0 MB, 5.0 MB read (") and final.endswith(", 1m00s")
    assert progress_text(BackupStats(expected_files=10, expected_bytes=10), 150).startswith(
        "0% of files (0 of 10)")
    stats.walked = True
    assert progress_text(stats, 150).endswith("(250.0 MB of 1.0 GB), writing the snapshot index")
    assert [duration_text(s) for s in (5, 90, 4000)] == ["5s", "1m30s", "1h06m"]


@pytest.mark.timeout(120)
def test_files_moved_during_the_walk_are_counted_once(tmp_path: Path, repo: Repository,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A message moved from new/ to cur/ after new/ was listed (cur/ was
    listed before it) is found again by the rescan and counted once; one
    deleted after it was read stays in the snapshot as it was read, counted
    once too."""
    source = tmp_path / "Maildir"
    for sub in ("cur", "new"):
        (source / sub).mkdir(parents=True)
    for i in range(5):
        (source / "cur" / f"{i}.eml").write_bytes(b"old" * i)
    (source / "new/moved.eml").write_bytes(b"moved")
    (source / "new/deleted.eml").write_bytes(b"deleted")
    run_backup(repo, "mx1", [Part("mail", source)])
    (source / "new/fresh.eml").write_bytes(b"fresh")
    scan = walk.Walker.scan_dir
    done = False

    def scan_then_move(self: walk.Walker, d: walk._Dir, only_new: bool) -> list[walk._Dir]:
        nonlocal done
        found = scan(self, d, only_new)
        if d.path.endswith(b"/new") and not done:
            done = True
            os.rename(source / "new/moved.eml", source / "cur/moved.eml")
            (source / "new/deleted.eml").unlink()
            (source / "new/fresh.eml").rename(source / "cur/fresh.eml")
        return found

    monkeypatch.setattr(walk.Walker, "scan_dir", scan_then_move)
    stats = BackupStats()
    result = run_backup(repo, "mx1", [Part("mail", source)], stats=stats)
    assert done and result.snapshot is not None
    with repo.open_snapshot(result.snapshot) as snap:
        held = sorted(path.decode() for path, entry in snap.walk()
                      if entry.kind.name != "DIRECTORY" and b"/" in path)
        assert snap.meta["files"] == len(held) == stats.files == 8
    assert {"mail/cur/moved.eml", "mail/cur/fresh.eml", "mail/new/deleted.eml"} <= set(held)
    assert "mail/new/moved.eml" not in held
    assert (stats.files_new, stats.files_changed, stats.files_unchanged) == (2, 0, 6)
    assert stats.logical_bytes == sum(len(b"old" * i) for i in range(5)) + 17
