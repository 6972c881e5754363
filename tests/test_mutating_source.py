"""Backups of a source that a thread keeps changing while they run.

A mail server does not stop for its backup: logs and mbox files grow,
expunges shrink files, Maildir and dump scripts replace files by rename,
messages vanish. A thread does all of these, at random, to files of a real
directory while `histfs backup` runs on it in a subprocess, and records
every state each file had. Then: the backup finished (exit 0 or 1, never a
crash), every problem was a counted warning, and each stored file holds a
state its file really had:

- appended files: a prefix of the final content at least as long as the
  file was before the backup;
- truncated files: the original cut at one of the sizes it was truncated
  to (or, when the backup reports it "changed while being read", some
  prefix of the original: it was shrinking under the reader);
- files replaced by rename: exactly one of their versions (each version is
  its own inode, so no read can mix two);
- vanished files: absent, or exactly their content.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from index.model.repository import Repository

KINDS = ("append", "truncate", "replace", "vanish")


class Mutator(threading.Thread):
    """Changes the files of `root` until stopped; remembers their states."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        super().__init__()
        self.root = root
        self.rng = rng
        self.stop = threading.Event()
        self.initial: dict[str, bytes] = {}
        self.sizes: dict[str, set[int]] = {}
        self.versions: dict[str, set[str]] = {}
        self.changes = 0
        for kind in KINDS:
            for i in range(40):
                name = f"{kind}-{i}"
                data = rng.randbytes(rng.randrange(100_000, 1_500_000))
                (root / name).write_bytes(data)
                self.initial[name] = data
                self.sizes[name] = {len(data)}
                self.versions[name] = {hashlib.sha256(data).hexdigest()}

    def run(self) -> None:
        names = sorted(self.initial)
        while not self.stop.is_set():
            name = self.rng.choice(names)
            path = self.root / name
            kind = name.split("-")[0]
            if kind == "append":
                with open(path, "ab") as f:
                    f.write(self.rng.randbytes(self.rng.randrange(1, 30_000)))
            elif kind == "truncate":
                size = min(self.sizes[name])
                if size > 1000:
                    new = self.rng.randrange(size // 2, size)
                    self.sizes[name].add(new)
                    os.truncate(path, new)
            elif kind == "replace":
                data = self.rng.randbytes(self.rng.randrange(1_000, 1_500_000))
                self.versions[name].add(hashlib.sha256(data).hexdigest())
                tmp = self.root / f".{name}.tmp"
                tmp.write_bytes(data)
                os.rename(tmp, path)
            elif path.exists():
                path.unlink()
            self.changes += 1
            self.stop.wait(0.001)


def _check_stored(m: Mutator, stored: dict[str, bytes], warned: set[str]) -> None:
    for name, initial in m.initial.items():
        kind = name.split("-")[0]
        data = stored.get(name)
        if kind == "vanish":
            assert data is None or data == initial, name
            continue
        assert data is not None, f"{name} missing from the snapshot"
        if kind == "append":
            final = (m.root / name).read_bytes()
            assert len(data) >= len(initial) and final.startswith(data), name
        elif kind == "truncate":
            assert initial.startswith(data), name
            assert len(data) in m.sizes[name] or name in warned, (name, len(data))
        else:
            assert hashlib.sha256(data).hexdigest() in m.versions[name], name


@pytest.mark.timeout(300)
def test_source_changing_during_backups(repo: Repository, tmp_path: Path, figures) -> None:
    rng = random.Random(11)
    src = tmp_path / "src"
    src.mkdir()
    totals = {"changes": 0, "warnings": 0, "exit 1": 0}
    for round_ in range(3):
        if round_:
            for p in src.iterdir():
                p.unlink()
        m = Mutator(src, rng)
        m.start()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "histfs", "backup", "--repo", str(repo.root),
                 "--host", "mx1", "--json", f"data={src}"],
                capture_output=True, text=True, timeout=240)
        finally:
            m.stop.set()
            m.join()
        assert proc.returncode in (0, 1), proc.stderr
        assert "Traceback" not in proc.stderr
        summary = json.loads(proc.stdout)
        warnings = summary["warnings"]
        assert isinstance(warnings, list)
        shown = [line for line in proc.stderr.splitlines()
                 if line.startswith("histfs: warning: ")]
        # The command prints the first 50 warnings and a count of the rest.
        assert len(shown) == min(len(warnings), 50) + (len(warnings) > 50), proc.stderr
        assert bool(warnings) == (proc.returncode == 1)
        warned = {w.split(f"{src}/", 1)[1].split(":")[0] for w in warnings
                  if "changed while being read" in w}
        ref = repo.snapshots("mx1")[-1]
        assert ref.name == summary["snapshot"]
        with repo.open_snapshot(ref) as snap:
            stored = {}
            for name, entry_id in snap.children(snap.resolve("data").entry_id):
                e = snap.entry(entry_id)
                stored[name.decode()] = snap.read(e, 0, e.size)
        _check_stored(m, {k: v for k, v in stored.items() if k in m.initial}, warned)
        totals["changes"] += m.changes
        totals["warnings"] += len(warnings)
        totals["exit 1"] += proc.returncode
    assert totals["changes"] > 100, totals
    figures(f"3 backups of 160 files under {totals['changes']} changes (appends, "
            f"truncations, replacements, deletions): {totals['warnings']} warnings, "
            "every stored file a state it really had")
