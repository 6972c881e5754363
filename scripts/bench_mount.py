#!/usr/bin/env python3
"""Measure the mount: mount time, find, cold/warm sequential reads, tar, RSS.

    .venv/bin/python scripts/bench_mount.py [--files 30000] [--big-mb 300] [--dir D]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=30000)
    ap.add_argument("--big-mb", type=int, default=300)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="histfs-bench-", dir=args.dir))
    env = {**os.environ, "HISTFS_CACHE_DIR": str(work / "cache")}
    src, repo, mnt = work / "src", work / "repo", work / "mnt"
    mnt.mkdir()
    try:
        size = make_tree(src, args.files, args.big_mb)
        subprocess.run([*HISTFS, "init", str(repo)], check=True, env=env, stdout=subprocess.DEVNULL)
        t = timed([*HISTFS, "backup", "--repo", str(repo), "--host", "mx1", "--quiet",
                   f"mail={src / 'mail'}", f"pgsql={src / 'pgsql'}", f"es={src / 'es'}"], env=env)
        print(f"backup            {t:6.2f} s  {size / t / 1e6:7.1f} MB/s  "
              f"({args.files} files, {size / 1e6:.0f} MB)")
        pid_file = work / "pid"
        t0 = time.perf_counter()
        subprocess.run([*HISTFS, "mount", "--repo", str(repo), "--pid-file", str(pid_file),
                        str(mnt)], check=True, env=env)
        os.listdir(mnt)
        print(f"mount             {time.perf_counter() - t0:6.2f} s  (until the root lists)")
        pid = int(pid_file.read_text())
        (snap,) = [n for n in os.listdir(mnt / "mx1") if n != "last"]
        base = mnt / "mx1" / snap
        t = time.perf_counter()
        out = subprocess.run(["find", str(base)], check=True, capture_output=True).stdout
        entries = out.count(b"\n")
        t = time.perf_counter() - t
        print(f"find              {t:6.2f} s  {entries / t:9.0f} entries/s")
        for name in ("pgsql/dump.sql", "es/segment.bin"):
            cold = drop_caches()
            t, n = read_file(base / name)
            print(f"read {name:<14}{t:6.2f} s  {n / t / 1e6:7.1f} MB/s  "
                  f"({'cold' if cold else 'page cache not dropped'})")
            t, n = read_file(base / name)
            print(f"read {name:<14}{t:6.2f} s  {n / t / 1e6:7.1f} MB/s  (warm)")
        drop_caches()
        t = timed(["tar", "-cf", "/dev/null", "-C", str(base), "mail"])
        mail_bytes = size - 2 * args.big_mb * 1024 * 1024
        print(f"tar mail          {t:6.2f} s  {args.files / t:9.0f} files/s  "
              f"{mail_bytes / t / 1e6:7.1f} MB/s")
        print(f"mount peak RSS    {rss_mb(pid):6.1f} MB")
    finally:
        subprocess.run([*HISTFS, "umount", str(mnt)], env=env, capture_output=True)
        time.sleep(0.5)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
