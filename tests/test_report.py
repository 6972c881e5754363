"""`histfs report`: the page renders in headless Chromium (Debian's
`chromium`); what it drew is measured in the browser: a chart of the
repository's size and one per host, every value axis labelled from 0 at its
baseline, bars of bytes added on their own scale and of a height one can
read, snapshot names under the time axis without overlapping, one timestamp
format on the page; and a screenshot shows something drawn."""

from __future__ import annotations

import html
import itertools
import json
import os
import re
import shutil
import subprocess
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from histfs.report_charts import stamp, ticks
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


MEASURE = """<script>
// Test only: what Chromium drew, in pixels, written into the page for --dump-dom.
const out = {charts: []};
for (const svg of document.querySelectorAll("svg.chart")) {
  const chart = {id: svg.id, host: svg.dataset.host || null, panels: {}, x: []};
  for (const g of svg.querySelectorAll("g.panel")) {
    const zero = [...g.querySelectorAll("line.grid")].map(l => l.getBoundingClientRect().y);
    chart.panels[g.dataset.series] = {
      labels: [...g.querySelectorAll("text.axis.y")].map(t => {
        const r = t.getBoundingClientRect(); return [t.textContent, r.y + r.height / 2]; }),
      baseline: Math.max(...zero), top: Math.min(...zero),
      bars: [...g.querySelectorAll("rect.added")].map(r => ({
        cut: r.classList.contains("cut"), bytes: Number(r.dataset.bytes),
        height: r.getBoundingClientRect().height, bottom: r.getBoundingClientRect().bottom})),
      points: [...g.querySelectorAll("circle")].map(c => c.querySelector("title").textContent),
    };
  }
  chart.x = [...svg.querySelectorAll("text.axis.x")].map(t => {
    const r = t.getBoundingClientRect(); return [t.textContent, r.left, r.right]; });
  out.charts.push(chart);
}
const pre = document.createElement("pre");
pre.id = "measured";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""
STAMP = r"\d{4}-\d{2}-\d{2}T\d{6}Z"
NAME = STAMP + r"(-\d+)?"  # a second snapshot in the same second: -2, -3


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium as root, on its own new profile, off the network."""
    profile = tmp_path / "profile"
    shutil.rmtree(profile, ignore_errors=True)
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})


@pytest.fixture
def repo_with_history(tmp_path: Path) -> Path:
    """mx1: a first backup of 3 MB, then four that add 40 to 160 kB each
    (the bars that were 1 px high beside the first); mx2: one backup."""
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    histfs("init", "--encryption", "none", str(repo), check=0)
    (src / "base.bin").write_bytes(os.urandom(3_000_000))
    histfs("backup", "--repo", str(repo), "--host", "mx1", f"mail={src}", check=0)
    for day in range(4):
        time.sleep(1.1)  # snapshots named a second apart, spread along the time axis
        (src / f"day-{day}.bin").write_bytes(os.urandom(40_000 * (day + 1)))
        histfs("backup", "--repo", str(repo), "--host", "mx1", f"mail={src}", check=0)
    histfs("backup", "--repo", str(repo), "--host", "mx2", f"mail={src}", check=0)
    histfs("check", "--repo", str(repo), check=0)
    return repo


def test_value_axes_start_at_zero_in_round_steps() -> None:
    assert ticks(53_000_000) == [0, 20e6, 40e6, 60e6]
    assert ticks(900_000) == [0, 250e3, 500e3, 750e3, 1e6]
    assert ticks(2) == [0, 1, 2]  # no half bytes
    assert ticks(0) == [0, 1]
    assert stamp(datetime(2026, 11, 20, 4, 0, tzinfo=timezone(timedelta(hours=1)))) == \
        "2026-11-20T030000Z"


@pytest.mark.timeout(300)
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_renders_with_charts(repo_with_history: Path, tmp_path: Path) -> None:
    config = tmp_path / "histfs.toml"
    config.write_text(f'repository = "{repo_with_history}"\n[retention]\nkeep_last = 2\n')
    page = tmp_path / "report.html"
    histfs("report", "--config", str(config), "--output", str(page), check=0)
    text = page.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    measured_page = tmp_path / "measured.html"
    measured_page.write_text(text.replace("</body>", MEASURE + "</body>"))
    dom = _chromium(tmp_path, "--dump-dom", measured_page.as_uri()).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    charts = json.loads(html.unescape(found.group(1)))["charts"]

    # Two charts: the repository's size, then each host's.
    assert [(c["id"], c["host"]) for c in charts] == [
        ("repository-size", None), ("", "mx1"), ("", "mx2")]
    size, mx1, mx2 = charts
    assert list(size["panels"]) == ["repository"]
    assert list(mx1["panels"]) == list(mx2["panels"]) == ["logical", "added"]
    for chart in charts:
        for panel in chart["panels"].values():
            labels = panel["labels"]
            # From 0 at the baseline up, in rising steps.
            assert labels[0][0] == "0 B" and abs(labels[0][1] - panel["baseline"]) < 3
            assert [y for _, y in labels] == sorted((y for _, y in labels), reverse=True)
            assert len(labels) >= 2
        names = [t for t, _, _ in chart["x"]]
        assert names and all(re.fullmatch(NAME, n) for n in names)
        ends = [(left, right) for _, left, right in chart["x"]]
        assert all(a[1] < b[0] for a, b in itertools.pairwise(ends)), ends  # no overlap

    # Bytes added on their own scale: the first backup's bar is cut and
    # labelled, the later ones are tall enough to compare.
    added = mx1["panels"]["added"]
    height = added["baseline"] - added["top"]
    first, *later = added["bars"]
    assert first["cut"] and first["bytes"] > 3_000_000
    assert not any(b["cut"] for b in later)
    assert [b["bytes"] for b in later] == sorted(b["bytes"] for b in later)
    assert all(b["height"] >= 0.15 * height for b in later), (later, height)
    assert max(b["height"] for b in later) >= 0.6 * height
    assert all(abs(b["bottom"] - added["baseline"]) < 2 for b in added["bars"])
    assert "3.0 MB" in text  # the cut bar's label
    assert len(mx1["panels"]["logical"]["points"]) == 5
    assert len(mx2["panels"]["logical"]["points"]) == 1
    assert len(mx2["panels"]["added"]["bars"]) == 1

    # The repository's size after its last backup is its size today.
    summary = re.search(r"<td>repository size</td><td>([^<]+)</td>", text)
    assert summary
    points = size["panels"]["repository"]["points"]
    assert len(points) == 6 and points[-1].endswith(": " + summary.group(1))

    # One timestamp format on the page: as snapshots are named.
    visible = re.sub(r"<[^>]+>", " ", text)
    assert not re.search(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}", visible)
    assert re.search(rf"Generated {STAMP}\.", visible)
    assert re.search(rf"Last check {STAMP} \(structure only\)", visible)
    assert text.count("removed by the next prune") == 3  # keep_last = 2 of mx1's 5

    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000
    assert _png_colours(shot) > 50
