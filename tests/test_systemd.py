"""The units in scripts/systemd: systemd itself finds nothing wrong with them
(`systemd-analyze verify`, with the histfs path pointed at this checkout),
every histfs command line in them parses with today's options, and they do
what they say when their command lines are run as systemd runs them: the
backup unit with nothing but a configuration file, the weekly check reading
a different part each week, the notification mailing and calling a URL; and
the example post-backup hook really places its hold."""

from __future__ import annotations

import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from histfs.parser import build_parser
from tests.conftest import ROOT, backup_json, histfs

UNITS = ROOT / "scripts" / "systemd"
INSTALLED = "/usr/local/bin/histfs"
NOTIFY = "/usr/local/bin/histfs-notify"
HERE = str(Path(sys.executable).parent / "histfs")
WEEK = 604800


def _environment(unit: Path) -> dict[str, str]:
    env = {}
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            name, _, val = value.partition("=")
            env[name] = val
    return env


def _expand(value: str, env: dict[str, str], instance: str) -> list[str]:
    """A command line of a unit as systemd hands it to exec: `${VAR}` from
    the environment, `$$` a dollar, the specifiers `%i`, `%n` and `%%`."""
    for name, val in env.items():
        value = value.replace("${" + name + "}", val)
    value = value.replace("$$", "$")
    value = re.sub(r"%([%in])", lambda m: {"%": "%", "i": instance,
                                             "n": instance}[m.group(1)], value)
    return shlex.split(value)


def _exec_lines(unit: Path, env: dict[str, str] | None = None,
                instance: str = "x.service") -> list[list[str]]:
    """Every Exec…= command of `unit`, in the order of the file, expanded
    with its Environment= values (`env` put over them)."""
    values = {**_environment(unit), **(env or {})}
    return [_expand(value, values, instance)
            for line in unit.read_text().splitlines()
            for key, _, value in [line.partition("=")] if key.startswith("Exec")]


