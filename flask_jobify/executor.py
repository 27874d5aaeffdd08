"""Where the runs of jobs execute: the one interface of the executors.

An accepted job is stored first; then each of its runs is handed to the
app's :class:`Executor` as a :class:`Run`, and the executor has it
executed by a function of the state (``run_job``, given when the executor
is made), in this process or another. Two executors implement it:

- :class:`~flask_jobify.thread_executor.ThreadExecutor` runs jobs on a
  bounded pool of this process's threads (``JOBIFY_EXECUTOR = "thread"``);
- :class:`~flask_jobify.celery_executor.CeleryExecutor` sends them to
  Celery workers (``JOBIFY_EXECUTOR = "celery"``).

The store is the truth, whatever the executor: a run whose job was
cancelled, or already run, does nothing (see
:meth:`Lifecycle.start <flask_jobify.lifecycle.Lifecycle.start>`).
"""
from __future__ import annotations

import dataclasses
import typing as t

from .capture import CapturedRequest
from .options import JobOptions

__all__ = ["Executor", "Run", "RunJob"]


@dataclasses.dataclass(frozen=True)
class Run:
    """Run number ``attempt`` (from 1) of a stored job: what an executor
    carries to where the job runs.

    Immutable, so safe to share between threads.
    """

    job_id: str
    #: The job's request, after ``JOBIFY_DROP_HEADERS`` and the request filters.
    request: CapturedRequest
    options: JobOptions
    attempt: int = 1

    def next(self) -> Run:
        """The run after this one (a retry, a job taken over)."""
        return dataclasses.replace(self, attempt=self.attempt + 1)

    def to_dict(self) -> dict[str, t.Any]:
        """A JSON-compatible form, to send to another process: without the
        operation's ``callback_secret`` (see :meth:`JobOptions.to_dict`)."""
        return {"job_id": self.job_id, "request": self.request.to_dict(),
                "options": self.options.to_dict(), "attempt": self.attempt}

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> Run:
        return cls(data["job_id"], CapturedRequest.from_dict(data["request"]),
                   JobOptions.from_dict(data["options"]), int(data.get("attempt", 1)))


#: Executes a run in the calling thread and stores how it ended
#: (:meth:`Worker.run <flask_jobify.worker.Worker.run>`).
RunJob = t.Callable[[Run], None]


class Executor(t.Protocol):
    """What the state asks of an executor. Implementations are thread-safe."""

    @property
    def local(self) -> bool:
        """Whether runs wait and execute in this process. If so, this
        process holds each job from its dispatch (it renews the job's
        lease); if not, the job's request leaves the process."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: every dispatch is refused."""

    def dispatch(self, run: Run, *, countdown: float = 0.0, force: bool = False) -> bool:
        """Have ``run`` executed after ``countdown`` seconds (Celery's word).
        Return ``False`` if it was refused: the executor is closed, or its
        queue is full and ``force`` (work accepted earlier: a retry, a job
        taken over) is not set.

        :raises ExecutorError: if the executor cannot be reached (Celery's
            broker is down); nothing was dispatched.
        """

    def revoke(self, job_id: str, attempt: int) -> None:
        """Drop run number ``attempt`` of ``job_id`` if it has not started
        (a cancelled pending job). Only a shortcut: a run that starts
        anyway finds its job ended."""

    def close(self) -> None:
        """Refuse new runs from now on; runs already dispatched go on."""

    def shutdown(self, grace: float) -> bool:
        """Close, and wait up to ``grace`` seconds for the runs executing in
        this process. Return whether none is left."""
