"""Running jobs on Celery workers (``JOBIFY_EXECUTOR = "celery"``).

The web process stores the job and sends one Celery task whose arguments
are the job id, the captured request (method, path, query, headers, body:
uploads included), the operation's options and the run number. A Celery
worker that imports the same Flask app runs the view on that request under
the app's own hooks, exactly as a thread of the web process would
(:meth:`~flask_jobify.state.JobifyState.run`), and writes status, progress
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
- **Crash recovery** is the leases' (see :class:`~flask_jobify.state.JobifyState`),
  not Celery's: tasks are acknowledged when they start, so a task whose
  worker died is not delivered twice by the broker behind our back.
- **Secrets:** the request travels through the broker. Celery logs and
  monitoring tools show ``argsrepr``, which is set to the job id alone;
  ``JOBIFY_DROP_HEADERS`` and ``Jobify.request_filter`` keep credentials
  out of the message.
"""
from __future__ import annotations

import logging
import threading
import typing as t

from .capture import CapturedRequest
from .errors import ExecutorUnavailable
from .options import JobOptions

if t.TYPE_CHECKING:
    import celery

    from .state import JobifyState

logger = logging.getLogger("flask_jobify")


def task_name(app_name: str) -> str:
    """The name of the task that runs the jobs of the Flask app ``app_name``."""
    return f"flask_jobify.run_job.{app_name}"


def task_id(job_id: str, attempt: int) -> str:
    """The Celery task id of run number ``attempt`` of a job."""
    return f"{job_id}.{attempt}"


class CeleryExecutor:
    """Sends jobs of one Flask app to a Celery app's workers.

    Thread-safe: Celery's producer pool serves concurrent senders.

    :param state: the Flask app's Flask-Jobify state.
    :param celery_app: the Celery app whose workers import the Flask app.
    :param queue: the Celery queue jobs go to (default: Celery's).
    """

    def __init__(
        self, state: JobifyState, celery_app: celery.Celery, *, queue: str | None = None
    ) -> None:
        self.state = state
        self.celery_app = celery_app
        self.queue = queue
        self._closed = threading.Event()
        run = state.run

        def run_job(job_id: str, request: dict[str, t.Any], options: dict[str, t.Any],
                    attempt: int = 1) -> None:
            run(job_id, CapturedRequest.from_dict(request), JobOptions.from_dict(options), attempt)

        run_job.__doc__ = f"Run a Flask-Jobify job of the Flask app {state.app.name!r}."
        #: The Celery task; its result is the job record, not Celery's backend.
        self.task = celery_app.task(
            run_job, name=task_name(state.app.name), ignore_result=True, acks_late=False,
        )

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()

    def send(
        self,
        job_id: str,
        captured: CapturedRequest,
        options: JobOptions,
        *,
        attempt: int = 1,
        delay: float = 0.0,
    ) -> bool:
        """Send run number ``attempt`` of a stored job to the workers, to
        start after ``delay`` seconds. ``False`` if this process is stopping.

        :raises ExecutorUnavailable: if the broker cannot be reached.
        """
        if self.closed:
            return False
        limits: dict[str, float] = {}
        timeout = self.state.timeout_of(options)
        if timeout is not None:
            settings = self.state.settings
            limits["soft_time_limit"] = timeout + settings.cancel_check_interval + 1
            limits["time_limit"] = timeout + settings.shutdown_grace + 1
        try:
            self.task.apply_async(
                (job_id, captured.to_dict(), options.to_dict(), attempt),
                task_id=task_id(job_id, attempt),
                countdown=delay or None,
                queue=self.queue,
                argsrepr=repr((job_id, "<request>", "<options>", attempt)),
                kwargsrepr="{}",
                **limits,
            )
        except Exception as exc:  # kombu's OperationalError and kin
            logger.error("Could not send job %s to Celery: %s", job_id, exc)
            raise ExecutorUnavailable() from exc
        return True

    def revoke(self, job_id: str, *, attempt: int) -> None:
        """Tell the workers to drop the task of a cancelled pending job.

        Only a shortcut: a task that runs anyway finds the job cancelled in
        the store and does nothing.
        """
        try:
            self.celery_app.control.revoke(task_id(job_id, attempt))
        except Exception as exc:  # noqa: BLE001 - kombu's errors and kin; only a shortcut
            logger.warning("Could not revoke the Celery task of job %s: %s", job_id, exc)
