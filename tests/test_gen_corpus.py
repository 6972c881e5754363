"""scripts/gen_corpus.py: deterministic days, sensible daily changes, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gen_corpus.py"
SCALE = "0.01"
BASE_EPOCH = 1_700_000_000
DAY = 86_400

Manifest = dict[str, tuple[int, str, int] | None]  # path -> (size, sha256, mtime_ns); dirs: None


def gen(out: Path, day: int, *extra: str,
        check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--scale", SCALE, "--day", str(day), *extra],
        capture_output=True, text=True, timeout=120,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def manifest(root: Path) -> Manifest:
    found: Manifest = {}
    for top, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(top, name), root) + "/"] = None
        for name in files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            found[os.path.relpath(path, root)] = (st.st_size, digest, st.st_mtime_ns)
    return found


def messages(m: Manifest) -> dict[str, str]:
    """Message identity (name up to ",S=") -> its path."""
    return {path.rsplit("/", 1)[1].split(",S=")[0]: path
            for path, entry in m.items()
            if entry is not None and path.startswith("mail/")
            and path.rsplit("/", 2)[1] in ("cur", "new")}


def dump_blocks(path: Path) -> dict[str, list[bytes]]:
    """COPY block of each table -> its rows."""
    blocks: dict[str, list[bytes]] = {}
    lines = path.read_bytes().split(b"\n")
    table = None
    for line in lines:
        if line.startswith(b"COPY public."):
            table = line.split()[1].decode()
            blocks[table] = []
        elif line == b"\\.":
            table = None
        elif table is not None:
            blocks[table].append(line)
    return blocks


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Day 2 made directly (2 workers), and days 0, 1, 2 made one at a time (1 worker)."""
    base = tmp_path_factory.mktemp("corpus")
    direct, stepwise = base / "direct", base / "stepwise"
    gen(direct, 2, "--jobs", "2")
    found: dict[str, object] = {"direct": direct, "stepwise": stepwise}
    for day in range(3):
        proc = gen(stepwise, day, "--jobs", "1")
        found[f"stderr{day}"] = proc.stderr
        found[f"manifest{day}"] = manifest(stepwise)
        found[f"dump{day}"] = dump_blocks(stepwise / "pgsql" / "mail.sql")
    return found


def test_every_part_is_there(days: dict[str, object]) -> None:
    m0 = days["manifest0"]
    assert isinstance(m0, dict)
    msgs = messages(m0)
    users = {path.split("/")[1] for path in msgs.values()}
    assert len(users) >= 3 and len(msgs) >= 30
    assert any("/new/" in p for p in msgs.values())
    assert any("/.Sent/cur/" in p for p in msgs.values())
    for user in users:
        for sub in ("cur/", "new/", "tmp/", ".Sent/cur/", ".Sent/tmp/"):
            assert f"mail/{user}/Maildir/{sub}" in m0
    for key, path in msgs.items():
        name = path.rsplit("/", 1)[1]
        size = m0[path]
        assert size is not None and f",S={size[0]}" in name
        assert name.endswith(f".mx1,S={size[0]}") if "/new/" in path else ":2," in name
        assert size[2] == int(key.split(".")[0]) * 10**9  # mtime = delivery time in the name
    assert any(size[0] > 100_000 for p, size in m0.items() if size and p.startswith("mail/"))
    segments = [p for p in m0 if p.startswith("es/nodes/0/indices/") and p.endswith(".cfs")]
    assert len(segments) >= 4
    assert "pgsql/mail.sql" in m0
    dump = days["dump0"]
    assert isinstance(dump, dict)
    assert set(dump) == {f"public.{t}" for t in ("domains", "users", "messages", "maillog",
                                                 "auth_log")}
    assert all(len(rows) >= 5 for rows in dump.values())
    stepwise = days["stepwise"]
    assert isinstance(stepwise, Path)
    state = json.loads((stepwise / ".corpus-day").read_text())
    assert state == {"day": 2, "scale": 0.01, "seed": 0}
    stderr = days["stderr0"]
    assert isinstance(stderr, str) and len(stderr.strip().splitlines()) == 1
    assert "day 0" in stderr and "files" in stderr and "bytes" in stderr


