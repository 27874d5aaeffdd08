"""The dashboard's counts and its chart of the last hour, drawn as SVG.

Read with the store's public ``list``: the jobs the caller may see that
were created in the last :data:`WINDOW` seconds, newest first, at most
:data:`MOST_READ` of them (a page of :data:`PAGE` per store call).
"""
from __future__ import annotations

import dataclasses
import time
import typing as t

from ..models import Job, JobStatus
from ..stores.base import OwnerFilter

if t.TYPE_CHECKING:
    from ..state import JobifyState

#: Seconds the chart covers.
WINDOW = 3600.0
#: Bars of the chart (5 minutes each).
BUCKETS = 12
#: Jobs read at most per chart.
MOST_READ = 2000
#: Jobs read per store call.
PAGE = 200


@dataclasses.dataclass
class Bucket:
    """Jobs that finished in one slice of the window."""

    start: float
    finished: int = 0
    failed: int = 0
    #: Sum of run durations (``finished_at - started_at``), in seconds.
    seconds: float = 0.0

    @property
    def mean_seconds(self) -> float | None:
        return self.seconds / self.finished if self.finished else None


@dataclasses.dataclass
class Stats:
    """Counts by status of the jobs read, and the chart's buckets."""

    counts: dict[str, int]
    buckets: list[Bucket]
    read: int
    #: Whether :data:`MOST_READ` cut the reading short.
    partial: bool
    now: float


def recent_jobs(state: JobifyState, owner: OwnerFilter, now: float) -> tuple[list[Job], bool]:
    """The jobs created in the window (newest first), and whether there were more."""
    jobs: list[Job] = []
    after = None
    while len(jobs) < MOST_READ:
        page = state.store.list(owner=owner, limit=PAGE, after=after, app=state.name)
        for job in page:
            if job.created_at < now - WINDOW:
                return jobs, False
            jobs.append(job)
        if len(page) < PAGE:
            return jobs, False
        after = (page[-1].created_at, page[-1].id)
    return jobs, True


def compute(state: JobifyState, owner: OwnerFilter, now: float | None = None) -> Stats:
    """Counts by status and per-bucket throughput and mean duration."""
    now = time.time() if now is None else now
    jobs, partial = recent_jobs(state, owner, now)
    counts = {status.value: 0 for status in JobStatus}
    width = WINDOW / BUCKETS
    start = now - WINDOW
    buckets = [Bucket(start + i * width) for i in range(BUCKETS)]
    for job in jobs:
        counts[job.status.value] += 1
        if job.finished_at is None or job.finished_at < start:
            continue
        bucket = buckets[min(int((job.finished_at - start) // width), BUCKETS - 1)]
        bucket.finished += 1
        bucket.failed += job.status is not JobStatus.SUCCEEDED
        if job.started_at is not None:
            bucket.seconds += max(job.finished_at - job.started_at, 0.0)
    return Stats(counts, buckets, len(jobs), partial, now)


def chart_svg(stats: Stats, width: int = 600, height: int = 160) -> str:
    """An SVG chart: bars of jobs finished per bucket (failed ones darker)
    and a line of their mean run time, each on its own scale."""
    pad, bar_gap = 28, 4
    inner_w, inner_h = width - 2 * pad, height - 2 * pad
    slot = inner_w / len(stats.buckets)
    most = max((b.finished for b in stats.buckets), default=0) or 1
    longest = max((b.mean_seconds or 0.0 for b in stats.buckets), default=0.0) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}"'
             f' role="img" aria-label="Jobs finished and mean run time, last hour">']
    parts.append(f'<line x1="{pad}" y1="{pad + inner_h}" x2="{pad + inner_w}"'
                 f' y2="{pad + inner_h}" class="axis"/>')
    points = []
    for i, bucket in enumerate(stats.buckets):
        x = pad + i * slot + bar_gap / 2
        h = inner_h * bucket.finished / most
        fh = inner_h * bucket.failed / most
        minutes = round((stats.now - bucket.start) / 60)
        title = (f"{minutes} to {minutes - 5} min ago: {bucket.finished} finished,"
                 f" {bucket.failed} not succeeded")
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{pad + inner_h - h:.1f}"'
                     f' width="{slot - bar_gap:.1f}" height="{h:.1f}">'
                     f"<title>{title}</title></rect>")
        if fh:
            parts.append(f'<rect class="bar-failed" x="{x:.1f}" y="{pad + inner_h - fh:.1f}"'
                         f' width="{slot - bar_gap:.1f}" height="{fh:.1f}"/>')
        if bucket.mean_seconds is not None:
            y = pad + inner_h - inner_h * bucket.mean_seconds / longest
            points.append(f"{x + (slot - bar_gap) / 2:.1f},{y:.1f}")
    if points:
        parts.append(f'<polyline class="duration" points="{" ".join(points)}"/>')
        for point in points:
            x_y = point.split(",")
            parts.append(f'<circle class="duration-point" cx="{x_y[0]}" cy="{x_y[1]}" r="2.5"/>')
    parts.append(f'<text x="{pad}" y="{pad - 8}" class="label">{most} jobs</text>')
    parts.append(f'<text x="{pad + inner_w}" y="{pad - 8}" class="label duration-label"'
                 f' text-anchor="end">{longest:.2g} s mean run</text>')
    parts.append(f'<text x="{pad}" y="{height - 6}" class="label">-60 min</text>')
    parts.append(f'<text x="{pad + inner_w}" y="{height - 6}" class="label"'
                 ' text-anchor="end">now</text>')
    parts.append("</svg>")
    return "".join(parts)

__all__ = [
    "BUCKETS",
    "MOST_READ",
    "PAGE",
    "WINDOW",
    "Bucket",
    "Stats",
    "chart_svg",
    "compute",
    "recent_jobs",
]
