"""Repositories written by earlier releases still read, and can be extended."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from index.model.repository import Repository
from index.store.packs import list_packs
from tests.trees import snapshot_state
from writer.backup import run_backup
from writer.parts import Part

DATA = Path(__file__).parent / "data"


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def _expected(name: str) -> dict[bytes, tuple[object, ...]]:
    doc = json.loads((DATA / f"{name}.json").read_text())
    return {
        snap: {bytes.fromhex(k): _decode(v) for k, v in state.items()}
        for snap, state in doc["snapshots"].items()
    }


def _only_shrink_warnings(warnings: list[str]) -> None:
    """A one-file source replacing the old snapshot's tree: the one warning
    says the part shrank (counted in the old index, which has no counts)."""
    assert len(warnings) == 1 and warnings[0].startswith(
        "part data: 1 files, fewer than half of the "), warnings


def test_format_1_repository_reads_exactly() -> None:
    expected = _expected("repo-v1")
    repo = Repository.open(DATA / "repo-v1")
    refs = repo.snapshots()
    assert [(r.host, r.name) for r in refs] == [
        ("mx1", "2026-11-22T010916Z"), ("mx2", "2026-11-22T010918Z")]
    for ref in refs:
        with repo.open_snapshot(ref) as snap:
            assert snapshot_state(snap, "data") == expected[ref.name]
            assert snap.meta["host"] == ref.host and snap.meta["name"] == ref.name
    repo.close()


def test_format_1_repository_takes_new_backups(tmp_path: Path) -> None:
    # git keeps no empty directories: the copy lacks tmp/, locks/ and most of
    # packs/, as a repository restored from some archive formats would.
    shutil.copytree(DATA / "repo-v1", tmp_path / "repo")
    src = tmp_path / "src"
    src.mkdir()
    (src / "new").write_text("a new file")
    repo = Repository.open(tmp_path / "repo")
    result = run_backup(repo, "mx1", [Part("data", src)])
    _only_shrink_warnings(result.stats.warnings)
    assert len(repo.snapshots("mx1")) == 2
    with repo.open_snapshot(repo.snapshots("mx1")[-1]) as snap:
        e = snap.resolve("data/new")
        assert snap.read(e, 0, 100) == b"a new file"
    repo.close()


def test_format_1_repository_is_pruned_and_collected(tmp_path: Path) -> None:
    """A repository written before prune and gc existed: once both hosts have
    new snapshots, prune removes the old ones and gc deletes their packs."""
    from index.tools.check import check
    from writer.gc import collect
    from writer.prune import prune
    from writer.retention import Policy

    shutil.copytree(DATA / "repo-v1", tmp_path / "repo")
    src = tmp_path / "src"
    src.mkdir()
    (src / "new").write_text("a new file")
    repo = Repository.open(tmp_path / "repo")
    old = repo.snapshots()
    packs_before = set(list_packs(repo.storage))
    for host in ("mx1", "mx2"):
        _only_shrink_warnings(run_backup(repo, host, [Part("data", src)]).stats.warnings)
    items = prune(repo, Policy(keep_last=1))
    assert sorted(i.ref for i in items if not i.decision.keep) == old
    result = collect(repo, grace=0.0)
    assert result.packs_deleted == len(packs_before) == 2
    assert not packs_before & set(list_packs(repo.storage))
    assert check(repo, read_data=True).sound
    for ref in repo.snapshots():
        with repo.open_snapshot(ref) as snap:
            assert snap.read(snap.resolve("data/new"), 0, 100) == b"a new file"
    repo.close()


V2_PASSPHRASE = "histfs test repository v2"


def test_format_2_encrypted_repository_reads_exactly(tmp_path: Path) -> None:
    """The first encrypted format: opened with its passphrase, every path
    as it was; extended with a backup; refused with a wrong passphrase."""
    import pytest

    from index.format.keys import WrongPassphrase

    expected = _expected("repo-v2")
    shutil.copytree(DATA / "repo-v2", tmp_path / "repo")
    with pytest.raises(WrongPassphrase):
        Repository.open(tmp_path / "repo", passphrase=lambda: "not it")
    repo = Repository.open(tmp_path / "repo", passphrase=lambda: V2_PASSPHRASE)
    assert repo.config.version == 2 and repo.cipher is not None
    (ref,) = repo.snapshots()
    with repo.open_snapshot(ref) as snap:
        assert snapshot_state(snap, "data") == expected[ref.name]
    src = tmp_path / "src"
    src.mkdir()
    (src / "new").write_text("a new file")
    _only_shrink_warnings(run_backup(repo, "mx1", [Part("data", src)]).stats.warnings)
    with repo.open_snapshot(repo.snapshots("mx1")[-1]) as snap:
        assert snap.read(snap.resolve("data/new"), 0, 100) == b"a new file"
    repo.close()