def test_day_made_directly_equals_day_reached_step_by_step(days: dict[str, object]) -> None:
    direct, m2 = days["direct"], days["manifest2"]
    assert isinstance(direct, Path)
    assert manifest(direct) == m2  # paths, sizes, contents and file mtimes


def test_day_one_changes(days: dict[str, object]) -> None:
    m0, m1 = days["manifest0"], days["manifest1"]
    assert isinstance(m0, dict) and isinstance(m1, dict)
    before, after = messages(m0), messages(m1)

    delivered = set(after) - set(before)
    assert delivered
    for key in delivered:
        path = after[key]
        assert path.rsplit("/", 2)[1] == "new" and ":2," not in path
        assert BASE_EPOCH + DAY <= m1[path][2] // 10**9 < BASE_EPOCH + 2 * DAY  # type: ignore[index]

    assert set(before) - set(after), "some messages are deleted"

    moved = {k for k in set(before) & set(after) if before[k] != after[k]}
    assert moved
    for key in moved:
        old, new = before[key], after[key]
        assert m0[old] == m1[new]  # same bytes and mtime: a rename
        assert new.rsplit("/", 2)[1] == "cur"
        if old.rsplit("/", 2)[1] == "new":
            assert new.endswith(":2,S")
        else:
            assert old.split(":2,")[1] != new.split(":2,")[1]
    for key in set(before) & set(after) - moved:
        assert m0[before[key]] == m1[after[key]]
    n = len(before)
    assert len(delivered) < 0.05 * n and len(moved) < 0.1 * n

    assert m0["pgsql/mail.sql"] != m1["pgsql/mail.sql"]
    dump0, dump1 = days["dump0"], days["dump1"]
    assert isinstance(dump0, dict) and isinstance(dump1, dict)
    rows0 = {row for rows in dump0.values() for row in rows}
    rows1 = {row for rows in dump1.values() for row in rows}
    assert len(rows0 & rows1) > 0.98 * len(rows0)
    assert rows1 - rows0 and rows0 - rows1  # inserted or changed rows; changed ones replaced
    assert sum(map(len, dump1.values())) > sum(map(len, dump0.values()))  # inserted
    for rows in dump1.values():
        ids = [int(row.split(b"\t", 1)[0]) for row in rows]
        assert ids == sorted(set(ids))  # still ordered by id, no duplicates

    es0 = {p for p in m0 if p.startswith("es/") and p.endswith(".cfs")}
    es1 = {p for p in m1 if p.startswith("es/") and p.endswith(".cfs")}
    assert es1 - es0, "new segments"
    assert es0 - es1, "merged segments removed"
    for path in es0 & es1:
        assert m0[path] == m1[path]
    commits0 = {p for p in m0 if "/segments_" in p}
    commits1 = {p for p in m1 if "/segments_" in p}
    assert commits0 != commits1


def test_refuses_to_go_back_or_mix(days: dict[str, object], tmp_path: Path) -> None:
    stepwise, m2 = days["stepwise"], days["manifest2"]
    assert isinstance(stepwise, Path)
    back = gen(stepwise, 1, check=2)
    assert len(back.stderr.strip().splitlines()) == 1 and "day 2" in back.stderr
    other_seed = gen(stepwise, 3, "--seed", "7", check=2)
    assert len(other_seed.stderr.strip().splitlines()) == 1 and "seed" in other_seed.stderr
    other_scale = subprocess.run(
        [sys.executable, str(SCRIPT), str(stepwise), "--scale", "0.02", "--day", "3"],
        capture_output=True, text=True, timeout=60)
    assert other_scale.returncode == 2 and "scale" in other_scale.stderr
    same = gen(stepwise, 2)
    assert "nothing to do" in same.stderr
    assert manifest(stepwise) == m2

    stranger = tmp_path / "not-a-corpus"
    stranger.mkdir()
    (stranger / "precious").write_text("keep me")
    refused = gen(stranger, 0, check=2)
    assert len(refused.stderr.strip().splitlines()) == 1
    assert os.listdir(stranger) == ["precious"]
