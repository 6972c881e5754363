#!/usr/bin/env python3
"""Measure the mount: mount time, find, cold/warm sequential reads, tar, RSS.

    .venv/bin/python scripts/bench_mount.py [--files 30000] [--big-mb 300] [--dir D]
        [--encryption none|repokey|both] [--repeats N]

Generates a tree of small mail-like files plus two large files (text-like and
random), backs it up, mounts the repository as a daemon and prints figures.
Dropping the page cache for cold reads needs root; without it "cold" reads
are only cold for the mount's own caches.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench import drop_caches  # noqa: E402 - the benchmark's own helper, one copy

HISTFS = [sys.executable, "-m", "histfs"]


def make_tree(src: Path, files: int, big_mb: int) -> int:
    rng = random.Random(42)
    words = [b"the", b"mail", b"server", b"backup", b"Received:", b"from", b"by", b"with",
             b"id", b"Subject:", b"meeting", b"report", b"invoice", b"hello", b"regards"]
    total = 0
    for i in range(files):
        d = src / "mail" / f"user{i % 300:03d}" / ("cur" if i % 3 else "new")
        d.mkdir(parents=True, exist_ok=True)
        body = b" ".join(rng.choice(words) for _ in range(rng.randint(100, 1500)))
        (d / f"{1700000000 + i}.M{i}P1.mx1:2,S").write_bytes(body)
        total += len(body)
    (src / "pgsql").mkdir(parents=True)
    line = b"INSERT INTO messages VALUES (%d, 'user%d', 'subject %d', now());\n"
    with open(src / "pgsql" / "dump.sql", "wb") as f:
        n = 0
        while f.tell() < big_mb * 1024 * 1024:
            f.write(b"".join(line % (n + k, (n + k) % 977, n + k) for k in range(10000)))
            n += 10000
    (src / "es").mkdir()
    with open(src / "es" / "segment.bin", "wb") as f:
        for _ in range(big_mb):
            f.write(os.urandom(1024 * 1024))
    return total + 2 * big_mb * 1024 * 1024


def timed(cmd: list[str], **kw: object) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - t


def read_file(path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    with open(path, "rb", buffering=0) as f:
        while block := f.read(1 << 20):
            n += len(block)
    return time.perf_counter() - t, n


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(work: Path, src: Path, size: int, files: int, big_mb: int, encryption: str,
            say: bool) -> dict[str, float]:
    """Back up `src` into a new repository with `encryption`, mount it and
    measure; figures by name (seconds, or rates where named so)."""
    env = {**os.environ, "HISTFS_CACHE_DIR": str(work / f"cache-{encryption}"),
           "HISTFS_PASSPHRASE": "benchmark passphrase"}
    repo, mnt = work / f"repo-{encryption}", work / f"mnt-{encryption}"
    for p in (repo, env["HISTFS_CACHE_DIR"]):
        shutil.rmtree(p, ignore_errors=True)
    mnt.mkdir(exist_ok=True)
    got: dict[str, float] = {}

    def show(line: str) -> None:
        if say:
            print(f"[{encryption}] {line}")

    subprocess.run([*HISTFS, "init", "--encryption", encryption, str(repo)], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    drop_caches()
    t = timed([*HISTFS, "backup", "--repo", str(repo), "--host", "mx1", "--quiet",
               f"mail={src / 'mail'}", f"pgsql={src / 'pgsql'}", f"es={src / 'es'}"], env=env)
    got["backup MB/s"] = size / t / 1e6
    show(f"backup            {t:6.2f} s  {size / t / 1e6:7.1f} MB/s  "
         f"({files} files, {size / 1e6:.0f} MB)")
    pid_file = work / "pid"
    t0 = time.perf_counter()
    subprocess.run([*HISTFS, "mount", "--repo", str(repo), "--pid-file", str(pid_file),
                    str(mnt)], check=True, env=env)
    try:
        os.listdir(mnt)
        show(f"mount             {time.perf_counter() - t0:6.2f} s  (until the root lists)")
        pid = int(pid_file.read_text())
        (snap,) = [n for n in os.listdir(mnt / "mx1") if n != "last"]
        base = mnt / "mx1" / snap
        t = time.perf_counter()
        out = subprocess.run(["find", str(base)], check=True, capture_output=True).stdout
        entries = out.count(b"\n")
        t = time.perf_counter() - t
        got["find entries/s"] = entries / t
        show(f"find              {t:6.2f} s  {entries / t:9.0f} entries/s")
        for name in ("pgsql/dump.sql", "es/segment.bin"):
            cold = drop_caches()
            t, n = read_file(base / name)
            got[f"read {name} cold MB/s"] = n / t / 1e6
            show(f"read {name:<14}{t:6.2f} s  {n / t / 1e6:7.1f} MB/s  "
                 f"({'cold' if cold else 'page cache not dropped'})")
            t, n = read_file(base / name)
            show(f"read {name:<14}{t:6.2f} s  {n / t / 1e6:7.1f} MB/s  (warm)")
        drop_caches()
        t = timed(["tar", "-cf", "/dev/null", "-C", str(base), "mail"])
        got["tar mail files/s"] = files / t
        mail_bytes = size - 2 * big_mb * 1024 * 1024
        show(f"tar mail          {t:6.2f} s  {files / t:9.0f} files/s  "
             f"{mail_bytes / t / 1e6:7.1f} MB/s")
        show(f"mount peak RSS    {rss_mb(pid):6.1f} MB")
    finally:
        subprocess.run([*HISTFS, "umount", str(mnt)], env=env, capture_output=True)
        time.sleep(0.5)
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=30000)
    ap.add_argument("--big-mb", type=int, default=300)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--encryption", choices=["none", "repokey", "both"], default="none",
                    help="both: measure each on the same tree, interleaved, and compare")
    ap.add_argument("--repeats", type=int, default=1, help="runs per mode (medians)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="histfs-bench-", dir=args.dir))
    src = work / "src"
    modes = ["none", "repokey"] if args.encryption == "both" else [args.encryption]
    try:
        size = make_tree(src, args.files, args.big_mb)
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        for _ in range(args.repeats):
            for mode in modes:
                runs[mode].append(measure(work, src, size, args.files, args.big_mb, mode,
                                          say=True))
        if len(modes) == 2:
            print(f"\nmedians of {args.repeats} run(s); repokey/none: above 1 is faster")
            for metric in runs["none"][0]:
                a = statistics.median(r[metric] for r in runs["none"])
                b = statistics.median(r[metric] for r in runs["repokey"])
                print(f"{metric:<28} none {a:10.1f}  repokey {b:10.1f}  ratio {b / a:5.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
