"""Running jobs on Celery workers (``JOBIFY_EXECUTOR = "celery"``).

The web process stores the job and sends one Celery task whose arguments
are the job id, the captured request (method, path, query, headers, body:
uploads included), the operation's options and the run number. A Celery
worker that imports the same Flask app runs the view on that request under
the app's own hooks, exactly as a thread of the web process would
(:meth:`Worker.run <flask_jobify.worker.Worker.run>`), and writes status, progress
and the response to the shared store. Celery is the queue; the store is
the truth: a task whose job was cancelled, or already run, does nothing.

- **Cancel:** a pending job is cancelled in the store and its task revoked;
  a running one is cancelled cooperatively, as with threads (the worker
  looks at the store every ``JOBIFY_CANCEL_CHECK_INTERVAL``).
- **Timeouts:** the worker's monitor marks the job ``timed_out`` at its
  deadline and tells the view; Celery's ``soft_time_limit`` (the timeout
  plus ``JOBIFY_CANCEL_CHECK_INTERVAL``) interrupts a view that does not
  listen, and ``time_limit`` (plus ``JOBIFY_SHUTDOWN_GRACE``) kills it.
- **Retries** go back through Celery with ``countdown``.
- **Crash recovery** is the leases' (see :mod:`flask_jobify.leases`),
  not Celery's: tasks are acknowledged when they start, so a task whose
  worker died is not delivered twice by the broker behind our back.
- **Secrets:** the request travels through the broker. Celery logs and
  monitoring tools show ``argsrepr``, which is set to the job id alone;
  ``JOBIFY_DROP_HEADERS`` and ``Jobify.request_filter`` keep credentials
  out of the message.
"""
from __future__ import annotations

import inspect
import logging
import threading
import typing as t
import weakref

from .capture import CapturedRequest
from .errors import ExecutorError
from .executor import Run, RunJob
from .options import JobOptions

if t.TYPE_CHECKING:
    import celery

__all__ = [
    "CeleryExecutor", "CeleryNotInitialised", "start_in_worker_processes", "task_id", "task_name",
]

logger = logging.getLogger("flask_jobify")


def task_name(app_name: str) -> str:
    """The name of the task that runs the jobs of the Flask app ``app_name``."""
    return f"flask_jobify.run_job.{app_name}"


def task_id(job_id: str, attempt: int) -> str:
    """The Celery task id of run number ``attempt`` of a job."""
    return f"{job_id}.{attempt}"


class CeleryExecutor:
    """Sends the runs of one Flask app's jobs to a Celery app's workers,
    where the task this registers executes them with ``run_job``.

    Thread-safe: Celery's producer pool serves concurrent senders.

    :param run_job: executes a run in the calling thread (on the worker).
    :param celery_app: the Celery app whose workers import the Flask app.
    :param app_name: the Flask app's name, which names the task.
    :param timeout_of: seconds a run with the given options may take, or
        ``None``: sets the task's ``soft_time_limit`` (that plus
        ``soft_margin``) and ``time_limit`` (that plus ``hard_margin``).
    :param queue: the Celery queue runs go to (default: Celery's), unless
        their operation names its own (``@jobify.job(queue=...)``).
    """

    #: Runs leave the process: their request goes through the broker.
    local = False

    def __init__(
        self,
        run_job: RunJob,
        celery_app: celery.Celery,
        *,
        app_name: str,
        timeout_of: t.Callable[[JobOptions], float | None] = lambda options: None,
        soft_margin: float = 1.0,
        hard_margin: float = 1.0,
        queue: str | None = None,
    ) -> None:
        self.celery_app = celery_app
        self.queue = queue
        self._timeout_of = timeout_of
        self._soft_margin = soft_margin
        self._hard_margin = hard_margin
        self._closed = threading.Event()

        def run_task(job_id: str, request: dict[str, t.Any], options: dict[str, t.Any],
                     attempt: int = 1) -> None:
            run_job(Run(job_id, CapturedRequest.from_dict(request),
                        JobOptions.from_dict(options), attempt))

        run_task.__doc__ = f"Run a Flask-Jobify job of the Flask app {app_name!r}."
        #: The Celery task; its result is the job record, not Celery's backend.
        self.task = celery_app.task(
            run_task, name=task_name(app_name), ignore_result=True, acks_late=False,
        )

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()

    def shutdown(self, grace: float) -> bool:
        """Close; runs execute on the workers, so none is waited for here."""
        self.close()
        return True

    def dispatch(self, run: Run, *, countdown: float = 0.0, force: bool = False) -> bool:
        """Send ``run`` to the workers, to start after ``countdown`` seconds.
        ``False`` if this process is stopping (the broker has no queue limit,
        so ``force`` changes nothing).

        :raises ExecutorError: if the broker cannot be reached.
        """
        if self.closed:
            return False
        limits: dict[str, float] = {}
        timeout = self._timeout_of(run.options)
        if timeout is not None:
            limits["soft_time_limit"] = timeout + self._soft_margin
            limits["time_limit"] = timeout + self._hard_margin
        try:
            self.task.apply_async(
                (run.job_id, run.request.to_dict(), run.options.to_dict(), run.attempt),
                task_id=task_id(run.job_id, run.attempt),
                countdown=countdown or None,
                queue=run.options.queue or self.queue,
                argsrepr=repr((run.job_id, "<request>", "<options>", run.attempt)),
                kwargsrepr="{}",
                **limits,
            )
        except Exception as exc:  # kombu's OperationalError and kin
            logger.error("Could not send job %s to Celery: %s", run.job_id, exc)
            raise ExecutorError(f"Celery's broker refused the job: {exc}") from exc
        return True

    def revoke(self, job_id: str, attempt: int) -> None:
        """Tell the workers to drop the task of run number ``attempt`` of
        ``job_id`` (a cancelled pending job). Only a shortcut: a task that
        runs anyway finds the job cancelled in the store and does nothing.
        """
        try:
            self.celery_app.control.revoke(task_id(job_id, attempt))
        except Exception as exc:  # noqa: BLE001 - kombu's errors and kin; only a shortcut
            logger.warning("Could not revoke the Celery task of job %s: %s", job_id, exc)


class CeleryNotInitialised:
    """The executor of an app configured for Celery before
    :meth:`Jobify.init_celery` gave it one: refuses every run, loudly."""

    local = False
    closed = False

    def dispatch(self, run: Run, *, countdown: float = 0.0, force: bool = False) -> bool:
        raise RuntimeError(
            "JOBIFY_EXECUTOR is 'celery' but no Celery app was given:"
            " call jobify.init_celery(celery_app)."
        )

    def revoke(self, job_id: str, attempt: int) -> None:
        pass

    def close(self) -> None:
        pass

    def shutdown(self, grace: float) -> bool:
        return True


def start_in_worker_processes(start: t.Callable[[], None]) -> None:
    """Call ``start`` in every Celery worker process as it boots (Celery's
    ``worker_process_init``; ``worker_init`` for the solo and thread pools,
    which run tasks in the worker itself). ``start`` is held weakly when it
    is a bound method (the app's state), so this keeps no app alive."""
    from celery import signals

    ref = weakref.WeakMethod(start) if inspect.ismethod(start) else (lambda: start)

    def on_boot(**kwargs: t.Any) -> None:
        alive = ref()
        if alive is not None:
            alive()

    signals.worker_process_init.connect(on_boot, weak=False)
    signals.worker_init.connect(on_boot, weak=False)
