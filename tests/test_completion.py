"""Shell completion, generated from the parser, run in real bash and zsh."""

from __future__ import annotations

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
