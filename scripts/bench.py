#!/usr/bin/env python3
"""Side-by-side benchmark of histfs, BorgBackup and restic on one corpus.

    .venv/bin/python scripts/bench.py [--scale 1] [--peers borg,restic]
                                      [--repeat 3] [--days 6] [--json FILE]
    .venv/bin/python scripts/bench.py --postgres 1024

Generates the corpus with scripts/gen_corpus.py (day 0, then one day at a
time), and for every tool that is installed: first backup, the same data
again, one incremental per day, repository size, then the mount (time until
the root lists, `find`, cold and warm reads of the dump, `tar` of the
Maildir, the mount's peak RSS), its own restore command and `cp -a` out of
the mount. Tools run interleaved, step by step, so drift hits all alike;
timings that can be repeated are repeated and the median is reported. The
page cache is dropped before cold runs when this runs as root.

It installs nothing: see the README's performance section for the peers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BORG: str | None = None
"""borg's command when given with --borg (it may live in a venv of its own)."""
PARTS = ("mail", "pgsql", "es")


def drop_caches() -> bool:
    """Empty the page cache (root only)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def run_timed(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
              ) -> tuple[float, float]:
    """Run `cmd`; (wall seconds, peak RSS in MB of the process tree it waited for)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def tree_size(path: Path) -> int:
    """Bytes used on disk below `path`."""
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def corpus_stats(path: Path) -> tuple[int, int]:
    """(files, bytes) of the corpus."""
    files = size = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            if n.startswith(".corpus"):
                continue
            files += 1
            size += os.lstat(os.path.join(dirpath, n)).st_size
    return files, size


def corpus_entries(path: Path) -> int:
    """Files, directories and symbolic links of the corpus."""
    return sum(len(dirs) + len([n for n in names if not n.startswith(".corpus")])
               for _, dirs, names in os.walk(path))


class Tool:
    """One backup program driven through its command line."""

    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work / self.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.repo = self.work / "repo"
        self.mnt = self.work / "mnt"
        self.mount_proc: subprocess.Popen[bytes] | None = None
        self.mount_pid = 0
        self.env = dict(os.environ)
        self.seq = 0

    def fresh(self) -> None:
        """Start over with an empty repository."""
        self.unmount()
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.mnt.mkdir()
        self.init()

    def init(self) -> None:
        raise NotImplementedError

    def backup(self, corpus: Path) -> tuple[float, float]:
        raise NotImplementedError

    def backup_stdin(self, command: str, name: str) -> tuple[float, float]:
        """Back up what the shell command `command` writes, as one file
        `name`, the way its users stream a database dump in."""
        raise NotImplementedError

    def restore(self, target: Path) -> float:
        raise NotImplementedError

    def mount(self) -> float:
        """Mount; seconds until the root lists."""
        raise NotImplementedError

    def snapshot_dir(self) -> Path:
        """The newest snapshot's root inside the mount (holding mail/ pgsql/ es/)."""
        raise NotImplementedError

    def all_snapshot_dirs(self) -> list[Path]:
        """Every snapshot's root inside the mount, oldest first."""
        raise NotImplementedError

    def _mount_foreground(self, cmd: list[str]) -> float:
        t = time.perf_counter()
        self.mount_proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
        self.mount_pid = self.mount_proc.pid
        while True:
            if self.mount_proc.poll() is not None:
                raise RuntimeError(f"{self.name} mount exited")
            if os.path.ismount(self.mnt):
                try:
                    if os.listdir(self.mnt):
                        return time.perf_counter() - t
                except OSError:
                    pass
            time.sleep(0.005)

    def mount_rss(self) -> float:
        """Peak RSS of the mount process in MB."""
        try:
            for line in Path(f"/proc/{self.mount_pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def unmount(self) -> None:
        if os.path.ismount(self.mnt) and subprocess.run(
                ["fusermount3", "-u", str(self.mnt)], capture_output=True).returncode:
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)
        if self.mount_proc is not None:
            try:
                self.mount_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.mount_proc.kill()
                self.mount_proc.wait()
            self.mount_proc = None
        elif self.mount_pid:
            for _ in range(300):
                if not Path(f"/proc/{self.mount_pid}").exists():
                    break
                time.sleep(0.1)
        self.mount_pid = 0


