"""Imports point one way: writer -> index <- fusefs; histfs sees all.

Inside index/ the rooms are layered too: the format imports nothing above
it, the storage only the format, the read model the storage and the format,
and the read-only tools any of them. errors.py is beside them all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "index": {"writer", "fusefs", "histfs"},
    "writer": {"fusefs", "histfs"},
    "fusefs": {"writer", "histfs"},
}
ROOMS = ["errors", "format", "store", "model", "tools"]
"""index/'s rooms from the bottom up: each may import those below it."""


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "index":
                found |= {f"index.{a.name}" for a in node.names}
    return found


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "index" else None


def test_packages_import_only_downwards() -> None:
    problems = []
    for package, forbidden in FORBIDDEN.items():
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, package
        for f in files:
            bad = {m.split(".")[0] for m in _imported_modules(f)} & forbidden
            if bad:
                problems.append(f"{f.relative_to(ROOT)} imports {sorted(bad)}")
    assert problems == []


def test_index_rooms_import_only_downwards() -> None:
    problems = []
    seen_rooms = set()
    for f in sorted((ROOT / "index").rglob("*.py")):
        rel = f.relative_to(ROOT / "index")
        room = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if room == "__init__":
            continue
        assert room in ROOMS, f"index/{rel} is in no room"
        seen_rooms.add(room)
        allowed = set(ROOMS[: ROOMS.index(room) + 1])
        for module in _imported_modules(f):
            target = _room(module)
            if target is not None and target not in allowed:
                problems.append(f"index/{rel} ({room}) imports {module}")
    assert seen_rooms == set(ROOMS)
    assert problems == []


def test_backup_command_does_not_load_fuse() -> None:
    code = ("import sys, histfs.cli, writer.backup; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pyfuse3', 'trio', 'fusefs')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
