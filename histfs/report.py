"""`histfs report`: one self-contained HTML page about a repository.

No script, no font, no link: inline CSS and SVG only, so the page opens
from a mail attachment or a file share with no network. Per host: a chart of
each snapshot's logical size and, on its own scale, of the bytes it added,
over time (histfs/report_charts.py); the repository's size over time; the
retention state (which rule keeps each snapshot, or that the next prune
removes it) when a policy is known; the repository's deduplication and
compression ratios; the last `check` run on this machine. Every time on the
page is written as snapshots are named (`2026-11-20T030000Z`, UTC). A snapshot whose
index cannot be read is listed with the reason, outside the chart.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from histfs.output import human_bytes
from histfs.report_charts import host_chart, repository_chart, stamp
from index.model.repository import Repository
from index.model.snapshot_meta import SnapshotMeta, snapshot_metas
from index.store.holds import held_snapshots
from index.store.packs import list_packs, read_stored_table
from index.tools.check import last_result
from writer.retention import Policy, plan_around_damage


def damaged_snapshots(points: dict[str, list[SnapshotMeta]]) -> list[SnapshotMeta]:
    """Every damaged snapshot among `points`."""
    return [p for pts in points.values() for p in pts if p.damaged]


def _damaged(pts: list[SnapshotMeta]) -> str:
    items = "".join(f"<li>{html.escape(p.name)}: {html.escape(p.damaged)}</li>"
                    for p in pts if p.damaged)
    return (f'<p class="damaged">Damaged, left out of the chart (<code>histfs check</code> '
            f"tells more):</p><ul>{items}</ul>" if items else "")


def collect(repo: Repository) -> dict[str, list[SnapshotMeta]]:
    """Every host's snapshots, damaged ones flagged."""
    return {h: snapshot_metas(repo, h) for h in repo.hosts()}


def _logical(p: SnapshotMeta) -> int:
    return p.logical_bytes or 0


def _ratios(repo: Repository, points: dict[str, list[SnapshotMeta]]
            ) -> tuple[float, float, int]:
    raw = stored = 0
    for pack_id in list_packs(repo.storage):
        for row in read_stored_table(repo.storage, pack_id):
            raw += row.raw_size
            stored += row.stored_size
    size = repo.storage.usage()
    logical = sum(_logical(p) for pts in points.values() for p in pts)
    return (logical / size if size else 0.0, raw / stored if stored else 0.0, size)


def _retention(repo: Repository, host: str, pts: list[SnapshotMeta],
               policy: Policy | None) -> str:
    holds = {n: [h.reason for h in hs] for n, hs in held_snapshots(repo.storage, host).items()}
    if policy is None:
        return ("<p>No retention policy given (use <code>--config</code>): every snapshot is "
                "kept until pruned.</p>")
    damage = {p.name: p.damaged for p in pts}
    rows = []
    for d in plan_around_damage([(p.name, p.time) for p in pts], policy, holds, damage.get):
        state = "kept" if d.keep else "removed by the next prune"
        if damage.get(d.name):
            state += " (damaged)"
        rows.append(f'<tr class="{"keep" if d.keep else "drop"}"><td>{html.escape(d.name)}</td>'
                    f"<td>{state}</td><td>{html.escape(', '.join(d.reasons))}</td></tr>")
    return ('<table class="retention"><tr><th>snapshot</th><th>state</th><th>because</th></tr>'
            + "".join(rows) + "</table>")


def _last_check(repo: Repository) -> str:
    last = last_result(repo)
    if last is None:
        return "<p>No <code>histfs check</code> has run on this machine.</p>"
    verdict = "sound" if last.sound else f"{len(last.problems)} problem(s)"
    kind = "with --read-data" if last.read_data else "structure only"
    items = "".join(f"<li>{html.escape(p)}</li>" for p in last.problems)
    try:
        when = stamp(datetime.fromisoformat(last.time))
    except ValueError:
        when = last.time
    return (f'<p class="check">Last check {html.escape(when)} ({kind}): '
            f"<strong>{verdict}</strong></p>" + (f"<ul>{items}</ul>" if items else ""))


def render(repo: Repository, policy: Policy | None = None,
           points: dict[str, list[SnapshotMeta]] | None = None) -> str:
    """The page (`points`: from `collect`, when the caller has them)."""
    points = points if points is not None else collect(repo)
    hosts = list(points)
    damaged = damaged_snapshots(points)
    dedup, compression, size = _ratios(repo, points)
    now = datetime.now(UTC)
    sections = []
    for host in hosts:
        pts = points[host]
        readable = [p for p in pts if not p.damaged]
        latest = readable[-1] if readable else None
        bad = len(pts) - len(readable)
        sections.append(
            f'<section class="host"><h2>{html.escape(host)}</h2>'
            f"<p>{len(pts)} snapshots" + (f" ({bad} damaged)" if bad else "")
            + (f"; newest{' readable' if bad else ''} {html.escape(latest.name)}, "
               f"{human_bytes(_logical(latest))}" if latest else "")
            + "</p>" + host_chart(host, readable) + _damaged(pts)
            + "<h3>Retention</h3>" + _retention(repo, host, pts, policy)
            + "</section>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>histfs report: {html.escape(str(repo.root))}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
.axis {{ font-size: 11px; fill: #555; }}
.title {{ font-size: 12px; fill: #222; }}
.cut-label {{ font-size: 11px; fill: #b36b00; }}
.note {{ font-size: 12px; color: #555; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; font-size: 13px; text-align: left; }}
tr.drop td {{ color: #a33; }}
.summary td:first-child {{ font-weight: bold; }}
</style></head><body>
<h1>histfs repository {html.escape(str(repo.root))}</h1>
<p>Generated {stamp(now)}.</p>
<table class="summary">
<tr><td>hosts</td><td>{len(hosts)}</td></tr>
<tr><td>snapshots</td><td>{sum(len(p) for p in points.values())}</td></tr>
{f'<tr class="drop"><td>damaged snapshots</td><td>{len(damaged)}</td></tr>' if damaged else ""}
<tr><td>repository size</td><td>{human_bytes(size)}</td></tr>
<tr><td>deduplication</td><td>{dedup:.1f}&times; (logical size of every snapshot / stored)</td></tr>
<tr><td>compression</td><td>{compression:.2f}&times; (chunk bytes / stored bytes)</td></tr>
<tr><td>encryption</td><td>{html.escape(repo.config.encryption)}</td></tr>
</table>
{_last_check(repo)}
<h2>Repository size</h2>
{repository_chart([p for pts in points.values() for p in pts if not p.damaged], size)}
<p class="note">Today's size, and before each backup it less what the later backups
added; space that prune and gc gave back since is not shown.</p>
{"".join(sections)}
</body></html>
"""
