"""``flask jobs``: see and steer an app's jobs from a terminal.

Registered on ``app.cli`` by :meth:`Jobify.init_app
<flask_jobify.Jobify.init_app>`. Every command works on the app's store
(``JOBIFY_STORE``), so from any machine that reaches it; a ``memory://``
store is the command's own, and empty. Without ``--owner`` a command sees
every job of the app (whoever can run ``flask`` with the app's config can
read its store anyway); with ``--owner ID`` it sees what the HTTP API
shows that caller. A command does its work and exits: it starts no thread
of its own (no heartbeats, no lost-job sweeps) and runs no job itself
(``rerun`` hands the job to the serving processes or to Celery).

A job id may start with ``-``: put ids after ``--`` in scripts
(``flask jobs cancel -- ID...``), so that one is not read as an option.

Exit codes: ``0`` done, ``1`` a job was not found or could not be acted
on, or the store failed (the message says why), ``2`` bad arguments
(click's).

.. versionadded:: 0.2
"""
from __future__ import annotations

import json
import math
import sys
import time
import typing as t

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .errors import JobifyHTTPError, StoreError, redact_url
from .models import FINAL_STATUSES, Job, JobStatus, is_valid_job_id, isoformat
from .overview import iter_jobs, parse_duration, stats
from .rerun import RERUN_OF, rerun
from .stores.base import NO_OWNER, OwnerFilter

if t.TYPE_CHECKING:
    from .state import JobifyState

__all__ = [
    "DURATION",
    "JobsGroup",
    "cancel_command",
    "jobs_cli",
    "list_command",
    "owner_option",
    "purge_command",
    "rerun_command",
    "show_command",
    "stats_command",
    "watch_command",
]

_STATUSES = [status.value for status in JobStatus]
_FINAL = [status.value for status in JobStatus if status in FINAL_STATUSES]
#: ANSI: cursor home, clear to the end of the screen.
_HOME_CLEAR = "\x1b[H\x1b[J"


