"""Imports point one way: writer -> index <- fusefs; histfs sees all."""

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


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_packages_import_only_downwards() -> None:
    problems = []
    for package, forbidden in FORBIDDEN.items():
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, package
        for f in files:
            bad = _imported_packages(f) & forbidden
            if bad:
                problems.append(f"{f.relative_to(ROOT)} imports {sorted(bad)}")
    assert problems == []


def test_backup_command_does_not_load_fuse() -> None:
    code = ("import sys, histfs.cli, writer.backup; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pyfuse3', 'trio', 'fusefs')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
