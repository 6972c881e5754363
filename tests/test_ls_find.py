"""`histfs ls` and `histfs find`: looking inside snapshots without a mount."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests.conftest import histfs
from tests.test_cli import assert_error

BAD = b"bad\xff\xfename"


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    """Two snapshots of mx1 and one of mx2; the second of mx1 adds a name
    that is not UTF-8, a symlink and a sieve script."""
    src = tmp_path / "src"
    (src / "john" / "cur").mkdir(parents=True)
    (src / "john" / "cur" / "1:2,S").write_bytes(b"x" * 1234)
    (src / "john" / "dovecot.sieve").write_text("keep;\n")
    os.utime(src / "john" / "dovecot.sieve", (1_700_000_000, 1_700_000_000))
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    histfs("backup", "--repo", str(repo), "--host", "mx1", f"mail={src}", check=0)
    (src / "john" / "cur" / "2:2,S").write_text("two\n")
    os.symlink(b"../t\xfe", os.fsencode(src / "john") + b"/link")
    with open(os.fsencode(src / "john") + b"/" + BAD, "wb") as f:
        f.write(b"odd\n")
    (src / "mary.sieve").write_text("discard;\n")
    histfs("backup", "--repo", str(repo), "--host", "mx1", f"mail={src}", check=0)
    histfs("backup", "--repo", str(repo), "--host", "mx2", f"mail={src}", check=0)
    return repo


def names(repo: Path, host: str) -> list[str]:
    rows = json.loads(histfs("snapshots", "--repo", str(repo), "--host", host, "--json",
                             check=0).stdout)
    return [r["name"] for r in rows]


@pytest.mark.timeout(300)
def test_ls_lists_a_directory_a_file_and_the_parts(repo_path: Path) -> None:
    r = ["--repo", str(repo_path), "--host", "mx1"]
    assert histfs("ls", *r, "last", check=0).stdout == "mail\n"
    out = histfs("ls", *r, "last", "mail/john", check=0).stdout.splitlines()
    assert out == ["mail/john/bad\\xff\\xfename", "mail/john/cur", "mail/john/dovecot.sieve",
                   "mail/john/link"]
    first = names(repo_path, "mx1")[0]
    assert histfs("ls", *r, first, "/mail/john/", check=0).stdout.splitlines() == [
        "mail/john/cur", "mail/john/dovecot.sieve"]
    long = histfs("ls", *r, "--long", "last", "mail/john", check=0).stdout.splitlines()
    assert long[1].startswith("drwx")
    assert long[2].split()[3:] == ["6", "2023-11-14", "22:13:20", "mail/john/dovecot.sieve"]
    assert long[3].startswith("lrwxrwxrwx") and long[3].endswith(
        "mail/john/link -> ../t\\xfe")
    # A file alone.
    assert histfs("ls", *r, "last", "mail/john/cur/1:2,S", check=0).stdout == \
        "mail/john/cur/1:2,S\n"


@pytest.mark.timeout(300)
def test_ls_json_is_lossless(repo_path: Path) -> None:
    rows = json.loads(histfs("ls", "--repo", str(repo_path), "--host", "mx1", "--json",
                             "last", "mail/john", check=0).stdout)
    by_name = {r.get("path") or base64.b64decode(r["path_b64"]): r for r in rows}
    bad = by_name[b"mail/john/" + BAD]
    assert "path" not in bad and bad["type"] == "regular" and bad["size"] == 4
    sieve = by_name["mail/john/dovecot.sieve"]
    assert sieve["mtime_ns"] == 1_700_000_000 * 10**9
    assert sieve["mtime"] == "2023-11-14T22:13:20+00:00"
    assert sieve["mode"] & 0o777 == 0o644 and sieve["type"] == "regular"
    link = by_name["mail/john/link"]
    assert base64.b64decode(link["target_b64"]) == b"../t\xfe" and "target" not in link
    assert by_name["mail/john/cur"]["type"] == "directory"
    # The text form that ls printed names the file again.
    proc = histfs("ls", "--repo", str(repo_path), "--host", "mx1", "--json", "last",
                  "mail/john/bad\\xff\\xfename", check=0)
    assert base64.b64decode(json.loads(proc.stdout)[0]["path_b64"]) == b"mail/john/" + BAD


@pytest.mark.timeout(300)
def test_find_across_snapshots_and_hosts(repo_path: Path) -> None:
    out = histfs("find", "--repo", str(repo_path), "*.sieve", check=0).stdout.splitlines()
    mx1, mx2 = names(repo_path, "mx1"), names(repo_path, "mx2")
    assert [line.split()[:2] + line.split()[-1:] for line in out] == [
        ["mx1", mx1[0], "mail/john/dovecot.sieve"],
        ["mx1", mx1[1], "mail/john/dovecot.sieve"],
        ["mx1", mx1[1], "mail/mary.sieve"],
        ["mx2", mx2[0], "mail/john/dovecot.sieve"],
        ["mx2", mx2[0], "mail/mary.sieve"]]
    assert out[0].split()[2:6] == ["6", "B", "2023-11-14", "22:13:20"]
    # --host, and a pattern with a slash matched against the whole path.
    rows = json.loads(histfs("find", "--repo", str(repo_path), "--host", "mx1", "--json",
                             "mail/*/cur/*", check=0).stdout)
    assert [(r["snapshot"], r["path"], r["size"]) for r in rows] == [
        (mx1[0], "mail/john/cur/1:2,S", 1234), (mx1[1], "mail/john/cur/1:2,S", 1234),
        (mx1[1], "mail/john/cur/2:2,S", 4)]
    assert {r["host"] for r in rows} == {"mx1"}
    # A name that is not UTF-8: found by its text form, given losslessly in JSON.
    rows = json.loads(histfs("find", "--repo", str(repo_path), "--host", "mx2", "--json",
                             "bad\\xff*", check=0).stdout)
    assert [base64.b64decode(r["path_b64"]) for r in rows] == [b"mail/john/" + BAD]
    # Nothing found: exit 1 and a line on stderr.
    proc = histfs("find", "--repo", str(repo_path), "*.nothing", check=1)
    assert proc.stdout == "" and proc.stderr == "*.nothing: matches nothing in any snapshot\n"
    assert json.loads(histfs("find", "--repo", str(repo_path), "--json", "*.nothing",
                             check=1).stdout) == []


def test_bad_input(repo_path: Path) -> None:
    r = ["--repo", str(repo_path)]
    assert_error(histfs("ls", *r, "--host", "mx1", "last", "mail/nobody"),
                 "mail/nobody: not in snapshot mx1/")
    assert_error(histfs("ls", *r, "--host", "mx1", "2020-01-01T000000Z"),
                 "no snapshot 2020-01-01T000000Z of host mx1")
    assert_error(histfs("ls", *r, "last"), "several hosts", "--host")
    assert_error(histfs("ls", *r, "--host", "no/such", "last"), "invalid host name")
    proc = histfs("ls", *r)
    assert proc.returncode == 2 and "required: snapshot" in proc.stderr
