"""Per-app runtime of Flask-Jobify: settings, store, executor, monitor.

One :class:`JobifyState` lives in ``app.extensions["jobify"]`` for each app
the extension is registered with; nothing is kept on the extension itself.
"""
from __future__ import annotations

import dataclasses
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
from .context import JobHandle
from .errors import ConfigError, ContentTooLarge, ExecutorUnavailable, StoreError, redact_url
from .events import EventHub
from .executor import ThreadExecutor
from .lifecycle import Ending, Lifecycle, ending_of, released_error, shutdown_error
from .models import ACTIVE_STATUSES, Job, JobError, JobStatus
from .monitor import Monitor
from .options import JobOptions
from .perprocess import PerProcess
from .runner import Outcome, run_request
from .serving import on_stop_signals
from .settings import Settings
from .signals import job_started
from .stores import store_from_url
from .stores.base import JobStore, of_app
from .webhooks import SecretLoader, WebhookDispatcher

if t.TYPE_CHECKING:
    from .celery_executor import CeleryExecutor

logger = logging.getLogger("flask_jobify")

#: Seconds between two tries of a write the store refused (see
#: ``JobifyState._fail_when_store_is_back``).
_STORE_BACK_INTERVAL = 1.0

#: Called on every captured request before a job keeps it: returns the
#: request to keep (``Jobify.request_filter``).
RequestFilter = t.Callable[[CapturedRequest], CapturedRequest]


@dataclasses.dataclass
class _Held:
    """A job this process holds: queued or running here. Its lease is
    renewed while the store's ``attempts`` is still ``attempts``."""

    attempts: int
    handle: JobHandle | None = None
    #: Its request is saved in the store: another process can take it over.
    saved: bool = False
    #: Runs the job may have in all (known once it runs here).
    max_attempts: int = 1
    #: The failure to write once the store takes a write again (a start or
    #: an end the store refused for longer than JOBIFY_STORE_RETRY_SECONDS).
    unwritten: _Unwritten | None = None


