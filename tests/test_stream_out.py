"""`histfs cat` and `histfs restore --to-command`: one file of a snapshot
streamed out, in bounded memory, every chunk verified; a damaged chunk
stops the stream before any of its bytes, with the path and exit 2."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from index.model.repository import Repository
from tests.conftest import histfs
from tests.test_check_history import HOST, backup, flip_payload_byte, write

BIG = 50 * 1024 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cat(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "histfs", "cat", "--repo", str(repo), *args],
                          capture_output=True, timeout=300)


@pytest.fixture
def big_repo(tmp_path: Path) -> tuple[Path, str, bytes]:
    """A repository whose snapshot holds d/big.bin (50 MB, random), a file
    with a name that is not UTF-8 and a directory."""
    root = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(root), check=0)
    src = tmp_path / "src"
    data = os.urandom(BIG)
    write(src / "big.bin", data)
    write(src / "sub" / os.fsdecode(b"bad\xffname"), b"latin-1 mailbox\n")
    return root, backup(root, src), data


@pytest.mark.timeout(300)
def test_cat_streams_a_large_file_in_bounded_memory(big_repo: tuple[Path, str, bytes]) -> None:
    root, name, data = big_repo
    # Peak RSS of the cat alone, measured by a parent of its own.
    probe = ("import resource, subprocess, sys\n"
             "out = open(sys.argv[1], 'wb')\n"
             "rc = subprocess.run(sys.argv[2:], stdout=out).returncode\n"
             "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = root.parent / "out.bin"
    proc = subprocess.run([sys.executable, "-c", probe, str(out), sys.executable, "-m",
                           "histfs", "cat", "--repo", str(root), name, "d/big.bin"],
                          capture_output=True, text=True, timeout=300, check=True)
    rc, rss_kib = (int(x) for x in proc.stdout.split())
    assert rc == 0, proc.stderr
    assert _sha(out.read_bytes()) == _sha(data)
    # Holding the file would take 50 MiB on top of the interpreter's own.
    assert rss_kib < 90 * 1024, rss_kib
    # `last`, a leading slash, and the printed form of a non-UTF-8 name.
    assert _cat(root, "last", "/d/sub/bad\\xffname").stdout == b"latin-1 mailbox\n"
    # --quiet silences summaries, not the bytes asked for.
    quiet = subprocess.run([sys.executable, "-m", "histfs", "--quiet", "cat", "--repo",
                            str(root), name, "d/sub/bad\\xffname"], capture_output=True,
                           timeout=300)
    assert quiet.returncode == 0 and quiet.stdout == b"latin-1 mailbox\n", quiet.stderr


def test_cat_refuses_what_is_not_one_file(big_repo: tuple[Path, str, bytes]) -> None:
    root, name, _ = big_repo
    for path, said in (("d/sub", "not a regular file"), ("d/nothere", "not in snapshot")):
        proc = _cat(root, name, path)
        assert proc.returncode == 2 and proc.stdout == b""
        err = proc.stderr.decode()
        assert said in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _damage_middle_chunk(root: Path, name: str) -> int:
    """Flip a byte in a chunk in the middle of d/big.bin; the offset in the
    file where that chunk's bytes begin."""
    repo = Repository.open(root)
    try:
        with repo.open_snapshot(repo.select(HOST, name)) as snap:
            extents = [e for e in snap.extents(snap.resolve("d/big.bin"))
                       if e.chunk_id is not None]
            assert len(extents) > 4
            middle = extents[len(extents) // 2]
            assert middle.chunk_id is not None
            loc = snap.location(middle.chunk_id)
    finally:
        repo.close()
    flip_payload_byte(root, loc)
    return middle.offset


@pytest.mark.timeout(300)
def test_a_damaged_chunk_stops_the_stream(big_repo: tuple[Path, str, bytes]) -> None:
    root, name, data = big_repo
    bad_at = _damage_middle_chunk(root, name)
    proc = _cat(root, name, "d/big.bin")
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "d/big.bin" in err and len(err.strip().splitlines()) == 1, err
    # Only good bytes, and none from the damaged chunk on.
    assert len(proc.stdout) <= bad_at
    assert proc.stdout == data[: len(proc.stdout)]
    # Into a command: it is killed before its input ends, never given the
    # damaged bytes or an EOF that would make a truncated file look whole.
    got = root.parent / "got.bin"
    proc2 = histfs("restore", "--repo", str(root), name, "d/big.bin",
                   "--to-command", f"cat > {got}; echo finished >> {got}.done")
    assert proc2.returncode == 2 and "d/big.bin" in proc2.stderr, proc2.stderr
    assert not Path(f"{got}.done").exists()
    assert len(got.read_bytes()) <= bad_at


@pytest.mark.timeout(300)
def test_restore_to_command(big_repo: tuple[Path, str, bytes], tmp_path: Path) -> None:
    root, name, data = big_repo
    out = tmp_path / "sum"
    histfs("restore", "--repo", str(root), name, "d/big.bin", "--to-command",
           f"sha256sum > {out}", check=0)
    assert out.read_text().split()[0] == _sha(data)
    # --at and a non-UTF-8 name.
    histfs("restore", "--repo", str(root), "--at", "2999-01-01", "d/sub/bad\\xffname",
           "--to-command", f"cat > {out}", check=0)
    assert out.read_bytes() == b"latin-1 mailbox\n"
    # A failing command: its exit status and the tail of its stderr.
    proc = histfs("restore", "--repo", str(root), name, "d/big.bin", "--to-command",
                  "head -c 100 >/dev/null; echo 'psql: database gone' >&2; exit 3")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "status 3" in last and "psql: database gone" in last, proc.stderr
    # One that exits 0 without taking the whole file has not restored it.
    proc = histfs("restore", "--repo", str(root), name, "d/big.bin", "--to-command",
                  "head -c 100 >/dev/null")
    assert proc.returncode == 2 and "stopped reading" in proc.stderr, proc.stderr
    proc = histfs("restore", "--repo", str(root), name, "d/big.bin", "--to-command",
                  "kill -9 $$")
    assert proc.returncode == 2 and "d/big.bin" in proc.stderr
    # Exactly one regular file.
    for paths in ([], ["d/big.bin", "d/sub/bad\\xffname"], ["d/sub"]):
        proc = histfs("restore", "--repo", str(root), name, *paths, "--to-command", "cat")
        assert proc.returncode == 2 and proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = histfs("restore", "--repo", str(root), name, "d/big.bin")
    assert proc.returncode == 2 and "--target" in proc.stderr
