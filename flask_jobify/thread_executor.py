"""Running jobs on this process's threads (``JOBIFY_EXECUTOR = "thread"``,
the default): the :class:`~flask_jobify.executor.Executor` over a bounded
:class:`~flask_jobify.threadpool.ThreadPool`."""
from __future__ import annotations

import functools
import time
import typing as t

from .executor import Run, RunJob
from .scheduler import Scheduler
from .threadpool import ThreadPool

__all__ = ["ThreadExecutor"]


class ThreadExecutor:
    """Runs jobs on ``max_workers`` threads of this process, with up to
    ``max_queued`` runs waiting for one; a run with a countdown waits on
    the app's scheduler, then joins the queue past its limit (it was
    accepted already).

    Thread-safe.

    :param run_job: executes a run in the calling thread.
    :param scheduler: the app's scheduler, for countdowns.
    :param refused: called with a run whose countdown ended after
        :meth:`close` (the process is stopping): the state hands the job
        to another process or fails it.
    """

    #: Runs execute here: this process holds their jobs from dispatch on.
    local = True

    def __init__(
        self,
        run_job: RunJob,
        scheduler: Scheduler,
        *,
        max_workers: int = 4,
        max_queued: int = 100,
        refused: t.Callable[[Run], None] = lambda run: None,
    ) -> None:
        self._run_job = run_job
        self._scheduler = scheduler
        self._refused = refused
        self.pool = ThreadPool(max_workers, max_queued)

    @property
    def closed(self) -> bool:
        return self.pool.closed

    @property
    def queued(self) -> int:
        """Runs waiting for a thread."""
        return self.pool.queued

    @property
    def running(self) -> int:
        """Runs executing."""
        return self.pool.running

    def dispatch(self, run: Run, *, countdown: float = 0.0, force: bool = False) -> bool:
        """Queue ``run`` on the pool, or after ``countdown`` seconds. Never
        raises :class:`~flask_jobify.errors.ExecutorError`."""
        if countdown > 0:
            if self.closed:
                return False
            self._scheduler.call_at(("retry", run.job_id), time.monotonic() + countdown,
                                    functools.partial(self._after_countdown, run))
            return True
        return self.pool.submit(functools.partial(self._run_job, run), force=force)

    def _after_countdown(self, run: Run) -> None:
        if not self.pool.submit(functools.partial(self._run_job, run), force=True):
            self._refused(run)  # closed meanwhile: shutting down

    def revoke(self, job_id: str, attempt: int) -> None:
        """Nothing: a queued run finds its job ended when it starts, and
        lets it go then (this process holds the job until that moment)."""

    def close(self) -> None:
        self.pool.close()

    def shutdown(self, grace: float) -> bool:
        return self.pool.shutdown(grace)