class _Local:
    """What one process holds of an app: the jobs queued or running here,
    under their lock. Made in each process at its first use there (see
    :mod:`flask_jobify.perprocess`): a forked child holds none of its
    parent's jobs, and never renews a lease it does not hold."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, _Held] = {}
        #: Guards the one-time wrapping of every view (``JOBIFY_ALL_VIEWS``).
        self.wrap_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class _Unwritten:
    """A ``failed`` the store refused: written as soon as it takes it."""

    error: JobError
    only_if: tuple[JobStatus, ...]
    expect: t.Mapping[str, t.Any]


class JobifyState:
    """Everything Flask-Jobify keeps for one app.

    Thread-safe. The store decides what is shared between processes; the
    executor, the monitor and the table of jobs held here are per process.

    Every job that a process holds (queued in its thread pool, waiting for
    a retry, or running) carries a lease in the store, renewed by the
    monitor every quarter of ``JOBIFY_LEASE_SECONDS`` to half of it ahead.
    Every process also looks for expired leases as often: a job whose
    process died is noticed within ``JOBIFY_LEASE_SECONDS`` and either
    queued again (when it may be retried and its request was saved) or
    failed with error type ``lost``. Each run has a number (``attempts``)
    and the store refuses writes from any run but the latest, so a run
    given up as lost can no longer change its job, and notices that it
    should stop.
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
        self.executor = ThreadExecutor(settings.max_workers, settings.max_queued)
        #: Set by :meth:`Jobify.init_celery`: jobs then run on Celery workers.
        self.celery: CeleryExecutor | None = None
        self.monitor = Monitor()
        #: Every change of a job's status goes through it.
        self.lifecycle = Lifecycle(app, self.store,
                                   store_retry_seconds=settings.store_retry_seconds)
        self._local: PerProcess[_Local] = PerProcess(_Local)
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
        #: Applied to every captured request (``Jobify.request_filter``).
        self.request_filters: list[RequestFilter] = []
        self._started_pid: int | None = None
        #: Event streams open here, and the all-jobs change feed (issue 17).
        self.events = EventHub.for_state(self)

    @property
    def _lock(self) -> threading.Lock:
        return self._local.get().lock

    @property
    def _held(self) -> dict[str, _Held]:
        return self._local.get().held

    @property
    def wrap_lock(self) -> threading.Lock:
        """Guards the one-time wrapping of every view (``JOBIFY_ALL_VIEWS``)."""
        return self._local.get().wrap_lock

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

    @property
    def uses_celery(self) -> bool:
        return self.settings.executor == "celery"

    def start_sweeps(self) -> None:
        """Start sweeping expired jobs from this process: at ``init_app``,
        so that a deployment cleans up before it serves its first request."""
        self.monitor.every("sweep", self.settings.cleanup_interval, self._sweep)

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
        if self.store.shared_across_processes:
            # Only another process can notice that one died.
            quarter = self.settings.lease_seconds / 4
            self.monitor.every("heartbeat", quarter, self._heartbeat)
            self.monitor.every("reclaim", quarter, self.reclaim_lost)

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
        if not self.uses_celery and self.store.shared_across_processes:
            job.lease_until = self._lease_until()  # held by this process from now on

    def _request_leaves_process(self, job: Job) -> bool:
        """Whether ``job``'s request goes to Celery or is saved in the store."""
        return self.uses_celery or (job.max_attempts > 1 and self.store.shared_across_processes)

    def submit(self, job: Job, captured: CapturedRequest, options: JobOptions) -> bool:
        """Store ``job`` and queue it to run; ``False`` (and nothing stored)
        when the queue is full or the process is stopping.

        :raises ExecutorUnavailable: if Celery's broker refused the job
            (nothing is stored then either).
        """
        self.store.create(job)
        return self.enqueue(job, captured, options)

    def enqueue(self, job: Job, captured: CapturedRequest, options: JobOptions) -> bool:
        """Queue a stored, new ``job`` to run; ``False`` (and the job
        deleted) when the queue is full or the process is stopping."""
        saved = self._save_request(job, captured, options)
        try:
            queued = self._dispatch(job.id, captured, options, attempt=1, saved=saved)
        except ExecutorUnavailable:
            self.store.delete(job.id)
            raise
        if not queued:
            self.store.delete(job.id)
        return queued

    def _save_request(self, job: Job, captured: CapturedRequest, options: JobOptions) -> bool:
        """Keep the request of a job that may run again in a shared store,
        so that another process can run it if this one dies."""
        if job.max_attempts < 2 or not self.store.shared_across_processes:
            return False
        data = {"request": captured.to_dict(), "options": options.to_dict()}
        self.store.save_request(job.id, json.dumps(data).encode())
        return True

    def _dispatch(
        self,
        job_id: str,
        captured: CapturedRequest,
        options: JobOptions,
        *,
        attempt: int,
        saved: bool,
        delay: float = 0.0,
        force: bool = False,
    ) -> bool:
        """Have run number ``attempt`` of a stored job run, after ``delay``
        seconds: on Celery, or on this process's threads. ``force`` goes
        past a full queue (the job was accepted already)."""
        self.start()
        if self.celery is not None:
            return self.celery.send(job_id, captured, options, attempt=attempt, delay=delay)
        if self.uses_celery:
            raise RuntimeError(
                "JOBIFY_EXECUTOR is 'celery' but no Celery app was given:"
                " call jobify.init_celery(celery_app)."
            )
        with self._lock:
            self._held[job_id] = _Held(attempts=attempt - 1, saved=saved)
        task = functools.partial(self.run, job_id, captured, options, attempt)
        if delay > 0:
            self.monitor.call_at(("retry", job_id), time.monotonic() + delay,
                                 functools.partial(self._submit_delayed, job_id, attempt, task))
            return True
        if self.executor.submit(task, force=force):
            return True
        with self._lock:
            self._held.pop(job_id, None)
        return False

    def _submit_delayed(self, job_id: str, attempt: int, task: t.Callable[[], None]) -> None:
        with self._lock:
            held = self._held.get(job_id)
        if held is None or held.attempts != attempt - 1:
            return  # released to the other processes meanwhile
        if not self.executor.submit(task, force=True):  # closed: shutting down
            self._let_go(job_id, held)

    # -- running -----------------------------------------------------------
    def run(
        self, job_id: str, captured: CapturedRequest, options: JobOptions, attempt: int = 1
    ) -> None:
        """Run number ``attempt`` of an accepted job, in the calling thread
        (a thread of this process's pool, or a Celery worker), and store how
        it ended. The job stays held here (its lease renewed) until its end
        is stored, so a slow store never makes it look lost."""
        self.start()
        with self._lock:
            entry = self._held.setdefault(job_id, _Held(attempts=attempt - 1))
        try:
            try:
                job = self.lifecycle.start(job_id, attempt, now=time.time(),
                                           lease_until=self._lease_until())
            except StoreError as exc:
                logger.error("Job %s could not be started: the store refused it (%s); it will"
                             " be failed with error type store_error once the store takes it",
                             job_id, exc)
                self._fail_when_store_is_back(job_id, _Unwritten(
                    JobError("store_error", f"The job could not be started: {exc}"),
                    (JobStatus.PENDING,), {"attempts": attempt - 1}))
                return
            if job is None:  # cancelled, deleted or taken over while it waited
                return
            handle = JobHandle(
                job_id, self.store, attempt=attempt,
                cancel_check_interval=self.settings.cancel_check_interval,
            )
            with self._lock:
                entry.attempts, entry.handle = attempt, handle
                entry.max_attempts = job.max_attempts
            timeout = self.timeout_of(options)
            if timeout is not None:
                self.monitor.call_at(("deadline", job_id), time.monotonic() + timeout,
                                     functools.partial(self._on_deadline, job_id, attempt))
            job_started.send(self.app, job=job)
            try:
                outcome = run_request(
                    self.app, captured, handle, expose_errors=self.settings.expose_errors,
                    keep_cookies=self._keeps_cookies(job),
                )
            except BaseException as exc:  # SystemExit, KeyboardInterrupt, a greenlet killed
                error = JobError(type(exc).__name__, "The run was interrupted.")
                self._end(job_id, attempt, Ending(JobStatus.FAILED, error))
                raise
            finally:
                self.monitor.discard(("deadline", job_id))
            self._conclude(job, captured, options, attempt, outcome, saved=entry.saved)
        finally:
            with self._lock:
                if self._held.get(job_id) is entry:  # a retry holds a new entry
                    del self._held[job_id]

    def _keeps_cookies(self, job: Job) -> bool:
        """Whether the job's stored response keeps ``Set-Cookie`` headers
        (``JOBIFY_RESULT_COOKIES``)."""
        policy = self.settings.result_cookies
        return policy == "always" or (policy == "owner" and job.owner is not None)

    def _conclude(
        self,
        job: Job,
        captured: CapturedRequest,
        options: JobOptions,
        attempt: int,
        outcome: Outcome,
        *,
        saved: bool,
    ) -> None:
        """Store how run number ``attempt`` ended: a final status, or back
        to ``pending`` for a retry."""
        ending = ending_of(outcome)
        if (ending.retryable and attempt < job.max_attempts
                and self._retry(job, captured, options, attempt, ending, saved=saved)):
            return
        self._end(job.id, attempt, ending)

    def _end(self, job_id: str, attempt: int, ending: Ending) -> None:
        """End run number ``attempt``; if the store refuses for longer than
        ``JOBIFY_STORE_RETRY_SECONDS``, fail the job (error type
        ``store_error``) as soon as the store takes it."""
        try:
            self.lifecycle.end(job_id, attempt, ending)
        except StoreError as exc:
            logger.error("Job %s ended %s, but the store refused it (%s); it will be failed"
                         " with error type store_error once the store takes it",
                         job_id, ending.status.value, exc)
            self._fail_when_store_is_back(job_id, _Unwritten(
                JobError("store_error", f"The job's end could not be stored: {exc}"),
                (JobStatus.RUNNING,), {"attempts": attempt}))

    def _fail_when_store_is_back(
        self, job_id: str, unwritten: _Unwritten, entry: _Held | None = None
    ) -> None:
        """Write ``unwritten`` now or, while the store refuses, every second
        from the monitor (and once more at shutdown). The job stays held
        meanwhile: its lease is renewed, and it is never taken for lost."""
        first_try = entry is None
        if entry is None:
            entry = _Held(attempts=unwritten.expect["attempts"], unwritten=unwritten)
            with self._lock:
                self._held[job_id] = entry
        try:
            # Patient in the run's thread; the monitor's later tries fail fast.
            self.lifecycle.fail(job_id, unwritten.error, only_if=unwritten.only_if,
                                expect=unwritten.expect, patient=first_try)
        except StoreError:
            if not self.closed:
                self.monitor.call_at(
                    ("store-retry", job_id), time.monotonic() + _STORE_BACK_INTERVAL,
                    functools.partial(self._fail_when_store_is_back, job_id, unwritten, entry))
                return
            logger.error("Job %s could not be failed (the store still refuses writes) before"
                         " this process stopped: another process will find it lost", job_id)
        with self._lock:
            if self._held.get(job_id) is entry:
                del self._held[job_id]

    def _retry(
        self,
        job: Job,
        captured: CapturedRequest,
        options: JobOptions,
        attempt: int,
        ending: Ending,
        *,
        saved: bool,
    ) -> bool:
        """Put a job whose run failed back to ``pending`` and queue its next
        run after a backoff. ``False`` if it ended meanwhile (a cancel)."""
        delay = options.retry_delay(attempt, self.settings.retry_max_backoff)
        error = t.cast(JobError, ending.error)
        try:
            waiting = self.lifecycle.wait_for_retry(
                job.id, attempt, error,
                lease_until=None if self.uses_celery else self._lease_until())
        except StoreError:
            logger.exception("Job %s could not wait for its next run: the store failed", job.id)
            return False  # ended as it is, or failed once the store takes it
        if waiting is None:
            return True  # ended cancelled (or otherwise) by the lifecycle
        logger.info("Job %s: run %d of %d failed (%s); next run in %.1f s",
                    job.id, attempt, job.max_attempts, error.type, delay)
        try:
            self._dispatch(job.id, captured, options, attempt=attempt + 1, saved=saved,
                           delay=delay, force=True)
        except Exception as exc:  # the broker went away between two runs
            logger.exception("Job %s could not be queued again", job.id)
            self.lifecycle.fail(
                job.id, JobError("executor_unavailable", f"Could not queue a retry: {exc}"),
                only_if=[JobStatus.PENDING], expect={"attempts": attempt})
        return True

    def timeout_of(self, options: JobOptions) -> float | None:
        return options.timeout if options.timeout is not None else self.settings.default_timeout

    def result_ttl_of(self, options: JobOptions) -> float:
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
                    if self.celery is not None:
                        self.celery.revoke(job.id, attempt=done.attempts + 1)
                    return done
            elif job.status is JobStatus.RUNNING:
                asked = self.lifecycle.request_cancel(job.id)
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
            held = self._held.get(job_id)
        if held is not None and held.handle is not None:
            held.handle.request_cancel()

    def _on_deadline(self, job_id: str, attempt: int) -> None:
        try:
            timed_out = self.lifecycle.time_out(job_id, attempt)
        except StoreError:
            logger.warning("Job %s ran past its time limit, but the store failed;"
                           " trying again in 1 s", job_id)
            self.monitor.call_at(("deadline", job_id), time.monotonic() + 1,
                                 functools.partial(self._on_deadline, job_id, attempt))
            return
        if timed_out is not None:
            self._tell_local(job_id)

    def _sweep(self) -> None:
        self.store.purge_expired()

    # -- leases ------------------------------------------------------------
    def _lease_until(self) -> float | None:
        if not self.store.shared_across_processes:
            return None  # nobody else could take the job over
        return time.time() + self.settings.lease_seconds / 2

    def _heartbeat(self) -> None:
        """Renew the lease of every job held here, in one store call; tell a
        running job whose lease is gone (taken over after a stall) to stop."""
        with self._lock:  # each job's run number and handle, as of one moment
            held = {job_id: (entry.attempts, entry.handle) for job_id, entry in self._held.items()}
        if not held:
            return
        began = time.monotonic()
        renewed = self.store.renew_leases(
            {job_id: attempts for job_id, (attempts, _) in held.items()},
            t.cast(float, self._lease_until()),
        )
        took = time.monotonic() - began
        if took > self.settings.lease_seconds / 4:
            logger.warning("Renewing the leases of %d jobs took %.2f s, more than a quarter"
                           " of JOBIFY_LEASE_SECONDS (%s s): raise it, or look at the store",
                           len(held), took, self.settings.lease_seconds)
        # Only a run that was running when its renewal was asked, and was
        # refused, lost its job: a job that started meanwhile (its queued
        # run number was refused) goes on.
        for job_id, (_, handle) in held.items():
            if job_id not in renewed and handle is not None:
                handle.request_cancel()

    def reclaim_lost(self, now: float | None = None) -> int:
        """Deal with jobs whose lease expired (their process died or hung):
        queue them again here when they may run again and their request was
        saved, else fail them with error type ``lost``. Return how many.

        Safe to run in every process at once: each job is claimed with a
        compare-and-set on its attempt number and lease.
        """
        lost = self.store.expired_leases(now, app=self.name)
        with self._lock:
            # Alive here: a late heartbeat, not a dead process.
            lost = [job for job in lost if job.id not in self._held]
        for job in lost:
            try:
                self._reclaim(job)
            except StoreError:
                logger.exception("Could not recover lost job %s", job.id)
        return len(lost)

    def _reclaim(self, job: Job) -> None:
        saved = self.store.load_request(job.id)
        # A job that never started may always run; a started one only if
        # its operation allows another run.
        again = saved is not None and not job.cancel_requested and (
            job.status is JobStatus.PENDING or job.attempts < job.max_attempts)
        if again and self.closed:
            return  # left to a process that is not stopping
        if again:
            data = json.loads(t.cast(bytes, saved))
            captured = CapturedRequest.from_dict(data["request"])
            options = JobOptions.from_dict(data["options"])
            error = JobError("lost", "The process running the job stopped; it was queued again.")
            taken = self.lifecycle.requeue(
                job, error if job.attempts else job.error,
                lease_until=None if self.uses_celery else self._lease_until())
            if taken is not None:
                logger.warning("Job %s was lost by its process; queued again here", job.id)
                self._dispatch(job.id, captured, options, attempt=job.attempts + 1,
                               saved=True, force=True)
            return
        message = ("The process holding the job stopped (it crashed, was killed, or hung)"
                   " before the job finished.")
        claim = {"attempts": job.attempts, "lease_until": job.lease_until}
        if self.lifecycle.fail(job.id, JobError("lost", message), only_if=[job.status],
                               expect=claim, patient=False):
            logger.warning("Job %s was lost by its process; failed", job.id)

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
        if self.celery is not None:
            self.celery.close()
        try:
            self._fail_local(pending_only=True)
            self.executor.shutdown(grace)
        finally:  # also when a second signal interrupts the grace
            self._fail_local(pending_only=False)
            self.monitor.stop()
            self.webhooks.close()

    def _fail_local(self, *, pending_only: bool) -> None:
        with self._lock:
            held = dict(self._held)
        for job_id, entry in held.items():
            if entry.unwritten is not None:  # the monitor is trying; one last try
                if not pending_only:
                    self.monitor.discard(("store-retry", job_id))
                    self._fail_when_store_is_back(job_id, entry.unwritten, entry)
                continue
            if pending_only and entry.handle is not None:
                continue
            if entry.handle is None:
                self._let_go(job_id, entry)
                continue
            if entry.saved and entry.attempts < entry.max_attempts and self._release(
                    job_id, entry):
                continue
            try:
                if self.lifecycle.fail(job_id, shutdown_error(), only_if=ACTIVE_STATUSES,
                                       expect={"attempts": entry.attempts}, patient=False):
                    entry.handle.request_cancel()
            except StoreError:
                logger.exception("Job %s could not be failed at shutdown", job_id)

    def _release(self, job_id: str, entry: _Held) -> bool:
        """Give up a run that did not finish within the shutdown grace, of
        a job that may run again and whose request is saved: put the job
        back to ``pending`` with its lease expired, for another process to
        run (:meth:`Lifecycle.release`), and tell the run to stop. Return
        whether it was released (``False``: it ended, or its cancellation
        was requested, meanwhile; or the store refused)."""
        handle = t.cast(JobHandle, entry.handle)
        with self._lock:  # no more heartbeats for it from here
            if self._held.get(job_id) is entry:
                del self._held[job_id]
        self.monitor.discard(("deadline", job_id))
        try:
            released = self.lifecycle.release(job_id, entry.attempts,
                                              released_error(entry.attempts))
        except StoreError:
            logger.exception("Job %s could not be released at shutdown", job_id)
            released = None
        if released is None:
            with self._lock:
                self._held.setdefault(job_id, entry)
            return False
        logger.warning("Job %s did not finish within the shutdown grace: run %d was given up"
                       " and the job released to another process", job_id, entry.attempts)
        handle.request_cancel()
        return True

    def _let_go(self, job_id: str, entry: _Held) -> None:
        """Drop a job queued here that will not run here (this process is
        stopping): release it to another process if its request is saved
        (its lease expires at once), else fail it (error type ``shutdown``)."""
        with self._lock:
            if self._held.get(job_id) is entry:
                del self._held[job_id]
        self.monitor.discard(("retry", job_id))
        if entry.saved and self.store.renew_lease(job_id, entry.attempts, 0.0):
            return  # another process will run it
        try:
            self.lifecycle.fail(job_id, shutdown_error(), only_if=[JobStatus.PENDING],
                                expect={"attempts": entry.attempts}, patient=False)
        except StoreError:
            logger.exception("Job %s could not be failed at shutdown", job_id)


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

