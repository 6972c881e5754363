"""`histfs report`: the page renders in headless Chromium (Debian's
`chromium`) with one point and one bar per snapshot in each host's chart,
and a screenshot shows something drawn."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.conftest import histfs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _png_colours(path: Path) -> int:
    """How many distinct byte values the decompressed image data holds: a
    blank page has a handful, a page with charts and text many."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    return len(set(zlib.decompress(b"".join(chunks))))


@pytest.fixture
def repo_with_history(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    histfs("init", "--encryption", "none", str(repo), check=0)
    for day in range(4):
        (src / f"day-{day}.bin").write_bytes(os.urandom(50_000 * (day + 1)))
        histfs("backup", "--repo", str(repo), "--host", "mx1", f"mail={src}", check=0)
    histfs("backup", "--repo", str(repo), "--host", "mx2", f"mail={src}", check=0)
    histfs("check", "--repo", str(repo), check=0)
    return repo


@pytest.mark.timeout(180)
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_renders_with_charts(repo_with_history: Path, tmp_path: Path) -> None:
    config = tmp_path / "histfs.toml"
    config.write_text(f'repository = "{repo_with_history}"\n[retention]\nkeep_last = 2\n')
    page = tmp_path / "report.html"
    histfs("report", "--config", str(config), "--output", str(page), check=0)
    text = page.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    env = {**os.environ, "HOME": str(tmp_path)}
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120, env=env).stdout
    charts = re.findall(r'<svg class="chart" data-host="([^"]+)".*?</svg>', dom, re.S)
    assert charts == ["mx1", "mx2"], dom[:500]
    per_host = {m.group(1): m.group(2) for m in
                re.finditer(r'data-host="([^"]+)"(.*?)</svg>', dom, re.S)}
    assert per_host["mx1"].count('class="logical"') == 4
    assert per_host["mx1"].count('class="added"') == 4
    assert per_host["mx2"].count('class="logical"') == 1
    assert dom.count("removed by the next prune") == 2  # keep_last = 2 of mx1's 4
    assert "Last check" in dom and "sound" in dom
    shot = tmp_path / "report.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1000,1400",
                    page.as_uri()], capture_output=True, timeout=120, env=env)
    assert shot.exists() and shot.stat().st_size > 10_000
    assert _png_colours(shot) > 50
