"""The progress line of `histfs backup` on a terminal.

With a previous snapshot of the host it shows the share done by files and
by bytes (measured against that snapshot), an estimate of the time left
and the path being read (then that the snapshot index is being written);
the last line, kept on the screen, counts what the summary below it counts
(`files` there: every entry other than a directory, as `histfs snapshots`
counts them).
"""

from __future__ import annotations

import os

from histfs.output import human_bytes
from index.format.names import show_path
from writer.stats import BackupStats

# An estimate needs this much done to mean anything.
_MIN_SHARE = 0.01
_MIN_SECONDS = 2.0


def duration_text(seconds: float) -> str:
    """90 -> '1m30s', 4000 -> '1h06m', 5 -> '5s'."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _share(done: int, expected: int | None) -> float | None:
    """`done` of `expected`, at most 99% while running (the new snapshot may
    hold more than the previous one)."""
    if not expected:
        return None
    return min(done / expected, 0.99)


def progress_text(stats: BackupStats, width: int, final: bool = False) -> str:
    """The progress line for `stats`, at most `width` characters (the path
    being read is cut at its start to fit)."""
    files, size = stats.files, stats.logical_bytes
    by_files = _share(files, stats.expected_files)
    by_bytes = _share(size, stats.expected_bytes)
    elapsed = stats.duration
    if final or by_files is None or by_bytes is None:
        rate = stats.bytes_read / elapsed if elapsed > 0 else 0
        line = (f"{files:,} files, {human_bytes(size)}, {human_bytes(stats.bytes_read)} read "
                f"({human_bytes(rate)}/s), {human_bytes(stats.bytes_added)} added")
        if final:
            return f"{line}, {duration_text(elapsed)}"[:width]
    else:
        line = (f"{by_files:.0%} of files ({files:,} of {stats.expected_files:,}), "
                f"{by_bytes:.0%} of bytes ({human_bytes(size)} of "
                f"{human_bytes(stats.expected_bytes or 0)})")
        share = (by_files + by_bytes) / 2
        if share >= _MIN_SHARE and elapsed >= _MIN_SECONDS and not stats.walked:
            line += f", {duration_text(elapsed * (1 - share) / share)} left"
    if stats.walked:
        return f"{line}, writing the snapshot index"[:width]
    current = show_path(stats.current)
    room = width - len(line) - 2
    if current and room > 10:
        if len(current) > room:
            current = "…" + current[len(current) - room + 1:]
        line += f"  {current}"
    return line[:width]


def terminal_width() -> int:
    """The width of the terminal on stderr, 150 at most."""
    try:
        columns = os.get_terminal_size(2).columns
    except OSError:
        columns = 80
    return max(40, min(150, columns - 1))