class Histfs(Tool):
    name = "histfs"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.env["HISTFS_CACHE_DIR"] = str(work / "histfs-cache")
        self.exe = str(BIN / "histfs")

    def fresh(self) -> None:
        shutil.rmtree(self.env["HISTFS_CACHE_DIR"], ignore_errors=True)
        super().fresh()

    def init(self) -> None:
        subprocess.run([self.exe, "init", "--encryption", "none", str(self.repo)],
                       env=self.env, check=True, stdout=subprocess.DEVNULL)

    def backup(self, corpus: Path) -> tuple[float, float]:
        # As an administrator would configure it: the dump in small chunks,
        # so that rows changed in scattered places cost kilobytes, not the
        # whole file (README, "Chunk sizes").
        config = self.work / "histfs.toml"
        config.write_text("".join(
            f'[[part]]\nname = "{p}"\npath = "{corpus / p}"\n'
            + ('chunk_size = "16KiB"\n' if p == "pgsql" else "") for p in PARTS))
        return run_timed([self.exe, "backup", "--repo", str(self.repo), "--host", "bench",
                          "--quiet", "--config", str(config)], env=self.env)

    def restore(self, target: Path) -> float:
        return run_timed([self.exe, "restore", "--repo", str(self.repo), "--host", "bench",
                          "last", "--target", str(target)], env=self.env)[0]

    def mount(self, host: str | None = "bench") -> float:
        return self._mount_foreground([self.exe, "mount", "--foreground", "--repo",
                                       str(self.repo), *(["--host", host] if host else []),
                                       str(self.mnt)])

    def snapshot_dir(self) -> Path:
        return self.all_snapshot_dirs()[-1]

    def all_snapshot_dirs(self) -> list[Path]:
        return [self.mnt / n for n in sorted(os.listdir(self.mnt)) if n != "last"]