def _run_unit(unit: Path, env: dict[str, str], path: str = "", here: str = HERE) -> list[
        subprocess.CompletedProcess[str]]:
    """Run `unit`'s commands one after the other as a oneshot service would,
    with histfs from this checkout (or `here`), until one fails
    (SuccessExitStatus= for the main command)."""
    ok = {0, *(int(code) for line in unit.read_text().splitlines()
               if line.startswith("SuccessExitStatus=") for code in line[18:].split())}
    full = {**os.environ, **_environment(unit), **env,
            "PATH": f"{path}{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = []
    for argv in _exec_lines(unit, env):
        argv = [here if a == INSTALLED else a.replace(INSTALLED + " ", here + " ")
                for a in argv]
        proc = subprocess.run(argv, env=full, capture_output=True, text=True, timeout=120)
        done.append(proc)
        if proc.returncode not in ok:
            break
    return done


@pytest.mark.timeout(60)
def test_every_histfs_command_in_the_units_parses(tmp_path: Path) -> None:
    # The commands inside `sh -c` are found by running the shell with a
    # histfs that writes down its arguments.
    record = tmp_path / "argv"
    fake = tmp_path / "histfs"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {record}\n')
    fake.chmod(0o755)
    config = tmp_path / "histfs.toml"
    config.write_text('repository = "/r"\n[retention]\nkeep_last = 1\n')
    commands = []
    for unit in sorted(UNITS.glob("*.service")):
        for argv in _exec_lines(unit, {"HISTFS_CONFIG": str(config)}):
            if argv[0] == INSTALLED:
                commands.append(argv[1:])
            elif argv[0] == "/bin/sh":
                record.unlink(missing_ok=True)
                sh = [a.replace(INSTALLED, str(fake)) for a in argv]
                subprocess.run(sh, check=True, timeout=20, capture_output=True)
                commands += [line.split() for line in record.read_text().splitlines()]
    assert sorted({argv[0] for argv in commands}) == ["backup", "check", "gc", "mount", "prune",
                                                     "umount"]
    for argv in commands:
        build_parser().parse_args(argv)  # exits (SystemExit) on an unknown option
    for name in ("histfs-backup.timer", "histfs-check.timer"):
        timer = (UNITS / name).read_text()
        assert "Persistent=true" in timer and "RandomizedDelaySec=" in timer
    assert "OnCalendar=Sun " in (UNITS / "histfs-check.timer").read_text()
    for name in ("histfs-backup.service", "histfs-check.service"):
        assert "OnFailure=histfs-notify@%n.service" in (UNITS / name).read_text()


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_finds_nothing_wrong(tmp_path: Path) -> None:
    assert os.access(HERE, os.X_OK)
    for unit in UNITS.glob("histfs-*.*"):
        if unit.suffix in (".service", ".timer"):
            # A template is verified as the instance OnFailure= starts.
            name = unit.name.replace("@.", "@histfs-backup.service.")
            (tmp_path / name).write_text(unit.read_text().replace(INSTALLED + " ", HERE + " ")
                                         .replace(NOTIFY, str(UNITS / "histfs-notify")))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["histfs-backup.service", "histfs-backup.timer", "histfs-check.service",
                     "histfs-check.timer", "histfs-mount.service",
                     "histfs-notify@histfs-backup.service.service"]
    proc = subprocess.run(["systemd-analyze", "verify", *sorted(map(str, tmp_path.iterdir()))],
                          capture_output=True, text=True, timeout=50)
    ours = [line for line in proc.stderr.splitlines() if "histfs" in line]
    assert proc.returncode == 0 and not ours, proc.stderr


@pytest.mark.timeout(180)
def test_backup_unit_needs_only_a_config_file(tmp_path: Path) -> None:
    repo, src, config = tmp_path / "repo", tmp_path / "src", tmp_path / "histfs.toml"
    src.mkdir()
    (src / "a").write_text("a")
    histfs("init", "--encryption", "none", str(repo), check=0)
    config.write_text(f'repository = "{repo}"\n[[part]]\nname = "mail"\npath = "{src}"\n')
    unit = UNITS / "histfs-backup.service"
    env = {"HISTFS_CONFIG": str(config), "HISTFS_PASSPHRASE_FILE": str(tmp_path / "none")}
    for _ in range(2):
        runs = _run_unit(unit, env)
        assert [p.returncode for p in runs] == [0, 0, 0], [(p.stdout, p.stderr) for p in runs]
    assert f"no retention policy in {config}: every snapshot is kept" in runs[1].stdout
    listing = histfs("snapshots", "--repo", str(repo), "--json", check=0).stdout
    assert listing.count('"name"') == 2
    # With a policy the same unit prunes and collects.
    config.write_text(config.read_text() + "[retention]\nkeep_last = 1\n")
    (src / "b").write_text("b")
    runs = _run_unit(unit, env)
    assert [p.returncode for p in runs] == [0, 0, 0], [(p.stdout, p.stderr) for p in runs]
    assert "2 removed" in runs[1].stderr
    assert "freed" in runs[2].stdout
    listing = histfs("snapshots", "--repo", str(repo), "--json", check=0).stdout
    assert listing.count('"name"') == 1


@pytest.mark.timeout(300)
def test_check_unit_reads_another_part_each_week(tmp_path: Path) -> None:
    repo, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    histfs("init", "--encryption", "none", str(repo), check=0)
    for i in range(12):
        (src / f"f{i}").write_bytes(os.urandom(20_000))
        backup_json(repo, f"mail={src}")
    packs = sum(1 for p in (repo / "packs").rglob("*") if p.is_file())
    config = tmp_path / "histfs.toml"  # the unit finds the repository in it
    config.write_text(f'repository = "{repo}"\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv"
    wrapper = tmp_path / "histfs"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {record}\nexec {HERE} "$@"\n')
    wrapper.chmod(0o755)
    date = bin_dir / "date"
    monday = 1_767_571_200  # 2026-01-05 00:00 UTC, a Monday
    read = 0
    for week in range(4):
        # Sunday 05:00 of each week, when the timer starts it.
        date.write_text(f"#!/bin/sh\necho {monday + week * WEEK + 6 * 86400 + 5 * 3600}\n")
        date.chmod(0o755)
        runs = _run_unit(UNITS / "histfs-check.service", {"HISTFS_CONFIG": str(config)},
                         path=f"{bin_dir}:", here=str(wrapper))
        assert [p.returncode for p in runs] == [0], [(p.stdout, p.stderr) for p in runs]
        assert "repository is sound" in runs[0].stdout
        wanted = re.search(r"reading (\d+) of (\d+) packs", runs[0].stderr)
        assert wanted, runs[0].stderr
        read += int(wanted.group(1))
        assert int(wanted.group(2)) == packs
    subsets = [line.split()[-1] for line in record.read_text().splitlines()]
    assert [line.split()[:2] for line in record.read_text().splitlines()] == [
        ["check", "--read-data-subset"]] * 4
    assert sorted(subsets) == ["1/4", "2/4", "3/4", "4/4"], subsets
    assert read == packs  # four weeks read every pack once


class _Hook(http.server.BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    bodies: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.bodies.append((self.path, self.rfile.read(length).decode()))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def monitor() -> Iterator[tuple[str, type[_Hook]]]:
    """A monitoring service's URL on this machine, and what it received."""
    _Hook.bodies, _Hook.status = [], 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/ping/abc/fail", _Hook
    server.shutdown()
    thread.join(5)
    server.server_close()


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_notify_mails_and_calls_the_monitoring_url(
        tmp_path: Path, monitor: tuple[str, type[_Hook]]) -> None:
    url, hook = monitor
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mailbox = tmp_path / "mail"
    fakes = {
        "systemctl": 'case "$1" in show) echo 5f1d;; status) echo "x histfs-backup.service '
                     '- histfs backup"; echo "   Active: failed (Result: exit-code)";; esac',
        "journalctl": 'echo "journalctl $*"; echo "histfs: error: no space left on device"',
        "sendmail": f'echo "sendmail $*" > {mailbox}; cat >> {mailbox}',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    template = UNITS / "histfs-notify@.service"
    [argv] = _exec_lines(template, instance="histfs-backup.service")
    assert argv == [NOTIFY, "histfs-backup.service"]
    argv[0] = str(UNITS / "histfs-notify")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "HISTFS_NOTIFY_MAIL": "root", "HISTFS_NOTIFY_URL": url}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    assert "told root" in proc.stdout and "that histfs-backup.service failed" in proc.stdout
    mail = mailbox.read_text()
    assert mail.startswith("sendmail -t\nTo: root\nSubject: histfs-backup.service failed on ")
    assert "Active: failed" in mail
    assert "_SYSTEMD_INVOCATION_ID=5f1d" in mail  # the log of the failed run only
    assert "no space left on device" in mail
    [(path, body)] = hook.bodies
    assert path == "/ping/abc/fail"
    assert body.startswith("histfs-backup.service failed on ") and "no space left" in body
    # A monitoring service that answers with an error: the unit fails.
    hook.status = 500
    proc = subprocess.run(argv, env={**env, "HISTFS_NOTIFY_MAIL": ""}, capture_output=True,
                          text=True, timeout=50)
    assert proc.returncode == 1 and f"calling {url} failed" in proc.stderr
    # Nothing configured: said in the journal, and the unit fails.
    proc = subprocess.run(argv, env={**env, "HISTFS_NOTIFY_MAIL": "", "HISTFS_NOTIFY_URL": ""},
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == 2 and "/etc/histfs/notify.env" in proc.stderr


@pytest.mark.timeout(120)
def test_example_post_backup_hook_holds_the_new_snapshot(tmp_path: Path) -> None:
    repo, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    histfs("init", "--encryption", "none", str(repo), check=0)
    name = str(backup_json(repo, f"mail={src}")["snapshot"])
    env = {**os.environ, "HISTFS_REPO": str(repo), "HISTFS_HOST": "mx1",
           "HISTFS_SNAPSHOT": name, "HISTFS_STATUS": "success",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([str(UNITS / "histfs-post-backup.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"held mx1/{name} for the tape job" in proc.stdout
    listing = histfs("snapshots", "--repo", str(repo), check=0).stdout
    assert "held: tape" in listing