class _Duration(click.ParamType[float]):
    name = "duration"

    def convert(self, value: t.Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()


def _interval(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds.", ctx, param)
    return value


class JobsGroup(AppGroup):
    """The ``jobs`` group: a store that fails (Redis down, a locked SQLite
    file) ends a command with a message and exit code ``1``, not a traceback."""

    def invoke(self, ctx: click.Context) -> t.Any:
        try:
            return super().invoke(ctx)
        except StoreError as exc:
            raise click.ClickException(f"The job store failed: {redact_url(str(exc))}") \
                from None

owner_option = click.option(
    "--owner", default=None,
    help="Act as this caller: only the jobs the HTTP API shows them ('' for a caller"
         " without an owner).")


@click.group("jobs", cls=JobsGroup)
@with_appcontext
def jobs_cli() -> None:
    """See and steer the app's background jobs."""
    state = _state()
    if not state.store.shared_across_processes:
        click.echo("Note: the store is memory://, this command's own: it holds no jobs of"
                   " the app's servers.", err=True)


def _state() -> JobifyState:
    try:
        return t.cast("JobifyState", current_app.extensions["jobify"])
    except KeyError:
        raise click.ClickException("Flask-Jobify is not registered with this app.") from None


def _owner_filter(owner: str | None) -> OwnerFilter:
    return None if owner is None else (NO_OWNER if owner == "" else owner)


def _find(state: JobifyState, job_id: str, owner: str | None) -> Job | None:
    """The job, if it is shaped like an id, exists, is this app's and the
    ``--owner`` (if any) may see it."""
    if not is_valid_job_id(job_id):
        return None
    job = state.store.get(job_id)
    if job is None or not state.owns(job):
        return None
    if owner is not None and job.owner is not None and job.owner != (owner or None):
        return None
    return job


def _ago(timestamp: float | None, now: float) -> str:
    return "-" if timestamp is None else _seconds(now - timestamp) + " ago"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"
    if value < 3600:
        return f"{value / 60:.1f}m"
    if value < 86400:
        return f"{value / 3600:.1f}h"
    return f"{value / 86400:.1f}d"


def _ran(job: Job, now: float) -> float | None:
    if job.started_at is None:
        return None
    return (job.finished_at if job.finished_at is not None else now) - job.started_at


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def _jobs_table(jobs: list[Job], now: float) -> str:
    rows = [["ID", "STATUS", "OPERATION", "REQUEST", "OWNER", "CREATED", "RAN", "RUNS",
             "PROGRESS"]]
    for job in jobs:
        progress = job.progress
        rows.append([
            job.id, job.status.value + ("*" if job.cancel_requested and not job.is_final else ""),
            job.operation or "-", f"{job.method} {job.path}", job.owner or "-",
            _ago(job.created_at, now), _seconds(_ran(job, now)),
            f"{job.attempts}/{job.max_attempts}",
            "-" if progress.percent is None else f"{progress.percent:g}%",
        ])
    return _table(rows)


def _record(job: Job) -> dict[str, t.Any]:
    data = job.to_dict()
    for name in ("created_at", "started_at", "finished_at", "expires_at", "lease_until"):
        data[name] = isoformat(data[name])
    return data


@jobs_cli.command("list")
@click.option("--status", type=click.Choice(_STATUSES), help="Only jobs with this status.")
@click.option("--operation", help="Only jobs of this operation (the view's endpoint).")
@owner_option
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of job records.")
def list_command(status: str | None, operation: str | None, owner: str | None, limit: int,
                 as_json: bool) -> None:
    """List jobs, newest first."""
    state = _state()
    jobs = list(iter_jobs(state.store, app=state.name, limit=limit,
                          status=JobStatus(status) if status else None,
                          operation=operation, owner=_owner_filter(owner)))
    if as_json:
        click.echo(json.dumps([_record(job) for job in jobs], indent=2))
    elif jobs:
        click.echo(_jobs_table(jobs, time.time()))
    else:
        click.echo("No jobs.")


@jobs_cli.command("show")
@click.argument("job_id")
@owner_option
@click.option("--json", "as_json", is_flag=True, help="The job record as JSON.")
def show_command(job_id: str, owner: str | None, as_json: bool) -> None:
    """Show a job: its record, its timeline and its error."""
    state = _state()
    job = _find(state, job_id, owner)
    if job is None:
        raise click.ClickException(f"No job {job_id} (it never existed, or it expired).")
    if as_json:
        click.echo(json.dumps(_record(job), indent=2))
        return
    now = time.time()
    lines = [f"Job {job.id}", f"  status     {job.status.value}"
             + (" (cancellation requested)" if job.cancel_requested and not job.is_final else ""),
             f"  operation  {job.operation or '-'}", f"  request    {job.method} {job.path}",
             f"  owner      {job.owner or '-'}",
             f"  runs       {job.attempts} of {job.max_attempts}"]
    if job.http_status is not None:
        lines.append(f"  http       {job.http_status}")
    if job.progress.percent is not None or job.progress.message:
        lines.append(f"  progress   {job.progress.percent}% {job.progress.message or ''}".rstrip())
    if RERUN_OF in job.meta:
        lines.append(f"  re-runs    {job.meta[RERUN_OF]}")
    lines.append("Timeline")
    lines.append(f"  created    {isoformat(job.created_at)}")
    if job.started_at is not None:
        lines.append(f"  started    {isoformat(job.started_at)}  (waited"
                     f" {_seconds(job.started_at - job.created_at)})")
    if job.finished_at is not None:
        lines.append(f"  finished   {isoformat(job.finished_at)}  (ran"
                     f" {_seconds(_ran(job, now))})")
    if job.expires_at is not None:
        lines.append(f"  expires    {isoformat(job.expires_at)}")
    if job.error is not None:
        lines += ["Error", f"  {job.error.type}: {job.error.message}"]
        if job.error.traceback:
            lines += ["  " + line for line in job.error.traceback.rstrip().splitlines()]
    hook = job.meta.get("webhook")
    if hook:
        lines += ["Webhook", f"  {hook.get('url')}: {hook.get('attempts')} attempt(s),"
                  f" delivered: {hook.get('delivered')}, last: {hook.get('lastStatus')}"
                  f" {hook.get('lastError') or ''}".rstrip()]
    click.echo("\n".join(lines))


@jobs_cli.command("cancel")
@click.argument("job_ids", nargs=-1, required=True, metavar="ID...")
@owner_option
def cancel_command(job_ids: tuple[str, ...], owner: str | None) -> None:
    """Cancel jobs: a pending one at once, a running one by request (it ends
    cancelled once its view notices). Finished jobs are left alone."""
    state = _state()
    missing = 0
    for job_id in job_ids:
        job = _find(state, job_id, owner)
        if job is None:
            click.echo(f"{job_id}: no such job", err=True)
            missing += 1
            continue
        changed = state.cancel(job) if not job.is_final else None
        if changed is None:
            current = state.store.get(job.id) or job
            click.echo(f"{job_id}: already {current.status.value}")
        elif changed.is_final:
            click.echo(f"{job_id}: cancelled")
        else:
            click.echo(f"{job_id}: cancellation requested (it is running)")
    if missing:
        sys.exit(1)


@jobs_cli.command("rerun")
@click.argument("job_id")
@owner_option
def rerun_command(job_id: str, owner: str | None) -> None:
    """Run a failed job's request again, as a new job (needs
    JOBIFY_KEEP_FAILED_REQUESTS when it was accepted). Prints the new id."""
    state = _state()
    if _find(state, job_id, owner) is None:
        raise click.ClickException(f"No job {job_id} (it never existed, or it expired).")
    try:
        job = rerun(state, job_id, hand_off=True)
    except JobifyHTTPError as exc:
        raise click.ClickException(str(exc.description)) from None
    click.echo(job.id)


@jobs_cli.command("purge")
@click.option("--status", "statuses", type=click.Choice(_FINAL), multiple=True,
              help="Only finished jobs with this status (repeatable; default: every final"
                   " status).")
@click.option("--older-than", type=DURATION, default=0.0,
              help="Only jobs that finished at least this long ago: 90s, 15m, 2h, 7d.")
@click.option("--operation", help="Only jobs of this operation.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def purge_command(statuses: tuple[str, ...], older_than: float, operation: str | None,
                  yes: bool) -> None:
    """Forget finished jobs and their results before they expire."""
    state = _state()
    cutoff = time.time() - older_than
    doomed = [job.id for status in (statuses or _FINAL)
              for job in iter_jobs(state.store, app=state.name, status=JobStatus(status),
                                   operation=operation)
              if (job.finished_at or job.created_at) <= cutoff]
    if not doomed:
        click.echo("No jobs to purge.")
        return
    if not yes:
        click.confirm(f"Forget {len(doomed)} job(s) and their results?", abort=True)
    gone = sum(state.store.delete(job_id) for job_id in doomed)
    click.echo(f"Purged {gone} job(s).")


@jobs_cli.command("stats")
@click.option("--window", type=DURATION, default="1h", show_default=True,
              help="Durations of the jobs that finished within this window.")
@owner_option
@click.option("--json", "as_json", is_flag=True)
def stats_command(window: float, owner: str | None, as_json: bool) -> None:
    """Counts by status and operation; queue wait and run time p50/p95."""
    state = _state()
    found = stats(state.store, app=state.name, window=window, owner=_owner_filter(owner))
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2))
        return
    click.echo(_table([["STATUS", "JOBS"]]
                      + [[name, str(count)] for name, count in found.by_status.items()]))
    if found.by_operation:
        click.echo("")
        rows = [["OPERATION", *_STATUSES]]
        for operation, counts in sorted(found.by_operation.items()):
            rows.append([operation or "-", *(str(counts.get(s, 0)) for s in _STATUSES)])
        click.echo(_table(rows))
    click.echo(f"\nFinished in the last {_seconds(window)}:")
    if not found.durations:
        click.echo("  none")
        return
    rows = [["OPERATION", "JOBS", "WAIT P50", "WAIT P95", "RUN P50", "RUN P95"]]
    for operation, durations in sorted(found.durations.items()):
        summary = durations.summary()
        rows.append([operation or "-", str(summary["count"]),
                     *(_seconds(summary[k]) for k in ("wait_p50", "wait_p95", "run_p50",
                                                      "run_p95"))])
    click.echo(_table(rows))


@jobs_cli.command("watch")
@click.option("--interval", type=click.FloatRange(min=0.1, max=3600.0), default=1.0,
              show_default=True, callback=_interval, help="Seconds between two refreshes.")
@click.option("--status", type=click.Choice(_STATUSES))
@click.option("--operation")
@owner_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def watch_command(interval: float, status: str | None, operation: str | None,
                  owner: str | None, limit: int) -> None:
    """A live view of the newest jobs, refreshed in place; Ctrl-C ends it."""
    state = _state()
    terminal = sys.stdout.isatty()
    try:
        while True:
            try:
                jobs = list(iter_jobs(state.store, app=state.name, limit=limit,
                                      status=JobStatus(status) if status else None,
                                      operation=operation, owner=_owner_filter(owner)))
                now = time.time()
                body = _jobs_table(jobs, now) if jobs else "No jobs."
            except StoreError as exc:
                body = f"The store failed: {exc}; trying again."
            head = (f"Jobs of {state.name} at {isoformat(time.time())}"
                    f"  (every {interval:g}s; Ctrl-C to stop)")
            click.echo((_HOME_CLEAR if terminal else "\n") + head + "\n\n" + body)
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("")