class Borg(Tool):
    name = "borg"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.exe = BORG or (str(BIN / "borg") if (BIN / "borg").exists() else "borg")
        self.env.update(BORG_BASE_DIR=str(work / "borg-base"),
                        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")

    def fresh(self) -> None:
        shutil.rmtree(self.env["BORG_BASE_DIR"], ignore_errors=True)
        super().fresh()

    def init(self) -> None:
        subprocess.run([self.exe, "init", "-e", "none", str(self.repo)], env=self.env,
                       check=True, capture_output=True)

    def backup(self, corpus: Path) -> tuple[float, float]:
        self.seq += 1
        return run_timed([self.exe, "create", "--compression", "zstd,3",
                          f"{self.repo}::a{self.seq:04d}", *PARTS], cwd=corpus, env=self.env)

    def backup_stdin(self, command: str, name: str) -> tuple[float, float]:
        # Chunks of 16 KiB on average (2^14), as histfs's dump parts have.
        self.seq += 1
        borg = shlex.quote(self.exe)
        return run_timed(["/bin/bash", "-c", f"set -o pipefail; {command} | {borg} create "
                          "--compression zstd,3 --chunker-params buzhash,12,16,14,4095 "
                          f"--stdin-name {shlex.quote(name)} "
                          f"{shlex.quote(f'{self.repo}::a{self.seq:04d}')} -"], env=self.env)

    def restore(self, target: Path) -> float:
        target.mkdir(parents=True, exist_ok=True)
        return run_timed([self.exe, "extract", f"{self.repo}::a{self.seq:04d}"], cwd=target,
                         env=self.env)[0]

    def mount(self) -> float:
        return self._mount_foreground([self.exe, "mount", "-f", str(self.repo),
                                       str(self.mnt)])

    def snapshot_dir(self) -> Path:
        return self.mnt / f"a{self.seq:04d}"

    def all_snapshot_dirs(self) -> list[Path]:
        return [self.mnt / n for n in sorted(os.listdir(self.mnt))]


class Restic(Tool):
    name = "restic"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.exe = "restic"
        self.env.update(RESTIC_PASSWORD="bench", RESTIC_CACHE_DIR=str(work / "restic-cache"))

    def fresh(self) -> None:
        shutil.rmtree(self.env["RESTIC_CACHE_DIR"], ignore_errors=True)
        super().fresh()

    def init(self) -> None:
        subprocess.run([self.exe, "init", "-r", str(self.repo)], env=self.env, check=True,
                       capture_output=True)

    def backup(self, corpus: Path) -> tuple[float, float]:
        return run_timed([self.exe, "-r", str(self.repo), "backup", "-q", "--host", "bench",
                          *PARTS], cwd=corpus, env=self.env)

    def backup_stdin(self, command: str, name: str) -> tuple[float, float]:
        # restic's chunk size is fixed (1 MiB on average).
        return run_timed(["/bin/bash", "-c", f"set -o pipefail; {command} | {self.exe} -r "
                          f"{shlex.quote(str(self.repo))} backup -q --host bench --stdin "
                          f"--stdin-filename {shlex.quote(name)}"], env=self.env)

    def restore(self, target: Path) -> float:
        return run_timed([self.exe, "-r", str(self.repo), "restore", "latest", "--target",
                          str(target)], env=self.env)[0]

    def mount(self) -> float:
        return self._mount_foreground([self.exe, "-r", str(self.repo), "mount",
                                       str(self.mnt)])

    def snapshot_dir(self) -> Path:
        return Path(os.path.realpath(self.mnt / "snapshots" / "latest"))

    def all_snapshot_dirs(self) -> list[Path]:
        snaps = self.mnt / "snapshots"
        return [snaps / n for n in sorted(os.listdir(snaps)) if n != "latest"]


TOOLS: dict[str, type[Tool]] = {"borg": Borg, "restic": Restic}


def available(name: str) -> bool:
    """Whether a peer's command is installed."""
    if name == "borg":
        if BORG is not None:
            return Path(BORG).exists()
        return (BIN / "borg").exists() or shutil.which("borg") is not None
    return shutil.which(name) is not None


def median(values: list[float]) -> float:
    return statistics.median(values)


def read_file(path: Path) -> float:
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass
    return time.perf_counter() - t


def make_big_file(path: Path, size: int) -> None:
    """`size` bytes of dump-like text, no two MiB alike (compresses ~10x)."""
    line = b"INSERT INTO messages VALUES (%d, 'user%d', 'subject %d of the mailbox', %d);\n"
    with open(path, "wb") as f:
        n = 0
        while f.tell() < size:
            f.write(b"".join(line % (k, k % 977, k * 7, k * 31 % 100003)
                             for k in range(n, n + 20000)))
            n += 20000
        f.truncate(size)


def count_find(path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    out = subprocess.run(["find", str(path)], capture_output=True, check=True).stdout
    return time.perf_counter() - t, out.count(b"\n")


def tar_maildir(path: Path) -> float:
    # Through a pipe: GNU tar skips reading file data when writing to /dev/null.
    t = time.perf_counter()
    tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(path), "mail"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert tar.stdout is not None
    while tar.stdout.read(1 << 20):
        pass
    tar.wait()
    return time.perf_counter() - t


class Bench:
    """Runs the steps and collects results[metric][tool]."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="histfs-bench-", dir=args.dir))
        self.corpus = self.work / "corpus"
        names = ["histfs", *[p for p in args.peers if available(p)]]
        missing = [p for p in args.peers if not available(p)]
        if missing:
            print(f"not installed, left out: {', '.join(missing)}", file=sys.stderr)
        self.tools: list[Tool] = [Histfs(self.work) if n == "histfs" else TOOLS[n](self.work)
                                  for n in names]
        self.results: dict[str, dict[str, float]] = {}
        self.units: dict[str, str] = {}
        self.daily: dict[str, list[float]] = {}
        self.requests: dict[str, tuple[Counter[str], int]] = {}

    def record(self, metric: str, unit: str, tool: Tool, value: float) -> None:
        self.results.setdefault(metric, {})[tool.name] = value
        self.units[metric] = unit
        print(f"  {tool.name:<7} {metric:<34} {value:10.2f} {unit}", file=sys.stderr)

    def gen(self, day: int) -> None:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_corpus.py"),
                        str(self.corpus), "--scale", str(self.args.scale), "--day", str(day)],
                       check=True)

    def each(self, fn: Callable[[Tool], None]) -> None:
        for tool in self.tools:
            fn(tool)

    def run(self) -> None:
        a = self.args
        self.gen(0)
        files, size = corpus_stats(self.corpus)
        print(f"corpus: {files} files, {size / 1e6:.0f} MB", file=sys.stderr)
        # 1. First backup, on fresh repositories, repeated.
        times: dict[str, list[float]] = {t.name: [] for t in self.tools}
        rss: dict[str, list[float]] = {t.name: [] for t in self.tools}
        for _ in range(a.repeat):
            for tool in self.tools:
                tool.fresh()
                drop_caches()
                wall, peak = tool.backup(self.corpus)
                times[tool.name].append(wall)
                rss[tool.name].append(peak)
        for tool in self.tools:
            t = median(times[tool.name])
            self.record("first backup", "s", tool, t)
            self.record("first backup rate", "MB/s", tool, size / t / 1e6)
            self.record("first backup files/s", "files/s", tool, files / t)
            self.record("first backup peak RSS", "MB", tool, max(rss[tool.name]))
        # 2. Nothing changed; as a nightly job finds it, with the page
        # cache dropped before every backup.
        entries = corpus_entries(self.corpus)
        same: dict[str, list[float]] = {t.name: [] for t in self.tools}
        before = {t.name: tree_size(t.repo) for t in self.tools}
        for _ in range(a.repeat):
            for tool in self.tools:
                drop_caches()
                same[tool.name].append(tool.backup(self.corpus)[0])
        for tool in self.tools:
            self.record("nothing changed", "s", tool, median(same[tool.name]))
            growth = (tree_size(tool.repo) - before[tool.name]) / a.repeat
            self.record("growth when nothing changed", "B/entry", tool, growth / entries)
        # 3. One incremental per day.
        daily: dict[str, list[float]] = {t.name: [] for t in self.tools}
        for day in range(1, a.days + 1):
            self.gen(day)
            for tool in self.tools:
                drop_caches()
                daily[tool.name].append(tool.backup(self.corpus)[0])
        for tool in self.tools:
            if daily[tool.name]:
                self.record("daily backup (median)", "s", tool, median(daily[tool.name]))
            self.record("repository size", "MB", tool, tree_size(tool.repo) / 1e6)
        self.daily = daily
        if a.backups_only:
            return
        self.mount_steps(size)
        self.request_step()
        self.restore_steps()
        self.big_file_step()

    def big_file_step(self) -> None:
        """A file of `--big-mb` MiB in 1 MiB chunks, read cold through the
        mount (histfs; the tape job's case: one large file end to end)."""
        mb = self.args.big_mb
        if mb <= 0:
            return
        tool = Histfs(self.work / "big")
        tool.fresh()
        src = tool.work / "src"
        src.mkdir()
        make_big_file(src / "dump.sql", mb << 20)
        config = tool.work / "big.toml"
        config.write_text(f'[[part]]\nname = "dump"\npath = "{src}"\nchunk_size = "1MiB"\n')
        run_timed([tool.exe, "backup", "--repo", str(tool.repo), "--host", "bench", "--quiet",
                   "--config", str(config)], env=tool.env)
        shutil.rmtree(src)
        rates = []
        try:
            tool.mount()
            path = tool.snapshot_dir() / "dump" / "dump.sql"
            for _ in range(self.args.repeat):
                drop_caches()
                rates.append((mb << 20) / read_file(path) / 1e6)
            self.record(f"{mb} MiB file of 1 MiB chunks, cold read", "MB/s", tool,
                        median(rates))
            self.record("mount peak RSS after it", "MB", tool, tool.mount_rss())
        finally:
            tool.unmount()

    def request_step(self) -> None:
        """Kernel requests of histfs's mount per reader, over `last/mail`."""
        tool = next(t for t in self.tools if isinstance(t, Histfs))
        tool.unmount()
        self.requests = count_requests([tool.exe], tool.env, tool.repo, "bench", "last/mail",
                                       tool.work)
        print(request_table(self.requests), file=sys.stderr)

    def mount_steps(self, size: int) -> None:
        a = self.args
        for tool in self.tools:
            starts, finds, colds, warms, tars = [], [], [], [], []
            entries = 0
            for _ in range(a.repeat):
                tool.unmount()
                drop_caches()
                starts.append(tool.mount())
                snap = tool.snapshot_dir()
                t, entries = count_find(snap)
                finds.append(entries / t)
                dump = snap / "pgsql" / "mail.sql"
                dump_size = dump.stat().st_size
                drop_caches()
                colds.append(dump_size / read_file(dump) / 1e6)
                warms.append(dump_size / read_file(dump) / 1e6)
                drop_caches()
                mail_files = sum(len(n) for _, _, n in os.walk(snap / "mail"))
                tars.append(mail_files / tar_maildir(snap))
            self.record("mount: root lists", "s", tool, median(starts))
            self.record(f"find ({entries} entries)", "entries/s", tool, median(finds))
            self.record("dump read cold", "MB/s", tool, median(colds))
            self.record("dump read warm", "MB/s", tool, median(warms))
            self.record("tar of Maildir", "files/s", tool, median(tars))
            self.record("mount peak RSS, one walk", "MB", tool, tool.mount_rss())
            snaps = tool.all_snapshot_dirs()
            for snap in snaps:
                count_find(snap)
            self.record(f"mount peak RSS, {len(snaps)} snapshots walked", "MB", tool,
                        tool.mount_rss())

    def restore_steps(self) -> None:
        for tool in self.tools:
            own, cps = [], []
            for k in range(self.args.repeat):
                target = self.work / f"restore-{tool.name}-{k}"
                drop_caches()
                own.append(tool.restore(target))
                shutil.rmtree(target)
                if not os.path.ismount(tool.mnt):
                    tool.mount()
                snap = tool.snapshot_dir()
                target.mkdir()
                drop_caches()
                t = time.perf_counter()
                subprocess.run(["cp", "-a", *(str(snap / p) for p in PARTS), str(target)],
                               check=True)
                cps.append(time.perf_counter() - t)
                shutil.rmtree(target)
            self.record("restore (own command)", "s", tool, median(own))
            self.record("cp -a out of the mount", "s", tool, median(cps))
            tool.unmount()

    def worst_days(self) -> str:
        """histfs's time over each peer's on the day that ratio is highest."""
        mine = self.daily.get("histfs", [])
        return ", ".join(
            f"histfs/{name} {max(h / p for h, p in zip(mine, theirs, strict=True)):.2f}"
            for name, theirs in self.daily.items() if name != "histfs" and theirs and mine)

    def table(self) -> str:
        peers = [t.name for t in self.tools if t.name != "histfs"]
        header = ["metric", "unit", "histfs", *peers, *(f"histfs/{p}" for p in peers)]
        rows = [header, ["---"] * len(header)]
        for metric, values in self.results.items():
            h = values.get("histfs", float("nan"))
            rows.append([metric, self.units[metric], f"{h:.2f}",
                         *(f"{values.get(p, float('nan')):.2f}" for p in peers),
                         *(f"{h / values[p]:.2f}" if values.get(p) else "-" for p in peers)])
        return "\n".join("| " + " | ".join(r) + " |" for r in rows)

    def cleanup(self) -> None:
        for tool in self.tools:
            tool.unmount()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


# -- kernel requests ------------------------------------------------------

OPCODES = {"lookup": "LOOKUP", "getattr": "GETATTR", "open": "OPEN", "read": "READ",
           "flush": "FLUSH", "release": "RELEASE", "getxattr": "GETXATTR",
           "listxattr": "LISTXATTR", "opendir": "OPENDIR", "readdir": "READDIRPLUS",
           "releasedir": "RELEASEDIR", "readlink": "READLINK", "forget": "FORGET",
           "statfs": "STATFS", "access": "ACCESS"}
"""The handlers that `histfs mount --debug` logs, one line a request, by the
name of the kernel's request (readdir answers READDIRPLUS; one FORGET line
may carry a batch)."""

# A request line ends with its arguments; the line logged when it fails
# ends with the error's text instead.
_REQUEST_LINE = re.compile(rb" DEBUG ([a-z]+)\(.*\)$")

WALKS: dict[str, str] = {
    "tar": "tar -cf - -C {parent} {name} | cat >/dev/null",
    "cp -a": "cp -a {src} {dst}",
    "rsync -aHAX": "rsync -aHAX {src} {dst}",
    "find": "find {src} >/dev/null",
    "find, stat later": "find {src} -print0 >{dst}/.list && sleep 1.5 &&"
                        " xargs -0 stat <{dst}/.list >/dev/null",
}
"""The readers the request table is made with, as shell commands. The last
looks at every entry again after the kernel would have forgotten a
one-second answer: what a second walk of `last/` costs."""


def request_counts(log: bytes) -> Counter[str]:
    """Kernel requests per opcode in (part of) a `histfs mount --debug` log."""
    counts: Counter[str] = Counter()
    for line in log.splitlines():
        m = _REQUEST_LINE.search(line)
        if m is not None:
            opcode = OPCODES.get(m.group(1).decode())
            if opcode is not None:
                counts[opcode] += 1
    return counts


def _settled(log: Path, quiet: float = 0.3, limit: float = 10.0) -> bytes:
    """The log once it stopped growing (RELEASE and FORGET are not waited
    for by the reader)."""
    deadline = time.monotonic() + limit
    size = -1
    while time.monotonic() < deadline:
        now = log.stat().st_size
        if now == size:
            break
        size = now
        time.sleep(quiet)
    return log.read_bytes()


def count_requests(exe: list[str], env: dict[str, str], repo: Path, host: str | None,
                   subtree: str, work: Path, walks: dict[str, str] | None = None
                   ) -> dict[str, tuple[Counter[str], int]]:
    """For each reader of `walks` (default `WALKS`): mount `repo` afresh with
    --debug, drop the page cache, let the reader walk `subtree` (a path
    below the mount point) and count the requests it caused. The result
    maps each reader to (requests per opcode, entries walked)."""
    out: dict[str, tuple[Counter[str], int]] = {}
    mnt = work / "requests-mnt"
    for label, template in (walks or WALKS).items():
        mnt.mkdir(parents=True, exist_ok=True)
        log = work / "requests.log"
        log.write_bytes(b"")
        proc = subprocess.Popen(
            [*exe, "mount", "--foreground", "--debug", "--log-file", str(log),
             "--repo", str(repo), *(["--host", host] if host else []), str(mnt)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not os.path.ismount(mnt):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the mount did not come up: {log.read_text()}")
                time.sleep(0.02)
            drop_caches()
            src = mnt / subtree
            dst = work / "requests-copy"
            shutil.rmtree(dst, ignore_errors=True)
            dst.mkdir()
            before = len(_settled(log))
            cmd = template.format(parent=shlex.quote(str(src.parent)),
                                  name=shlex.quote(src.name), src=shlex.quote(str(src)),
                                  dst=shlex.quote(str(dst)))
            subprocess.run(cmd, shell=True, check=True, stderr=subprocess.DEVNULL)
            counts = request_counts(_settled(log)[before:])
            entries = int(subprocess.run(f"find {shlex.quote(str(src))} | wc -l", shell=True,
                                         capture_output=True, check=True).stdout)
            out[label] = (counts, entries)
            shutil.rmtree(dst, ignore_errors=True)
        finally:
            if os.path.ismount(mnt):
                subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return out


def request_table(counts: dict[str, tuple[Counter[str], int]]) -> str:
    """Requests per entry walked, an opcode a row, a reader a column."""
    opcodes = [op for op in OPCODES.values() if any(c[op] for c, _ in counts.values())]
    rows = [["requests per entry", *counts], ["---"] * (len(counts) + 1)]
    for op in opcodes:
        rows.append([op, *(f"{c[op] / max(n, 1):.2f}" for c, n in counts.values())])
    rows.append(["all", *(f"{sum(c.values()) / max(n, 1):.2f}" for c, n in counts.values())])
    rows.append(["entries walked", *(str(n) for _, n in counts.values())])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


# -- scale test -------------------------------------------------------------


def make_flat_tree(root: Path, files: int, per_dir: int = 1000) -> None:
    """`files` small files of distinct content, `per_dir` to a directory."""
    for d in range(0, files, per_dir):
        sub = root / f"d{d // per_dir:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(d, min(files, d + per_dir)):
            fd = os.open(sub / f"message-{i:07d}.eml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o644)
            os.write(fd, b"Subject: %d\n\nbody %d\n" % (i, i))
            os.close(fd)


def change_one_percent(root: Path, files: int, round_no: int) -> None:
    """Append a line to one file in a hundred of a `make_flat_tree` tree
    (another hundredth each round)."""
    for i in range(round_no % 100, files, 100):
        with open(root / f"d{i // 1000:05d}" / f"message-{i:07d}.eml", "ab") as f:
            f.write(b"changed %d\n" % round_no)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def scale_test(args: argparse.Namespace) -> None:
    """How cost grows with the number of files and of snapshots (histfs only)."""
    work = Path(tempfile.mkdtemp(prefix="histfs-scale-", dir=args.dir))
    tool = Histfs(work)
    tool.fresh()
    exe, env, repo = tool.exe, tool.env, str(tool.repo)
    big = args.scale_files
    small = big // 10
    lines: list[tuple[str, str]] = []
    try:
        unchanged: dict[int, float] = {}
        first_rss: dict[int, float] = {}
        for n, host in ((small, "small"), (big, "big")):
            t = time.perf_counter()
            make_flat_tree(work / host, n)
            print(f"made {n} files in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            backup = [exe, "backup", "--repo", repo, "--host", host, "--quiet",
                      f"mail={work / host}"]
            first = run_timed(backup, env=env)
            first_rss[n] = first[1]
            same = [run_timed(backup, env=env) for _ in range(args.repeat)]
            changed = []
            for r in range(args.repeat):
                change_one_percent(work / host, n, r)
                changed.append(run_timed(backup, env=env))
            unchanged[n] = median([wall for wall, _ in same])
            newest = max((tool.repo / "snapshots" / host).glob("*.idx"),
                         key=lambda p: p.name)
            lines.append((f"stored index of the last snapshot, {n} files",
                          f"{newest.stat().st_size / 1e6:.1f} MB "
                          f"({newest.stat().st_size / n:.0f} B a file)"))
            for what, runs in (("first", [first]), ("unchanged", same),
                               ("1%-changed", changed)):
                wall = median([w for w, _ in runs])
                lines.append((f"{what} backup, {n} files",
                              f"{wall:.1f} s ({wall / n * 1e6:.0f} µs a file), peak RSS "
                              f"{max(rss for _, rss in runs):.0f} MB"))
        growth = unchanged[big] / unchanged[small]
        verdict = ("O(n): every file is lstat'ed and every entry written to the new "
                   "index, changed or not" if growth > big / small / 2 else "sublinear")
        lines.append((f"unchanged backup, {big} vs {small} files",
                      f"{growth:.1f}x the time for {big / small:.0f}x the files; {verdict}"))
        lines.append((f"first backup's peak RSS, {big} vs {small} files",
                      f"{first_rss[big] / first_rss[small]:.2f}x for {big / small:.0f}x the "
                      "files"))
        # A host with 100 snapshots next to the big one.
        few = work / "few"
        few.mkdir()
        (few / "one").write_text("1")
        for _ in range(args.snapshots):
            run_timed([exe, "backup", "--repo", repo, "--host", "many", "--quiet",
                       f"etc={few}"], env=env)
        drop_caches()
        start = tool.mount(host=None)
        lines.append((f"mount with {args.snapshots + 2 * (1 + 2 * args.repeat)} snapshots: "
                      "root lists", f"{start:.2f} s"))
        t = time.perf_counter()
        listed = os.listdir(tool.mnt / "many")
        lines.append((f"list a host of {len(listed) - 1} snapshots",
                      f"{(time.perf_counter() - t) * 1000:.1f} ms"))
        snap = sorted(n for n in os.listdir(tool.mnt / "big") if n != "last")[-1]
        root = tool.mnt / "big" / snap
        rng = __import__("random").Random(1)
        lat: list[float] = []
        for _ in range(2000):
            i = rng.randrange(big)
            path = root / "mail" / f"d{i // 1000:05d}" / f"message-{i:07d}.eml"
            t = time.perf_counter()
            os.stat(path)
            lat.append(time.perf_counter() - t)
        lines.append(("lookup of a random path (cold dentry), p50 / p99",
                      f"{percentile(lat, 0.5) * 1e3:.2f} / {percentile(lat, 0.99) * 1e3:.2f} ms"))
        t = time.perf_counter()
        _, entries = count_find(root)
        walk = time.perf_counter() - t
        lines.append((f"find of the {entries}-entry snapshot",
                      f"{walk:.1f} s ({entries / walk:.0f} entries/s)"))
        lines.append(("mount peak RSS after walking it", f"{tool.mount_rss():.0f} MB"))
    finally:
        tool.unmount()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nhistfs scale test, {big} files, {time.strftime('%Y-%m-%d')}, "
          f"{os.cpu_count()} cores\n")
    print("| measure | result |\n|---|---|")
    for k, v in lines:
        print(f"| {k} | {v} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--peers", default="borg,restic",
                    help="comma-separated: borg, restic (those not installed are left out)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--dir", help="where to work (default: the system's temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--borg", help="borg's command, if not on the PATH or beside python")
    ap.add_argument("--big-mb", type=int, default=1024,
                    help="size of the file of 1 MiB chunks read cold (histfs), 0 to skip")
    ap.add_argument("--backups-only", action="store_true",
                    help="only the backup steps (first, nothing changed, daily), no mount")
    ap.add_argument("--requests", action="store_true",
                    help="instead: only the table of kernel requests per reader (histfs)")
    ap.add_argument("--scale-test", action="store_true",
                    help="instead: how histfs's costs grow with files and snapshots")
    ap.add_argument("--scale-files", type=int, default=1_000_000,
                    help="files in the scale test's big tree (default 1,000,000)")
    ap.add_argument("--snapshots", type=int, default=100,
                    help="snapshots of a second host in the scale test (default 100)")
    ap.add_argument("--postgres", type=int, metavar="MB",
                    help="instead: a PostgreSQL dump of MB streamed in, beside pg_dump > "
                         "file and a backup of the file (scripts/bench_postgres.py)")
    args = ap.parse_args()
    global BORG
    BORG = args.borg
    if args.postgres:
        import bench_postgres
        print(bench_postgres.run(args.postgres, args.dir, args.borg))
        return 0
    if args.scale_test:
        scale_test(args)
        return 0
    args.peers = [p for p in args.peers.split(",") if p]
    if args.requests:
        args.peers = []
    bench = Bench(args)
    try:
        if args.requests:
            bench.gen(0)
            bench.tools[0].fresh()
            bench.tools[0].backup(bench.corpus)
            bench.request_step()
        else:
            bench.run()
    finally:
        bench.cleanup()
    if args.requests:
        print(f"\nhistfs kernel requests, scale {args.scale}, {time.strftime('%Y-%m-%d')}\n")
        print(request_table(bench.requests))
        return 0
    print(f"\nhistfs benchmark, scale {args.scale}, {args.repeat} repeats, "
          f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores\n")
    print(bench.table())
    worst = bench.worst_days()
    if worst:
        print(f"\ndaily backups, worst day's ratio: {worst}")
    print("\nratios: histfs/peer; below 1 is better for s and MB, above 1 for rates.")
    if bench.requests:
        print(f"\nhistfs kernel requests per entry of last/mail, each reader on a fresh "
              f"mount, page cache dropped\n\n{request_table(bench.requests)}")
    if args.json:
        requests = {reader: [dict(counts), entries]
                    for reader, (counts, entries) in bench.requests.items()}
        args.json.write_text(json.dumps({"scale": args.scale, "repeat": args.repeat,
                                         "results": bench.results, "units": bench.units,
                                         "requests": requests}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
