"""Reading an app's jobs in bulk from its store: what ``flask jobs list``,
``stats``, ``purge`` and ``watch`` show, with no Flask or click in sight.

Everything here uses the public store API (:meth:`JobStore.list
<flask_jobify.stores.base.JobStore.list>`, paged with its cursor), so it
works on every store and from any machine that reaches it. Thread-safe
(the stores are).
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
import typing as t

from .models import FINAL_STATUSES, Job, JobStatus
from .stores.base import JobStore, OwnerFilter

__all__ = [
    "MAX_DURATION",
    "PAGE",
    "Durations",
    "Stats",
    "iter_jobs",
    "parse_duration",
    "percentile",
    "stats",
]

#: Jobs read per store call when walking every job.
PAGE = 500
#: The longest duration :func:`parse_duration` accepts, in seconds: 100
#: years, longer than any job is kept.
MAX_DURATION = 100 * 365 * 86400.0

_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"`` or ``"1w"``.

    :raises ValueError: for anything else (negative, empty, ``"7 days"``,
        longer than :data:`MAX_DURATION`).
    """
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration: use a number with s, m, h, d or w"
                         " (90s, 15m, 2h, 7d).")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not seconds <= MAX_DURATION:  # also inf, from a number of 309 digits
        raise ValueError(f"{text!r} is too long: at most {MAX_DURATION // 86400:.0f}d.")
    return seconds


def iter_jobs(
    store: JobStore,
    *,
    app: str | None,
    status: JobStatus | None = None,
    operation: str | None = None,
    owner: OwnerFilter = None,
    limit: int | None = None,
) -> t.Iterator[Job]:
    """Every unexpired job of ``app`` that passes the filters, newest first,
    read :data:`PAGE` at a time (as :meth:`JobStore.list` filters them);
    at most ``limit`` of them (``None``: all)."""
    after: tuple[float, str] | None = None
    left = math.inf if limit is None else limit
    while left > 0:
        size = int(min(PAGE, left))
        page = store.list(status=status, operation=operation, owner=owner, limit=size,
                          after=after, app=app)
        yield from page
        left -= len(page)
        if len(page) < size:
            return
        after = (page[-1].created_at, page[-1].id)


def percentile(values: t.Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` (0 to 1) percentile of ``values`` by the
    nearest-rank method (a value that occurred), ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclasses.dataclass
class Durations:
    """Seconds of the jobs of one operation that finished in the window:
    ``wait`` from created to started, ``run`` from started to finished (of
    the last run)."""

    wait: list[float] = dataclasses.field(default_factory=list)
    run: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, float | int | None]:
        """``count``, and ``p50``/``p95`` of ``wait`` and ``run`` (seconds)."""
        return {"count": len(self.run),
                "wait_p50": percentile(self.wait, 0.5), "wait_p95": percentile(self.wait, 0.95),
                "run_p50": percentile(self.run, 0.5), "run_p95": percentile(self.run, 0.95)}


@dataclasses.dataclass
class Stats:
    """What :func:`stats` found: counts of every unexpired job, by status
    and by operation and status; durations of the jobs that finished
    within the window, by operation."""

    window: float
    by_status: dict[str, int] = dataclasses.field(default_factory=dict)
    by_operation: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    durations: dict[str, Durations] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, t.Any]:
        """A JSON-compatible form (``flask jobs stats --json``)."""
        return {"window": self.window, "byStatus": self.by_status,
                "byOperation": self.by_operation,
                "durations": {op: d.summary() for op, d in sorted(self.durations.items())}}


def stats(store: JobStore, *, app: str | None, window: float, owner: OwnerFilter = None,
          now: float | None = None) -> Stats:
    """Count every unexpired job of ``app`` (one pass over them all), and
    gather the durations of those that finished in the last ``window``
    seconds."""
    now = time.time() if now is None else now
    found = Stats(window=window, by_status={status.value: 0 for status in JobStatus})
    for job in iter_jobs(store, app=app, owner=owner):
        found.by_status[job.status.value] += 1
        counts = found.by_operation.setdefault(job.operation, {})
        counts[job.status.value] = counts.get(job.status.value, 0) + 1
        if (job.status in FINAL_STATUSES and job.finished_at is not None
                and job.started_at is not None and job.finished_at >= now - window):
            durations = found.durations.setdefault(job.operation, Durations())
            durations.wait.append(max(0.0, job.started_at - job.created_at))
            durations.run.append(max(0.0, job.finished_at - job.started_at))
    return found
