#!/usr/bin/env python3
"""A PostgreSQL dump streamed into histfs, beside `pg_dump > file` and a
backup of that file, and beside the same dump piped into borg and restic
where they are installed (run by `scripts/bench.py --postgres MB`, or
alone).

    .venv/bin/python scripts/bench_postgres.py [--mb 1024] [--dir D]

Starts a server of its own (tests/pg_server.py: Debian's postgresql, a
cluster in a temporary directory), fills one table to a plain dump of about
MB megabytes, and backs it up on two days with 0.3% of the rows changed
between them, each way into a repository of its own. Reports the
time and peak RSS of the first day, and the bytes the second day added to
each repository. The file way also needs the dump's size free on disk.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import bench  # noqa: E402
from bench import BIN, TOOLS, available, drop_caches, run_timed, tree_size  # noqa: E402

from tests.pg_server import PgServer, pg_server  # noqa: E402 - the tests' own server

ROW_BYTES = 200
"""About what one row (an int and 192 characters) takes in the dump."""


def _histfs(work: Path, name: str, config: str) -> tuple[list[str], dict[str, str], Path]:
    """The backup command of a repository of its own, and its environment."""
    repo = work / name
    env = {**os.environ, "HISTFS_CACHE_DIR": str(work / f"{name}-cache")}
    subprocess.run([str(BIN / "histfs"), "init", "--encryption", "none", str(repo)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    cfg = work / f"{name}.toml"
    cfg.write_text(config)
    return ([str(BIN / "histfs"), "backup", "--repo", str(repo), "--host", "bench", "--quiet",
             "--config", str(cfg)], env, repo)


def measure(mb: int, work: Path) -> dict[str, float]:
    """The figures, by name (s, MB): histfs both ways, and each peer
    installed (borg, restic) given the same dump on its standard input."""
    results: dict[str, float] = {}
    peers = [TOOLS[name](work) for name in TOOLS if available(name)]
    for peer in peers:
        peer.fresh()
    with pg_server() as pg:
        rows = (mb << 20) // ROW_BYTES
        pg.psql("CREATE DATABASE bench")
        pg.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, "
                f"repeat(md5(i::text), 6) FROM generate_series(1, {rows}) AS i", "bench")
        # The first read after a bulk load writes every page again (hint
        # bits), and the server writes its dirty buffers at a checkpoint:
        # both done here, so that neither way measured pays them alone.
        pg.psql("VACUUM (FREEZE, ANALYZE) t", "bench")
        pg.psql("CHECKPOINT")
        streamed = _histfs(work, "streamed", '[[part]]\nname = "pgsql"\nkind = "postgresql"\n'
                           f'host = "{pg.socket_dir}"\nuser = "postgres"\n'
                           'databases = ["bench"]\n')
        dumps = work / "dumps"
        dumps.mkdir()
        via_file = _histfs(work, "via-file", f'[[part]]\nname = "pgsql"\npath = "{dumps}"\n'
                           'chunk_size = "16KiB"\n')
        dump = shlex.join(["pg_dump", *pg.client_args(), "--dbname=bench"])
        for day in (1, 2):
            if day == 2:
                pg.psql("UPDATE t SET v = upper(v) WHERE id % 333 = 0", "bench")
            for peer in peers:
                before = tree_size(peer.repo)
                drop_caches()
                wall, rss = peer.backup_stdin(dump, "bench.sql")
                if day == 1:
                    results[f"{peer.name}: time"] = wall
                    results[f"{peer.name}: peak RSS"] = rss
                else:
                    results[f"{peer.name}: stored on day 2"] = (tree_size(peer.repo) - before) / 1e6
            for label, (cmd, env, repo) in (("streamed", streamed), ("via file", via_file)):
                before = tree_size(repo)
                drop_caches()
                wall, rss = 0.0, 0.0
                if label == "via file":
                    wall, rss = _dump_to_file(pg, dumps / "bench.sql")
                backup_wall, backup_rss = run_timed(cmd, env=env)
                if day == 1:
                    results[f"{label}: time"] = wall + backup_wall
                    results[f"{label}: peak RSS"] = max(rss, backup_rss)
                else:
                    results[f"{label}: stored on day 2"] = (tree_size(repo) - before) / 1e6
        results["dump size"] = (dumps / "bench.sql").stat().st_size / 1e6
    return results


def _dump_to_file(pg: PgServer, path: Path) -> tuple[float, float]:
    """`pg_dump > path`: wall seconds and peak RSS (MB)."""
    with open(path, "wb") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(["pg_dump", *pg.client_args(), "--dbname=bench"], stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"pg_dump failed ({status})")
    return time.perf_counter() - t, usage.ru_maxrss / 1024


def table(mb: int, results: dict[str, float]) -> str:
    """The benchmark's row, as a markdown table."""
    rows = [f"| {mb} MB PostgreSQL dump ({results['dump size']:.0f} MB) | time (s) | "
            "peak RSS (MB) | stored on day 2, 0.3% rows changed (MB) |",
            "|---|---|---|---|"]
    ways = [("streamed", "streamed in (kind = \"postgresql\")"),
            ("via file", "`pg_dump > file`, then a backup of the file"),
            ("borg", "borg: `pg_dump | borg create --stdin-name` (16 KiB chunks)"),
            ("restic", "restic: `pg_dump | restic backup --stdin` (its 1 MiB chunks)")]
    for label, way in ways:
        if f"{label}: time" not in results:
            continue
        rows.append(f"| {way} | {results[f'{label}: time']:.1f} | "
                    f"{results[f'{label}: peak RSS']:.0f} | "
                    f"{results[f'{label}: stored on day 2']:.1f} |")
    return "\n".join(rows)


def run(mb: int, where: str | None, borg: str | None = None) -> str:
    """Measure in a temporary directory under `where`; the table. `borg`:
    borg's command, if not on the PATH or beside python."""
    # The peers are bench.py's, which finds borg through its module's BORG
    # (bench.py run as a script sets its own copy, not this import's).
    bench.BORG = borg
    work = Path(tempfile.mkdtemp(prefix="histfs-bench-pg-", dir=where))
    try:
        return table(mb, measure(mb, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=1024, help="size of the dump (default 1024)")
    ap.add_argument("--dir", help="where to work (default: the system's temp dir)")
    ap.add_argument("--borg", help="borg's command, if not on the PATH or beside python")
    args = ap.parse_args()
    print(run(args.mb, args.dir, args.borg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
