"""Shell completion, generated from the parser, run in real bash and zsh."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import histfs


def complete_bash(script: Path, line: list[str], env: dict[str, str]) -> list[str]:
    """What bash offers for the last word of `line` (the word being typed)."""
    words = " ".join(f"'{w}'" for w in line)
    program = (f"source {script}\nCOMP_WORDS=({words})\nCOMP_CWORD={len(line) - 1}\n"
               "_histfs\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.splitlines() if w]


@pytest.fixture
def env_with_histfs(tmp_path: Path) -> dict[str, str]:
    # The scripts call `histfs` (for host names): this checkout's command.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


@pytest.mark.timeout(120)
def test_bash_completes_commands_options_and_hosts(tmp_path: Path,
                                                   env_with_histfs: dict[str, str]) -> None:
    script = tmp_path / "histfs.bash"
    script.write_text(histfs("completion", "bash", check=0).stdout)
    env = env_with_histfs
    assert complete_bash(script, ["histfs", "ba"], env) == ["backup"]
    assert set(complete_bash(script, ["histfs", "--quiet", "re"], env)) == {
        "release", "report", "restore"}
    assert complete_bash(script, ["histfs", "backup", "--metr"], env) == ["--metrics-file"]
    assert complete_bash(script, ["histfs", "--log-file", "/tmp/x", "init", "--en"], env) == [
        "--encryption", "--endpoint"]
    assert complete_bash(script, ["histfs", "key", "ch"], env) == ["change-passphrase"]
    # Commands with actions: the action, then the action's own options.
    assert complete_bash(script, ["histfs", "mailbox", ""], env) == ["list", "restore"]
    assert complete_bash(script, ["histfs", "mailbox", "--"], env) == ["--help"]
    assert complete_bash(script, ["histfs", "mailbox", "restore", "--d"], env) == ["--dry-run"]
    assert complete_bash(script, ["histfs", "key", "export", "--r"], env) == ["--repo"]
    # Host names come from the repository on the line.
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a\n")  # a part with no files is a warning
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    for host in ("mx1", "mx2", "db1"):
        histfs("backup", "--repo", str(repo), "--host", host, f"d={src}", check=0)
    assert complete_bash(script, ["histfs", "snapshots", "--repo", str(repo), "--host", "mx"],
                         env) == ["mx1", "mx2"]
    # Elsewhere: file names.
    (tmp_path / "target-dir").mkdir()
    assert complete_bash(script, ["histfs", "restore", "--target", str(tmp_path / "targ")],
                         env) == [str(tmp_path / "target-dir")]


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_loads_the_script_and_completes(tmp_path: Path,
                                            env_with_histfs: dict[str, str]) -> None:
    """zsh runs the same function through bashcompinit (with ksharrays, as
    its wrapper does); its compgen returns every candidate and zsh's own
    matching keeps those that fit what was typed, which the test does too."""
    script = tmp_path / "_histfs"
    script.write_text(histfs("completion", "zsh", check=0).stdout)

    def offered(*line: str) -> list[str]:
        words = " ".join(line)
        program = (f"autoload -U compinit && compinit -u\nsource {script}\n"
                   f"setopt ksharrays\nCOMP_WORDS=({words}); COMP_CWORD={len(line) - 1}\n"
                   "_histfs\nprint -l -- ${COMPREPLY[@]}\n")
        proc = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True,
                              timeout=60, env=env_with_histfs)
        assert proc.returncode == 0, proc.stderr
        return [w for w in proc.stdout.split() if w.startswith(line[-1])]

    assert offered("histfs", "ba") == ["backup"]
    assert offered("histfs", "backup", "--metr") == ["--metrics-file"]
    assert offered("histfs", "key", "ex") == ["export"]


@pytest.fixture
def two_hosts(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """A repository with two snapshots of mx1 and one of mx2; returns it
    and the snapshot names per host."""
    src = tmp_path / "src"
    (src / "john" / "cur").mkdir(parents=True)
    (src / "john" / "cur" / "1").write_text("1\n")
    (src / "jane").mkdir()
    with open(os.fsencode(src / "jane") + b"/bad\xff", "wb") as f:
        f.write(b"x\n")
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    for host in ("mx1", "mx2", "mx1"):
        histfs("backup", "--repo", str(repo), "--host", host, "--force", f"mail={src}",
               check=0)
    names = {h: [s["name"] for s in json.loads(histfs(
        "snapshots", "--repo", str(repo), "--host", h, "--json", check=0).stdout)]
        for h in ("mx1", "mx2")}
    return repo, names


@pytest.mark.timeout(300)
def test_bash_completes_snapshot_names_and_paths(
        tmp_path: Path, env_with_histfs: dict[str, str],
        two_hosts: tuple[Path, dict[str, list[str]]]) -> None:
    script = tmp_path / "histfs.bash"
    script.write_text(histfs("completion", "bash", check=0).stdout)
    repo, names = two_hosts
    env = env_with_histfs
    r = ["--repo", str(repo)]
    every = [*sorted(set(names["mx1"] + names["mx2"])), "last"]
    mx1 = [*names["mx1"], "last"]
    for line in (["restore", *r, ""], ["diff", *r, ""], ["diff", *r, "last", ""],
                 ["ls", *r, ""], ["hold", *r, "--reason", "tape", ""],
                 ["release", *r, ""], ["forget", *r, "last", ""]):
        assert complete_bash(script, ["histfs", *line], env) == every, line
    # --host on the line narrows; a prefix is completed.
    assert complete_bash(script, ["histfs", "forget", *r, "--host", "mx1", ""], env) == mx1
    assert complete_bash(script, ["histfs", "restore", "--host", "mx2", *r, "la"],
                         env) == ["last"]
    # The repository of a config file, by option or environment.
    cfg = tmp_path / "histfs.toml"
    cfg.write_text(f'repository = "{repo}"\n')
    assert complete_bash(script, ["histfs", "ls", "--config", str(cfg), "--host", "mx2", ""],
                         env) == [*names["mx2"], "last"]
    assert complete_bash(script, ["histfs", "diff", "--host", "mx2", ""],
                         {**env, "HISTFS_CONFIG": str(cfg)}) == [*names["mx2"], "last"]
    # Paths inside a snapshot: of the newest for versions, of the one named
    # for ls and restore (of the newest with --at); the text form of a name
    # that is not UTF-8, which they take back.
    assert complete_bash(script, ["histfs", "versions", *r, "--host", "mx1", ""],
                         env) == ["mail/"]
    assert complete_bash(script, ["histfs", "versions", *r, "--host", "mx1", "mail/j"],
                         env) == ["mail/jane/", "mail/john/"]
    assert complete_bash(script, ["histfs", "ls", *r, "--host", "mx2", names["mx2"][0],
                                  "mail/jane/"], env) == ["mail/jane/bad\\xff"]
    assert complete_bash(script, ["histfs", "restore", *r, "--host", "mx1", "last",
                                  "--target", "/tmp", "mail/john/cur/"],
                         env) == ["mail/john/cur/1"]
    assert complete_bash(script, ["histfs", "restore", *r, "--host", "mx1", "--at",
                                  "2099-01-01", "mail/jo"], env) == ["mail/john/"]
    # Elsewhere: options' values and other commands still complete files.
    assert complete_bash(script, ["histfs", "restore", *r, "last", "--target",
                                  str(tmp_path / "histfs.t")], env) == [str(cfg)]
    assert complete_bash(script, ["histfs", "snapshots", *r, str(tmp_path / "histfs.t")],
                         env) == [str(cfg)]
    # No repository on the line, or one that is not there: nothing, no error.
    assert complete_bash(script, ["histfs", "restore", ""], env) == []
    assert complete_bash(script, ["histfs", "forget", "--repo", str(tmp_path / "none"), ""],
                         env) == []
    assert complete_bash(script, ["histfs", "versions", "--repo", str(tmp_path / "none"),
                                  ""], env) == []


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_snapshot_names_and_paths(
        tmp_path: Path, env_with_histfs: dict[str, str],
        two_hosts: tuple[Path, dict[str, list[str]]]) -> None:
    script = tmp_path / "_histfs"
    script.write_text(histfs("completion", "zsh", check=0).stdout)
    repo, names = two_hosts

    def offered(*line: str) -> list[str]:
        words = " ".join(f"'{w}'" for w in line)
        program = (f"autoload -U compinit && compinit -u\nsource {script}\n"
                   f"setopt ksharrays\nCOMP_WORDS=({words}); COMP_CWORD={len(line) - 1}\n"
                   "_histfs\nprint -rl -- ${COMPREPLY[@]}\n")
        proc = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True,
                              timeout=60, env=env_with_histfs)
        assert proc.returncode == 0, proc.stderr
        return [w for w in proc.stdout.split() if w.startswith(line[-1])]

    r = ["--repo", str(repo)]
    every = [*sorted(set(names["mx1"] + names["mx2"])), "last"]
    for command in ("restore", "diff", "ls", "hold", "release", "forget"):
        assert offered("histfs", command, *r, "") == every, command
    assert offered("histfs", "forget", *r, "--host", "mx2", "") == [*names["mx2"], "last"]
    assert offered("histfs", "versions", *r, "--host", "mx1", "mail/j") == [
        "mail/jane/", "mail/john/"]
    assert offered("histfs", "ls", *r, "--host", "mx1", "last", "mail/jane/") == [
        "mail/jane/bad\\xff"]


@pytest.mark.timeout(300)
def test_encrypted_repository_names_without_a_passphrase(
        tmp_path: Path, env_with_histfs: dict[str, str]) -> None:
    """Snapshot names are file names: listed without the passphrase. Paths
    need the index: completed when the passphrase is in the environment,
    else nothing (never a question in the middle of a line)."""
    script = tmp_path / "histfs.bash"
    script.write_text(histfs("completion", "bash", check=0).stdout)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a\n")
    repo = tmp_path / "enc"
    secret = {"HISTFS_PASSPHRASE": "correct horse"}
    histfs("init", str(repo), env=secret, check=0)
    histfs("backup", "--repo", str(repo), "--host", "mx1", f"d={src}", env=secret, check=0)
    env = {k: v for k, v in env_with_histfs.items() if k != "HISTFS_PASSPHRASE"}
    got = complete_bash(script, ["histfs", "restore", "--repo", str(repo), ""], env)
    assert len(got) == 2 and got[-1] == "last"
    line = ["histfs", "versions", "--repo", str(repo), ""]
    assert complete_bash(script, line, env) == []
    assert complete_bash(script, line, {**env, **secret}) == ["d/"]
