#!/usr/bin/env python3
"""Measure the mount: mount time, find, cold/warm sequential reads, tar, RSS.

    .venv/bin/python scripts/bench_mount.py [--files 30000] [--big-mb 300] [--dir D]
        [--encryption none|repokey|both] [--storage local|s3|both] [--repeats N]

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


_runs = 0


def measure(work: Path, src: Path, size: int, files: int, big_mb: int, encryption: str,
            say: bool, s3: str | None = None) -> dict[str, float]:
    """Back up `src` into a new repository with `encryption` (in a directory,
    or in the bucket at endpoint `s3`), mount it and measure; figures by
    name (seconds, or rates where named so)."""
    global _runs
    _runs += 1
    label = f"{'s3' if s3 else 'local'}/{encryption}"
    env = {**os.environ, "HISTFS_CACHE_DIR": str(work / f"cache-{_runs}"),
           "HISTFS_PASSPHRASE": "benchmark passphrase"}
    if s3:
        env.update(HISTFS_S3_ENDPOINT=s3, AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    repo = f"s3://{BUCKET}/run-{_runs}" if s3 else str(work / f"repo-{_runs}")
    mnt = work / f"mnt-{_runs}"
    shutil.rmtree(env["HISTFS_CACHE_DIR"], ignore_errors=True)
    mnt.mkdir(exist_ok=True)
    got: dict[str, float] = {}

    def show(line: str) -> None:
        if say:
            print(f"[{label}] {line}")

    subprocess.run([*HISTFS, "init", "--encryption", encryption, repo], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    drop_caches()
    t = timed([*HISTFS, "backup", "--repo", str(repo), "--host", "mx1", "--quiet",
               f"mail={src / 'mail'}", f"pgsql={src / 'pgsql'}", f"es={src / 'es'}"], env=env)
    got["backup MB/s"] = size / t / 1e6
    show(f"backup            {t:6.2f} s  {size / t / 1e6:7.1f} MB/s  "
         f"({files} files, {size / 1e6:.0f} MB)")
    pid_file = work / "pid"
    t0 = time.perf_counter()
    subprocess.run([*HISTFS, "mount", "--repo", repo, "--pid-file", str(pid_file),
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
        if not s3:
            shutil.rmtree(repo, ignore_errors=True)
    return got


BUCKET = "histfs-bench"


def start_s3(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A moto S3 server on a free local port, with the benchmark's bucket."""
    import socket

    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                 aws_secret_access_key="bench", region_name="us-east-1"
                 ).create_bucket(Bucket=BUCKET)
    return proc, endpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=30000)
    ap.add_argument("--big-mb", type=int, default=300)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--encryption", choices=["none", "repokey", "both"], default="none",
                    help="both: measure each on the same tree, interleaved, and compare")
    ap.add_argument("--repeats", type=int, default=1, help="runs per mode (medians)")
    ap.add_argument("--storage", choices=["local", "s3", "both"], default="local",
                    help="s3: a bucket on a local S3 server (moto_server, started here)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="histfs-bench-", dir=args.dir))
    src = work / "src"
    modes = ["none", "repokey"] if args.encryption == "both" else [args.encryption]
    places = ["local", "s3"] if args.storage == "both" else [args.storage]
    variants = [(p, m) for p in places for m in modes]
    server = None
    try:
        endpoint = None
        if "s3" in places:
            server, endpoint = start_s3(work)
        size = make_tree(src, args.files, args.big_mb)
        runs: dict[tuple[str, str], list[dict[str, float]]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for place, mode in variants:
                runs[(place, mode)].append(measure(
                    work, src, size, args.files, args.big_mb, mode, say=True,
                    s3=endpoint if place == "s3" else None))
        if len(variants) > 1:
            base = variants[0]
            print(f"\nmedians of {args.repeats} run(s); ratios to {base[0]}/{base[1]}, "
                  "above 1 is faster")
            for metric in runs[base][0]:
                a = statistics.median(r[metric] for r in runs[base])
                cells = [f"{base[0]}/{base[1]} {a:10.1f}"]
                for v in variants[1:]:
                    b = statistics.median(r[metric] for r in runs[v])
                    cells.append(f"{v[0]}/{v[1]} {b:10.1f} ({b / a:4.2f})")
                print(f"{metric:<28} " + "  ".join(cells))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
