"""Names that are not UTF-8 survive the round trip: JSON gives them
losslessly (`path_b64`), and the text form every command prints
(`bad\\xff\\xfename`) is taken back by versions, restore, ls and find."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from histfs.byte_names import typed_paths
from index.format.names import json_path, read_shown_path, show_path
from tests.conftest import histfs

BAD = b"bad\xff\xfename"
BAD_DIR = b"dir\xe9"
SHOWN = "bad\\xff\\xfename"


@pytest.mark.parametrize("name", [BAD, b"plain", b"a\\xffb", b"\xc3\xa9t\xe9", b"\xff",
                                  b"x\\y\x80", b"caf\xc3\xa9"])
def test_the_text_form_reads_back(name: bytes) -> None:
    """The name is among what its text form may mean: the only one for a
    name that is not UTF-8, the first for one that is."""
    candidates = typed_paths(show_path(name))
    try:
        name.decode("utf-8")
        assert candidates[0] == name
    except UnicodeDecodeError:
        assert read_shown_path(show_path(name)) == name and candidates[-1] == name
    decoded = json_path(name)
    assert (base64.b64decode(decoded["path_b64"]) if "path_b64" in decoded
            else decoded["path"].encode()) == name


def test_only_escapes_show_path_writes_are_read() -> None:
    assert read_shown_path("plain") is None
    assert read_shown_path("\\xc3\\xa9") is None  # valid UTF-8 would be shown as é
    assert read_shown_path("\\x41") is None  # ASCII is never escaped
    assert read_shown_path("a\\xff") == b"a\xff"


def lines(proc_out: str) -> list[str]:
    return proc_out.splitlines()


@pytest.mark.timeout(300)
def test_round_trip_through_every_command(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok").write_text("fine\n")
    repo = tmp_path / "repo"
    r = ["--repo", str(repo), "--host", "mx1"]
    histfs("init", "--encryption", "none", str(repo), check=0)
    histfs("backup", *r, f"d={src}", check=0)
    raw_src = os.fsencode(src)
    os.mkdir(raw_src + b"/" + BAD_DIR)
    for where, data in ((b"/" + BAD, b"v1\n"), (b"/" + BAD_DIR + b"/" + BAD, b"deep\n"),
                        (b"/a\\xffb", b"literal backslash\n"), (b"/a\xffb", b"byte\n")):
        with open(raw_src + where, "wb") as f:
            f.write(data)
    histfs("backup", *r, "--force", f"d={src}", check=0)
    with open(raw_src + b"/" + BAD, "wb") as f:
        f.write(b"v2, longer\n")
    histfs("backup", *r, "--force", f"d={src}", check=0)
    first, second, third = [s["name"] for s in json.loads(
        histfs("snapshots", *r, "--json", check=0).stdout)]

    # diff: text shows escapes, JSON keeps the bytes.
    text = lines(histfs("diff", *r, first, second, check=0).stdout)
    assert f"added    d/{SHOWN}" in text and "added    d/dir\\xe9/bad\\xff\\xfename" in text
    changes = json.loads(histfs("diff", *r, "--json", first, second, check=0).stdout)
    got = {c.get("path", "").encode() or base64.b64decode(c["path_b64"]) for c in changes}
    assert got == {b"d/" + BAD, b"d/" + BAD_DIR, b"d/" + BAD_DIR + b"/" + BAD,
                   b"d/a\\xffb", b"d/a\xffb"}
    assert all(("path" in c) != ("path_b64" in c) for c in changes)
    assert {"status": "added", "path": "d/a\\xffb"} in changes  # valid UTF-8 stays text

    # versions takes the printed form back.
    out = lines(histfs("versions", *r, f"d/{SHOWN}", check=0).stdout)
    assert [line.split()[0] for line in out] == [second, third]
    found = json.loads(histfs("versions", *r, "--json", f"d/dir\\xe9/{SHOWN}",
                              check=0).stdout)
    assert [v["snapshot"] for v in found] == [second, third]

    # ls: the printed form again; the literal name wins where both exist.
    listed = lines(histfs("ls", *r, "last", "d", check=0).stdout)
    assert f"d/{SHOWN}" in listed and "d/dir\\xe9" in listed
    assert listed.count("d/a\\xffb") == 2  # a backslash name, and a name with a byte ff
    one = json.loads(histfs("ls", *r, "--json", "last", "d/a\\xffb", check=0).stdout)
    assert one == [{**one[0], "path": "d/a\\xffb", "size": 18}]
    inner = json.loads(histfs("ls", *r, "--json", "last", "d/dir\\xe9", check=0).stdout)
    assert [base64.b64decode(e["path_b64"]) for e in inner] == [
        b"d/" + BAD_DIR + b"/" + BAD]

    # find prints the form, restore takes it.
    out = lines(histfs("find", *r, "bad*", check=0).stdout)
    assert [line.split()[-1] for line in out] == [
        f"d/{SHOWN}", f"d/dir\\xe9/{SHOWN}", f"d/{SHOWN}", f"d/dir\\xe9/{SHOWN}"]
    target = tmp_path / "restored"
    histfs("restore", *r, second, f"d/{SHOWN}", "d/dir\\xe9", "--target", str(target),
           check=0)
    raw_target = os.fsencode(target)
    with open(raw_target + b"/d/" + BAD, "rb") as f:
        assert f.read() == b"v1\n"
    assert sorted(os.listdir(raw_target + b"/d")) == sorted([BAD, BAD_DIR])
    assert os.listdir(raw_target + b"/d/" + BAD_DIR) == [BAD]
    # A path in neither form is still an error naming it.
    proc = histfs("restore", *r, second, "d/nothing\\xff", "--target", str(target))
    assert proc.returncode == 2 and "d/nothing\\xff: not in snapshot" in proc.stderr

    # check: the damaged paths of a snapshot whose pack is gone, losslessly.
    newest_pack = max((p for p in (repo / "packs").rglob("*") if p.is_file()),
                      key=lambda p: p.stat().st_mtime_ns)
    newest_pack.unlink()
    report = json.loads(histfs("check", "--repo", str(repo), "--json", check=1).stdout)
    label = f"mx1/{third}"
    assert report["damaged"][label] == [f"d/{SHOWN}"]
    assert report["damaged_paths"][label] == [{"path_b64": base64.b64encode(
        b"d/" + BAD).decode()}]
