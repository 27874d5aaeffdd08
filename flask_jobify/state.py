"""Per-app runtime of Flask-Jobify: settings, store, executor, monitor.

One :class:`JobifyState` lives in ``app.extensions["jobify"]`` for each app
the extension is registered with; nothing is kept on the extension itself.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
import typing as t

from flask import Flask

from . import config as defaults
from .capture import CapturedRequest
from .context import JobHandle
from .executor import ThreadExecutor
from .models import ACTIVE_STATUSES, Job, JobError, JobStatus
from .monitor import Monitor
from .options import JobOptions
from .runner import run_request
from .signals import job_finished, job_started
from .stores import store_from_url
from .stores.base import JobStore
from .webhooks import WebhookDispatcher


@dataclasses.dataclass(frozen=True)
class Settings:
    """The ``JOBIFY_*`` config keys of one app, read once at ``init_app``."""

    store: str
    max_workers: int
    max_queued: int
    max_wait: float
    result_ttl: float
    default_timeout: float | None
    retry_after: int
    all_views: bool
    url_prefix: str
    shutdown_grace: float
    cleanup_interval: float
    cancel_check_interval: float
    expose_errors: bool
    drop_headers: tuple[str, ...]
    swagger_ui: bool
    swagger_ui_url: str
    webhook_secret: str | None
    webhook_max_attempts: int
    webhook_backoff: float
    webhook_max_backoff: float
    webhook_timeout: float
    webhook_workers: int
    webhook_allowed_hosts: tuple[str, ...]

    @classmethod
    def from_app(cls, app: Flask) -> Settings:
        values: dict[str, t.Any] = {}
        for field in dataclasses.fields(cls):
            name = field.name.upper()
            values[field.name] = app.config.setdefault(f"JOBIFY_{name}", getattr(defaults, name))
        if values["store"] is None:
            values["store"] = "sqlite:///" + os.path.join(app.instance_path, "jobify.sqlite3")
        if values["expose_errors"] is None:
            values["expose_errors"] = bool(app.debug)
        values["drop_headers"] = tuple(h.lower() for h in values["drop_headers"])
        hosts = values["webhook_allowed_hosts"]
        if isinstance(hosts, str):  # "a.example, 127.0.0.1" from an env var
            hosts = hosts.replace(",", " ").split()
        values["webhook_allowed_hosts"] = tuple(h.lower().rstrip(".") for h in hosts)
        return cls(**values)


class JobifyState:
    """Everything Flask-Jobify keeps for one app.

    Thread-safe. The store decides what is shared between processes; the
    executor, the monitor and the table of jobs running here are per
    process.
    """

    def __init__(
        self,
        app: Flask,
        settings: Settings,
        *,
        store: JobStore | None = None,
        load_owner: t.Callable[[], str | None] = lambda: None,
    ) -> None:
        self.app = app
        self._load_owner = load_owner
        self.settings = settings
        self.store = store if store is not None else store_from_url(settings.store)
        self.executor = ThreadExecutor(settings.max_workers, settings.max_queued)
        self.monitor = Monitor(self._on_deadline, self._sweep, settings.cleanup_interval)
        self._lock = threading.Lock()
        # Jobs this process has accepted and not yet finished: id -> handle
        # (None while pending).
        self._local: dict[str, JobHandle | None] = {}
        #: Guards the one-time wrapping of every view (``JOBIFY_ALL_VIEWS``).
        self.wrap_lock = threading.Lock()
        self.all_views_wrapped = False
        #: Sends webhooks when jobs end (see :mod:`flask_jobify.webhooks`).
        self.webhooks = WebhookDispatcher(app, self.store, settings)

    def current_owner(self) -> str | None:
        """The caller's identity, from the extension's owner loader."""
        return self._load_owner()

    def may_see(self, job: Job) -> bool:
        """Whether the caller may see ``job`` (see :func:`visible_to`)."""
        return visible_to(job, self.current_owner())

    # -- accepting ---------------------------------------------------------
    def submit(self, job: Job, captured: CapturedRequest, options: JobOptions) -> bool:
        """Store ``job`` and queue it to run; ``False`` (and nothing stored)
        when the queue is full or the process is stopping."""
        self.store.create(job)
        return self.enqueue(job, captured, options)

    def enqueue(self, job: Job, captured: CapturedRequest, options: JobOptions) -> bool:
        """Queue a stored ``job`` to run; ``False`` (and the job deleted)
        when the queue is full or the process is stopping."""
        self.monitor.start()  # sweeps expired jobs even if none has a timeout
        with self._lock:
            self._local[job.id] = None
        task = functools.partial(self.run, job.id, captured, options)
        if self.executor.submit(task):
            return True
        with self._lock:
            self._local.pop(job.id, None)
        self.store.delete(job.id)
        return False

    # -- running -----------------------------------------------------------
    def run(self, job_id: str, captured: CapturedRequest, options: JobOptions) -> None:
        """Run an accepted job to its end, in the calling thread."""
        try:
            job = self.store.update(
                job_id,
                {"status": JobStatus.RUNNING, "started_at": time.time(), "attempts": 1},
                only_if=[JobStatus.PENDING],
            )
            if job is None:  # cancelled or deleted while it waited
                return
            handle = JobHandle(
                job_id, self.store, cancel_check_interval=self.settings.cancel_check_interval
            )
            with self._lock:
                self._local[job_id] = handle
            timeout = self.timeout_of(options)
            if timeout is not None:
                self.monitor.add_deadline(job_id, time.monotonic() + timeout)
            job_started.send(self.app, job=job)
            try:
                outcome = run_request(
                    self.app, captured, handle, expose_errors=self.settings.expose_errors
                )
            finally:
                self.monitor.discard(job_id)
            # Cancellation is cooperative: a job ends as cancelled when its
            # view noticed; one that finished first keeps its result.
            if outcome.cancelled:
                self.finish(job_id, JobStatus.CANCELLED, error=_cancelled_error())
                return
            stored = outcome.response
            assert stored is not None
            if stored.status < 400:
                self.finish(job_id, JobStatus.SUCCEEDED, http_status=stored.status, result=stored)
                return
            error = outcome.error or JobError(
                "http_error", f"The view answered with HTTP {stored.status}."
            )
            self.finish(job_id, JobStatus.FAILED, http_status=stored.status, error=error, result=stored)
        finally:
            with self._lock:
                self._local.pop(job_id, None)

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        only_if: t.Iterable[JobStatus] = (JobStatus.RUNNING,),
        **changes: t.Any,
    ) -> Job | None:
        """End a job with a final ``status`` unless it ended already."""
        result = changes.pop("result", None)
        job = self.store.update(job_id, {"status": status, **changes}, only_if=only_if, result=result)
        if job is not None:
            job_finished.send(self.app, job=job)
        return job

    def timeout_of(self, options: JobOptions) -> float | None:
        return options.timeout if options.timeout is not None else self.settings.default_timeout

    def result_ttl_of(self, options: JobOptions) -> float:
        return options.result_ttl if options.result_ttl is not None else self.settings.result_ttl

    # -- cancelling --------------------------------------------------------
    def cancel(self, job: Job) -> Job | None:
        """Cancel an active job: a pending one at once, a running one by
        request. Return the job after the change, ``None`` if it had ended."""
        for _ in range(3):  # it may start between our read and our write
            if job.status is JobStatus.PENDING:
                done = self.finish(
                    job.id, JobStatus.CANCELLED, only_if=[JobStatus.PENDING],
                    cancel_requested=True, error=_cancelled_error(),
                )
                if done is not None:
                    return done
            elif job.status is JobStatus.RUNNING:
                asked = self.store.update(
                    job.id, {"cancel_requested": True}, only_if=[JobStatus.RUNNING]
                )
                if asked is not None:
                    self._tell_local(job.id)
                    return asked
            else:
                return None
            again = self.store.get(job.id)
            if again is None:
                return None
            job = again
        return None

    def _tell_local(self, job_id: str) -> None:
        with self._lock:
            handle = self._local.get(job_id)
        if handle is not None:
            handle.request_cancel()

    def _on_deadline(self, job_id: str) -> None:
        job = self.finish(
            job_id, JobStatus.TIMED_OUT, only_if=ACTIVE_STATUSES, cancel_requested=True,
            error=JobError("timeout", "The job ran past its time limit; its result is discarded."),
        )
        if job is not None:
            self._tell_local(job_id)

    def _sweep(self) -> None:
        self.store.purge_expired()

    # -- stopping ----------------------------------------------------------
    def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting jobs, give running ones ``grace`` seconds, and mark
        what did not finish as ``failed`` (error type ``shutdown``)."""
        grace = self.settings.shutdown_grace if grace is None else grace
        self.executor.close()
        self._fail_local(pending_only=True)
        self.executor.shutdown(grace)
        self._fail_local(pending_only=False)
        self.monitor.stop()
        self.webhooks.close()

    def _fail_local(self, *, pending_only: bool) -> None:
        with self._lock:
            local = dict(self._local)
        error = JobError("shutdown", "The server stopped before the job finished; submit it again.")
        for job_id, handle in local.items():
            if pending_only and handle is not None:
                continue
            if self.finish(job_id, JobStatus.FAILED, only_if=ACTIVE_STATUSES, error=error):
                if handle is not None:
                    handle.request_cancel()


def visible_to(job: Job, owner: str | None) -> bool:
    """Whether ``owner`` may see ``job``: jobs with an owner are seen only
    by that owner; jobs without one by anyone who knows their id."""
    return job.owner is None or job.owner == owner


def _cancelled_error() -> JobError:
    return JobError("cancelled", "The job was cancelled.")
