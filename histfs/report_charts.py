"""The SVG charts of `histfs report`: per host, the logical size of each
snapshot and, below it on its own scale, the bytes it added; for the whole
repository, its size over time.

Every value axis starts at 0 and is labelled in round steps; the time axis
is labelled with snapshot names, the one timestamp format of the page.
When one snapshot added far more than the others (the first backup of a
host adds everything), its bar is cut at the top of the scale and labelled
with its value, so that the other bars keep a height one can read.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from histfs.output import human_bytes
from index.model.snapshot_meta import SnapshotMeta

WIDTH = 760
LEFT, RIGHT = 76, 28
"""Room for the value labels on the left and the last time label's end."""
INSET = 12
"""The first and the last snapshot sit this far inside the plot's edges."""
CHAR_WIDTH, NAME_GAP = 6.6, 16
"""How wide a character of a snapshot name is under the time axis (11 px
sans-serif, digits), and the least room between two names."""
OUTLIER = 4
"""A bar more than this many times the next tallest is cut at the scale's top."""
STAMP = "%Y-%m-%dT%H%M%SZ"


def stamp(when: datetime) -> str:
    """A time as the page writes every time: as snapshots are named (UTC)."""
    return when.astimezone(UTC).strftime(STAMP)


def ticks(top: float, count: int = 4) -> list[float]:
    """0 and steps of 1, 2, 2.5 or 5 times a power of ten up to `top` or
    just beyond: the labels of a value axis (of bytes: a step is 1 or more)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = max(1.0, next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw))
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _scale_top(values: Sequence[int]) -> float:
    """The value that fills a panel's height: the largest, unless it
    towers over the next one (see OUTLIER)."""
    ordered = sorted(values, reverse=True)
    if len(ordered) > 1 and ordered[1] > 0 and ordered[0] > OUTLIER * ordered[1]:
        return float(ordered[1])
    return float(max(ordered, default=0))


class _TimeAxis:
    """Where a time falls across the plot, and which snapshots name it."""

    def __init__(self, times: Sequence[datetime]) -> None:
        self.t0 = times[0].timestamp()
        self.span = times[-1].timestamp() - self.t0
        self.count = len(times)

    def x(self, when: datetime) -> float:
        if self.span <= 0:
            return LEFT + (WIDTH - LEFT - RIGHT) / 2
        plot = WIDTH - LEFT - RIGHT - 2 * INSET
        return LEFT + INSET + plot * (when.timestamp() - self.t0) / self.span

    def labels(self, names: Sequence[str], times: Sequence[datetime], y: float) -> list[str]:
        """Snapshot names under the axis, the first and the last always, the
        ones between where there is room."""
        xs = [self.x(t) for t in times]
        if len(xs) == 1:
            chosen = [0]
        else:
            # The first name starts at its point, the last ends at its own,
            # the ones between are centred where there is room.
            width = [CHAR_WIDTH * len(n) for n in names]
            chosen, right = [0], xs[0] + width[0]
            last_left = xs[-1] - width[-1]
            for i in range(1, len(xs) - 1):
                left, end = xs[i] - width[i] / 2, xs[i] + width[i] / 2
                if left >= right + NAME_GAP and end + NAME_GAP <= last_left:
                    chosen.append(i)
                    right = end
            chosen.append(len(xs) - 1)
        out = []
        for i in chosen:
            anchor = ("middle" if len(chosen) == 1 else
                      "start" if i == 0 else "end" if i == len(xs) - 1 else "middle")
            out.append(f'<text class="axis x" x="{xs[i]:.1f}" y="{y:.1f}" '
                       f'text-anchor="{anchor}">{html.escape(names[i])}</text>')
        return out


def _panel(series: str, title: str, top_y: float, height: float, top: float) -> tuple[
        list[str], float]:
    """A panel's frame: its title, grid lines and value labels from 0; and
    the value its full height stands for."""
    marks = ticks(top)
    full = marks[-1]
    out = [f'<g class="panel" data-series="{series}">',
           f'<text class="title" x="{LEFT}" y="{top_y - 8:.1f}">{html.escape(title)}</text>']
    for value in marks:
        y = top_y + height - height * value / full
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" '
                   f'y2="{y:.1f}" stroke="{"#888" if value == 0 else "#e4e4e4"}"/>')
        out.append(f'<text class="axis y" x="{LEFT - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{human_bytes(value)}</text>')
    out.append(f'<line x1="{LEFT}" y1="{top_y:.1f}" x2="{LEFT}" y2="{top_y + height:.1f}" '
               'stroke="#888"/>')
    return out, full


def host_chart(host: str, points: Sequence[SnapshotMeta]) -> str:
    """Two panels over one time axis: the logical size of each snapshot
    (a line) and the bytes each added (bars), each on its own scale."""
    if not points:
        return "<p>No snapshots.</p>"
    times = [p.time for p in points]
    axis = _TimeAxis(times)
    size_top, size_h, added_top, added_h = 28.0, 150.0, 222.0, 110.0
    height = added_top + added_h + 30
    out = [f'<svg class="chart" data-host="{html.escape(host)}" width="{WIDTH}" '
           f'height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
           f'aria-label="snapshots of {html.escape(host)}">']
    frame, full = _panel("logical", "logical size of each snapshot", size_top, size_h,
                         max(p.logical_bytes or 0 for p in points))

    def y_size(v: int) -> float:
        return size_top + size_h - size_h * v / full

    out += frame
    out.append('<polyline points="' + " ".join(
        f"{axis.x(p.time):.1f},{y_size(p.logical_bytes or 0):.1f}" for p in points)
        + '" fill="none" stroke="#2b6cb0" stroke-width="2"/>')
    for p in points:
        out.append(f'<circle class="logical" cx="{axis.x(p.time):.1f}" '
                   f'cy="{y_size(p.logical_bytes or 0):.1f}" r="4" fill="#2b6cb0">'
                   f"<title>{html.escape(p.name)}: {human_bytes(p.logical_bytes or 0)}"
                   "</title></circle>")
    out.append("</g>")
    added = [p.bytes_added or 0 for p in points]
    frame, full = _panel("added", "bytes each backup added (after deduplication and "
                         "compression)", added_top, added_h, _scale_top(added))
    out += frame
    bar = max(2.0, min(14.0, (WIDTH - LEFT - RIGHT) / (2 * len(points))))
    for p, value in zip(points, added, strict=True):
        cut = value > full
        h = added_h * min(value, full) / full
        x = axis.x(p.time)
        out.append(f'<rect class="added{" cut" if cut else ""}" data-bytes="{value}" '
                   f'x="{x - bar / 2:.1f}" y="{added_top + added_h - h:.1f}" width="{bar:.1f}" '
                   f'height="{h:.1f}" fill="#e8a33d"><title>{html.escape(p.name)}: '
                   f"{human_bytes(value)} added</title></rect>")
        if cut:
            # Two white strokes across the bar say that it goes on beyond the scale.
            out.append(f'<path d="M{x - bar:.1f},{added_top + 10:.1f} l{2 * bar:.1f},-5 '
                       f'm0,9 l{-2 * bar:.1f},5" stroke="#fff" stroke-width="3"/>')
            out.append(f'<text class="cut-label" x="{x + bar / 2 + 4:.1f}" '
                       f'y="{added_top + 10:.1f}">{human_bytes(value)}</text>')
    out.append("</g>")
    out += axis.labels([p.name for p in points], times, added_top + added_h + 18)
    out.append("</svg>")
    return "\n".join(out)


def repository_chart(points: Sequence[SnapshotMeta], size_now: int) -> str:
    """The repository's stored size after each backup, of every host: its
    size today less what the later backups added."""
    ordered = sorted(points, key=lambda p: p.time)
    if not ordered:
        return "<p>No snapshots.</p>"
    sizes, later = [], 0
    for p in reversed(ordered):
        sizes.append(max(0, size_now - later))
        later += p.bytes_added or 0
    sizes.reverse()
    times = [p.time for p in ordered]
    axis = _TimeAxis(times)
    top_y, plot_h = 28.0, 150.0
    height = top_y + plot_h + 30
    out = [f'<svg class="chart" id="repository-size" width="{WIDTH}" height="{height:.0f}" '
           f'viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label="repository size">']
    frame, full = _panel("repository", "repository size after each backup", top_y, plot_h,
                         max(sizes))
    out += frame

    def y(v: int) -> float:
        return top_y + plot_h - plot_h * v / full

    line = " ".join(f"{axis.x(t):.1f},{y(s):.1f}" for t, s in zip(times, sizes, strict=True))
    base = top_y + plot_h
    out.append(f'<polygon points="{axis.x(times[0]):.1f},{base:.1f} {line} '
               f'{axis.x(times[-1]):.1f},{base:.1f}" fill="#d7e6f5"/>')
    out.append(f'<polyline points="{line}" fill="none" stroke="#2b6cb0" stroke-width="2"/>')
    for p, t, s in zip(ordered, times, sizes, strict=True):
        out.append(f'<circle class="repository" cx="{axis.x(t):.1f}" cy="{y(s):.1f}" r="3" '
                   f'fill="#2b6cb0"><title>after {html.escape(p.host)}/{html.escape(p.name)}: '
                   f"{human_bytes(s)}</title></circle>")
    out.append("</g>")
    out += axis.labels([p.name for p in ordered], times, base + 18)
    out.append("</svg>")
    return "\n".join(out)
