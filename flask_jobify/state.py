"""Per-app runtime of Flask-Jobify: it puts the pieces together.

One :class:`JobifyState` lives in ``app.extensions["jobify"]`` for each app
the extension is registered with; nothing is kept on the extension itself.
It holds the settings, the store, the scheduler, the
:class:`~flask_jobify.lifecycle.Lifecycle`, the executor, the
:class:`~flask_jobify.worker.Worker` that executes runs, the
:class:`~flask_jobify.leases.Leases` of the jobs this process holds, and
the webhook dispatcher; and it starts and stops them.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import typing as t

from flask import Flask

from .access import require_admin
from .capture import CapturedRequest
from .celery_executor import CeleryNotInitialised
from .config import Settings
from .errors import ConfigError, ContentTooLarge, StoreError, redact_url
from .estimates import Estimator
from .executor import Executor, Run
from .leases import Held, Leases
from .lifecycle import Lifecycle
from .models import Job, JobStatus
from .options import JobOptions
from .queues import Queues
from .quota import check_owner_quota
from .scheduler import Scheduler
from .serving import on_stop_signals
from .stores import store_from_url
from .stores.base import JobStore, of_app
from .thread_executor import ThreadExecutor
from .webhooks import SecretLoader, WebhookDispatcher
from .worker import Worker

__all__ = ["JobifyState", "RequestFilter", "visible_to"]

logger = logging.getLogger("flask_jobify")

#: Called on every captured request before a job keeps it: returns the
#: request to keep (``Jobify.request_filter``).
RequestFilter = t.Callable[[CapturedRequest], CapturedRequest]


class JobifyState:
    """Everything Flask-Jobify keeps for one app.

    Thread-safe. The store decides what is shared between processes; the
    executor, the scheduler and the table of jobs held here
    (:mod:`flask_jobify.leases`) are per process.
    """

    def __init__(
        self,
        app: Flask,
        settings: Settings,
        *,
        store: JobStore | None = None,
        load_owner: t.Callable[[], str | None] = lambda: None,
        load_callback_secret: SecretLoader | None = None,
        require_admin: t.Callable[[], None] = functools.partial(require_admin, None),
    ) -> None:
        self.app = app
        self._load_owner = load_owner
        #: Raises :class:`~flask_jobify.errors.AccessDenied` unless the
        #: caller may use the admin surfaces (``Jobify.dashboard_access``).
        self.require_admin = require_admin
        self.settings = settings
        self.store = store if store is not None else _open_store(settings)
        self.store.keep_failed_requests = settings.keep_failed_requests  # for re-runs
        self.scheduler = Scheduler()
        #: Every change of a job's status goes through it.
        self.lifecycle = Lifecycle(app, self.store,
                                   store_retry_seconds=settings.store_retry_seconds)
        #: The jobs this process holds, and the recovery of lost ones.
        self.leases = Leases(
            self.store, self.lifecycle, self.scheduler, app=app,
            lease_seconds=settings.lease_seconds, redispatch=self._redispatch,
            closed=lambda: self.closed, local=lambda: self.executor.local)
        #: The execution queues' slots, taken by runs before they start.
        self.queues = Queues(
            self.store, self.scheduler, self.lifecycle, lease_until=self.leases.lease_until,
            local=lambda: self.executor.local, requeue=self._requeue)
        #: Executes the runs of jobs, wherever the executor has them run.
        self.worker = Worker(app, settings, self.lifecycle, self.leases, self.scheduler,
                             dispatch=self._dispatch_retry, start=self.start,
                             queues=self.queues)
        #: Where runs execute: this process's threads, or Celery workers
        #: once :meth:`Jobify.init_celery` called :meth:`use_executor`.
        self.executor: Executor = (
            ThreadExecutor(self.worker.run, self.scheduler, max_workers=settings.max_workers,
                           max_queued=settings.max_queued, refused=self.leases.let_go_run)
            if settings.executor == "thread" else CeleryNotInitialised())
        #: Guards the one-time wrapping of every view (``JOBIFY_ALL_VIEWS``)
        #: and the registration with the app's flask-smorest ``Api``.
        self.wrap_lock = threading.Lock()
        self.all_views_wrapped = False
        #: Set by :meth:`begin_shutdown`, from a signal handler: new jobs are
        #: refused and long-polls answer at once. A plain attribute, as a
        #: signal handler must take no lock.
        self.stopping = False
        #: ``time.monotonic()`` of the last :meth:`end_long_polls`: long-polls
        #: waiting since before it answer. Plain, as :attr:`stopping`.
        self.long_polls_ended_at = float("-inf")
        self._shut_down_in: int | None = None
        self._signals_in: int | None = None
        #: Sends webhooks when jobs end (see :mod:`flask_jobify.webhooks`).
        self.webhooks = WebhookDispatcher(app, self.store, settings,
                                          load_secret=load_callback_secret)
        #: ``estimatedCompletionAt`` and ``queuePosition`` of records.
        self.estimates = Estimator(app, self.store, slots=settings.max_workers)
        #: Applied to every captured request (``Jobify.request_filter``).
        self.request_filters: list[RequestFilter] = []
        self._started_pid: int | None = None

    def use_executor(self, executor: Executor) -> None:
        """Have the jobs accepted from now on run on ``executor``."""
        self.executor = executor

    def current_owner(self) -> str | None:
        """The caller's identity, from the extension's owner loader."""
        return self._load_owner()

    @property
    def name(self) -> str:
        """The app's name (``app.name``), which its jobs carry (``Job.app``):
        only this app lists, shows, recovers and runs them."""
        return self.app.name

    def owns(self, job: Job) -> bool:
        """Whether ``job`` belongs to this app (see :func:`~flask_jobify.stores.base.of_app`)."""
        return of_app(job, self.name)

    def may_see(self, job: Job) -> bool:
        """Whether the caller may see ``job``: a job of this app (see
        :meth:`owns`) that :func:`visible_to` lets the caller see."""
        return self.owns(job) and visible_to(job, self.current_owner())

    @property
    def closed(self) -> bool:
        """Whether this process stopped accepting jobs."""
        return self.stopping or self.executor.closed

    def start_sweeps(self) -> None:
        """Start sweeping expired jobs from this process: at ``init_app``,
        so that a deployment cleans up before it serves its first request."""
        self.scheduler.every("sweep", self.settings.cleanup_interval, self._sweep)

    def start(self) -> None:
        """Start this process's periodic work (sweeps, heartbeats, lost-job
        recovery) if it is not running yet. Cheap; called on every request
        and every run, so that each process of a deployment takes part, and
        by :meth:`Jobify.start` from a server's worker-boot hook. The first
        call in each process also warns about ``JOBIFY_*`` keys changed
        since ``init_app`` (:meth:`Settings.warn_if_changed`).

        In a process forked from one that had started (gunicorn
        ``--preload``, Celery's prefork pool), the jobs held by the parent
        are the parent's: the child holds none, so it never renews a lease
        it does not hold."""
        pid = os.getpid()
        if self._started_pid == pid:
            return
        self._started_pid = pid
        self.on_stop_signals()
        self.settings.warn_if_changed(self.app.config)
        self.start_sweeps()
        self.leases.start()

    def _sweep(self) -> None:
        self.store.purge_expired()

    # -- accepting ---------------------------------------------------------
    def capture_filtered(self, captured: CapturedRequest) -> CapturedRequest:
        """Apply ``JOBIFY_DROP_HEADERS`` and the request filters."""
        if self.settings.drop_headers:
            captured = captured.without_headers(self.settings.drop_headers)
        for request_filter in self.request_filters:
            captured = request_filter(captured)
        return captured

    def prepare(self, job: Job, captured: CapturedRequest, options: JobOptions) -> None:
        """Fill in what the executor decides about a new ``job``.

        :raises ContentTooLarge: if the job's request must leave the
            process (Celery, or a saved request) and its body is longer
            than ``JOBIFY_MAX_SAVED_BODY``.
        """
        job.max_attempts = options.max_attempts(job.method)
        if self._request_leaves_process(job) and captured.body.size > self.settings.max_saved_body:
            raise ContentTooLarge(
                f"A job's request body may be at most {self.settings.max_saved_body} bytes"
                " (JOBIFY_MAX_SAVED_BODY): it is sent to the job's workers or saved so that"
                " another process can run it again.")
        job.lease_until = self.leases.queued_lease_until()  # held from now on

    def _request_leaves_process(self, job: Job) -> bool:
        """Whether ``job``'s request goes to Celery or is saved in the store."""
        return not self.executor.local or (self.store.shared_across_processes and (
            job.max_attempts > 1 or self.settings.keep_failed_requests))

    def enqueue(self, job: Job, captured: CapturedRequest, options: JobOptions) -> bool:
        """Store ``job`` and dispatch its first run; ``False`` (and nothing
        stored) when the executor refused it (its queue is full, or this
        process is stopping).

        :raises StoreError: if the store fails.
        :raises ExecutorError: if the executor cannot be reached (Celery's
            broker is down); nothing is stored then either.
        """
        self.store.create(job)
        return self.dispatch_new(job, captured, options)

    def dispatch_new(self, job: Job, captured: CapturedRequest, options: JobOptions) -> bool:
        """Dispatch the first run of a stored, new ``job``; ``False`` (and
        the job deleted) when the executor refused it.

        :raises ExecutorError: as :meth:`enqueue`, the job deleted.
        :raises TooManyJobs: (429) if the job's owner has more active jobs
            than ``JOBIFY_MAX_RUNNING_PER_OWNER``, the job deleted.
        """
        check_owner_quota(self.store, job, self.settings.max_running_per_owner,
                          retry_after=self.settings.retry_after)
        saved = self._save_request(job, captured, options)
        try:
            queued = self.dispatch(Run(job.id, captured, options), saved=saved)
        except BaseException:
            self.store.delete(job.id)
            raise
        if not queued:
            self.store.delete(job.id)
        return queued

    def _save_request(self, job: Job, captured: CapturedRequest, options: JobOptions) -> bool:
        """Keep the request of a job that may run again in a shared store,
        so that another process can run it if this one dies (of every job
        with ``JOBIFY_KEEP_FAILED_REQUESTS``, so that a failed one can be
        re-run)."""
        if not self.store.shared_across_processes or (
                job.max_attempts < 2 and not self.settings.keep_failed_requests):
            return False
        data = {"request": captured.to_dict(), "options": options.to_dict()}
        self.store.save_request(job.id, json.dumps(data).encode())
        return True

    def dispatch(
        self, run: Run, *, saved: bool, countdown: float = 0.0, force: bool = False
    ) -> bool:
        """Hand ``run`` to the executor, after ``countdown`` seconds; with a
        local executor, this process holds the job from now on. ``force``
        goes past a full queue (the job was accepted already); ``saved``
        tells whether the job's request is saved in the store.

        :raises ExecutorError: if the executor cannot be reached.
        """
        self.start()
        entry = None
        if self.executor.local:
            entry = Held(attempts=run.attempt - 1, saved=saved)
            self.leases.hold(run.job_id, entry)
        try:
            queued = self.executor.dispatch(run, countdown=countdown, force=force)
        except BaseException:
            if entry is not None:
                self.leases.drop(run.job_id, entry)
            raise
        if not queued and entry is not None:
            self.leases.drop(run.job_id, entry)
        return queued

    def _dispatch_retry(self, run: Run, countdown: float, saved: bool) -> bool:
        return self.dispatch(run, saved=saved, countdown=countdown, force=True)

    def _redispatch(self, run: Run, saved: bool) -> bool:
        return self.dispatch(run, saved=saved, force=True)

    def _requeue(self, run: Run, countdown: float) -> bool:
        """A run that waits for a slot, to the executor again (still held here)."""
        return self.executor.dispatch(run, countdown=countdown, force=True)

    def timeout_of(self, options: JobOptions) -> float | None:
        """Seconds each run with ``options`` may take, or ``None``."""
        return self.worker.timeout_of(options)

    def result_ttl_of(self, options: JobOptions) -> float:
        """Seconds a job with ``options`` is kept once finished."""
        return options.result_ttl if options.result_ttl is not None else self.settings.result_ttl

    # -- cancelling --------------------------------------------------------
    def cancel(self, job: Job) -> Job | None:
        """Cancel an active job: a pending one at once, a running one by
        request (it ends ``cancelled`` when its run ends, whatever the view
        returns). Return the job after the change, ``None`` if it had ended.

        :raises StoreError: if the store fails (the request gets a 503).
        """
        for _ in range(3):  # it may start between our read and our write
            if job.status is JobStatus.PENDING:
                done = self.lifecycle.cancel_pending(job.id)
                if done is not None:
                    self.executor.revoke(job.id, done.attempts + 1)
                    self.queues.forget(job.id)  # a run parked for a slot lets it go
                    return done
            elif job.status is JobStatus.RUNNING:
                asked = self.lifecycle.request_cancel(job.id)
                if asked is not None:
                    self.leases.request_cancel(job.id)
                    return asked
            else:
                return None
            again = self.store.get(job.id)
            if again is None:
                return None
            job = again
        return None

    # -- stopping ----------------------------------------------------------
    def on_stop_signals(self) -> None:
        """Have this process's stop signals begin the shutdown (see
        :func:`flask_jobify.serving.on_stop_signals`): at ``init_app``, and
        at the first :meth:`start` in the main thread of a process forked
        after it (gunicorn ``--preload`` with ``post_worker_init``, whose
        worker set its own handlers after the fork). Once per process."""
        pid = os.getpid()
        if self._signals_in != pid and on_stop_signals(self):
            self._signals_in = pid

    def begin_shutdown(self) -> None:
        """Refuse new jobs (``503 shutting_down``) and end waiting
        long-polls within :data:`~flask_jobify.serving.STOP_CHECK_INTERVAL`, at once and without
        waiting for anything: safe in a signal handler (it takes no lock).
        Running jobs go on; :meth:`shutdown` gives them their grace."""
        self.stopping = True

    def end_long_polls(self) -> None:
        """Have the long-polls waiting now answer within
        :data:`~flask_jobify.serving.STOP_CHECK_INTERVAL`, and accept jobs
        as before: for a Ctrl-C the program may catch (a REPL) or may end
        on (a server whose request threads interpreter exit waits for).
        Safe in a signal handler."""
        self.long_polls_ended_at = time.monotonic()

    def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting jobs, give running ones ``grace`` seconds, and mark
        what did not finish as ``failed`` (error type ``shutdown``). Jobs
        that another process may take over (their request is saved in a
        shared store, and a running one has runs left) are released to it
        instead: queued ones at once, running ones after the grace (their
        run is told to stop, and its later writes are refused). Once per process: a
        second call (a server's exit hook, then interpreter exit) returns
        at once.

        A second stop signal during the grace (an impatient Ctrl-C, a
        server's quick shutdown raising ``SystemExit``) cuts the grace
        short, never the shutdown: what did not finish is failed or
        released at once, then the exception goes on."""
        pid = os.getpid()
        if self._shut_down_in == pid:
            return
        self._shut_down_in = pid
        self.stopping = True
        grace = self.settings.shutdown_grace if grace is None else grace
        self.executor.close()
        try:
            self.leases.wind_down(pending_only=True)
            self.executor.shutdown(grace)
        finally:  # also when a second signal interrupts the grace
            self.leases.wind_down(pending_only=False)
            self.scheduler.stop()
            self.webhooks.close()


def _open_store(settings: Settings) -> JobStore:
    """The store ``JOBIFY_STORE`` names.

    :raises ConfigError: if it cannot be opened (a URL without a path or
        with a bad port, a folder that cannot be created...).
    """
    try:
        return store_from_url(settings.store, redis_prefix=settings.redis_prefix)
    except (StoreError, OSError, ValueError) as exc:
        reason = str(redact_url(str(exc)))
        raise ConfigError("JOBIFY_STORE", f"a store URL that can be opened ({reason})",
                          settings.store) from None


def visible_to(job: Job, owner: str | None) -> bool:
    """Whether ``owner`` may see ``job``: jobs with an owner are seen only
    by that owner; jobs without one by anyone who knows their id."""
    return job.owner is None or job.owner == owner

