"""Parts of several dumps, each a process's standard output (the plumbing
of every dump kind): one file per dump, dated when its process started,
mode 0600 in a 0700 directory; one failing dump leaves the whole part out;
names made of database names never make a path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from index.errors import SourceError
from index.format.types import Kind
from index.model.repository import Repository
from writer.backup import run_backup
from writer.dumps import Dump, dump_file_name
from writer.parts import Part


@dataclass(frozen=True)
class Scripted:
    """Dumps by Python one-liners; `listed` counts how often they were asked for."""

    scripts: tuple[tuple[str, str], ...]
    listed: list[int]

    def describe(self) -> str:
        return "scripted"

    def dumps(self) -> Iterator[Dump]:
        self.listed.append(1)
        for file, script in self.scripts:
            if file == "!":
                raise SourceError("the list of databases: server gone")
            yield Dump(file, (sys.executable, "-c", script), {"DUMP_SECRET": "s3cret"},
                       what=f"dump of {file!r}")


def _part(*scripts: tuple[str, str], on_error: str = "fail") -> Part:
    return Part("db", Path("/"), dump_source=Scripted(scripts, []), on_error=on_error)


def _mail(tmp_path: Path) -> Part:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "a").write_text("mail\n")
    return Part("mail", src)


def test_each_dump_is_a_file(repo: Repository, tmp_path: Path) -> None:
    part = _part(("one.sql", "import sys, time; sys.stdout.write('1' * 100000); "
                             "time.sleep(1.1)"),
                 ("two.sql", "import os; print(os.environ['DUMP_SECRET'], end='')"))
    result = run_backup(repo, "mx1", [_mail(tmp_path), part])
    assert result.exit_status == 0, result.stats.warnings
    with repo.open_snapshot(repo.snapshots("mx1")[-1]) as snap:
        top = snap.resolve("db")
        assert top.kind == Kind.DIRECTORY and top.mode & 0o7777 == 0o700
        one, two = snap.resolve("db/one.sql"), snap.resolve("db/two.sql")
        assert snap.read(one, 0, 200000) == b"1" * 100000
        assert snap.read(two, 0, 100) == b"s3cret"
        assert one.mode & 0o7777 == two.mode & 0o7777 == 0o600
        # Each file is dated when its own process started.
        assert top.mtime_ns <= one.mtime_ns < two.mtime_ns - 1_000_000_000
        meta = snap.meta
    assert meta["parts"][1]["source"] == "scripted"  # type: ignore[index]
    assert "s3cret" not in repr(meta)


@pytest.mark.parametrize("failing", ["exit", "kill", "list"])
def test_one_failing_dump_leaves_the_part_out(repo: Repository, tmp_path: Path,
                                              failing: str) -> None:
    second = {"exit": ("two.sql", "import sys; print('x' * 9999); "
                                  "sys.stderr.write('access denied\\n'); sys.exit(3)"),
              "kill": ("two.sql", "import os, signal; print('x' * 9999, flush=True); "
                                  "os.kill(os.getpid(), signal.SIGKILL)"),
              "list": ("!", "")}[failing]
    scripts = (("one.sql", "print('whole')"), second)
    with pytest.raises(SourceError) as caught:
        run_backup(repo, "mx1", [_mail(tmp_path), _part(*scripts)])
    said = str(caught.value)
    assert said.startswith("part db: ")
    assert {"exit": "dump of 'two.sql' exited with status 3: access denied",
            "kill": "dump of 'two.sql' killed by signal 9",
            "list": "the list of databases: server gone"}[failing] in said
    assert repo.snapshots("mx1") == []
    result = run_backup(repo, "mx1", [_mail(tmp_path), _part(*scripts, on_error="warn")])
    assert result.exit_status == 1
    assert any(said in w for w in result.stats.warnings), result.stats.warnings
    with repo.open_snapshot(repo.snapshots("mx1")[-1]) as snap:
        assert [n for n, _ in snap.children(snap.resolve("").entry_id)] == [b"mail"]
        assert [p["name"] for p in snap.meta["parts"]] == ["mail"]  # type: ignore[union-attr]


def test_a_dump_that_cannot_start(repo: Repository, tmp_path: Path) -> None:
    missing = Part("db", Path("/"), dump_source=_NoSuchProgram())
    with pytest.raises(SourceError, match="part db: no-such-dumper could not be started"):
        run_backup(repo, "mx1", [_mail(tmp_path), missing])


@dataclass(frozen=True)
class _NoSuchProgram:
    def describe(self) -> str:
        return "nothing"

    def dumps(self) -> Iterator[Dump]:
        yield Dump("x.sql", ("/nonexistent/no-such-dumper",), what="no-such-dumper")


def test_dump_file_names() -> None:
    names = ["bluemind", "a/b", "50%", "..", ".", "tab\there", "é", "globals", "%67lobals"]
    files = [dump_file_name(n, ".sql", reserved={"globals.sql"}) for n in names]
    assert files == ["bluemind.sql", "a%2Fb.sql", "50%25.sql", "...sql", "..sql",
                     "tab%09here.sql", "é.sql", "%67lobals.sql", "%2567lobals.sql"]
    assert len(set(files)) == len(files)
