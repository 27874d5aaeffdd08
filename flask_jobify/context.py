"""``current_job``: the running job, as seen from inside a view.

Like Flask's own proxies, :data:`current_job` is a ``ContextVar`` behind a
``LocalProxy``. It is set while a view runs as a job; elsewhere it points at
a stand-in whose methods do nothing, so a view can publish progress
whether or not it runs as a job.

The job's handle is also kept in its request's WSGI environ, so that a
thread running with a copy of the job's request context
(:func:`flask.copy_current_request_context`) sees the job too: its progress
is published and it sees cancellation. A bare thread started without the
request context sees no job (``current_job.is_job`` is false); hand it the
handle itself: ``job = current_job._get_current_object()``.
"""
from __future__ import annotations

import decimal
import logging
import numbers
import threading
import time
import typing as t
from contextvars import ContextVar

from flask import has_request_context, request
from werkzeug.local import LocalProxy

from .errors import JobCancelled, StoreError
from .models import JobProgress, JobStatus

if t.TYPE_CHECKING:
    from .stores.base import JobStore

logger = logging.getLogger("flask_jobify")


class JobHandle:
    """What a view sees of its own job through :data:`current_job`.

    One handle belongs to one job run; it is used from the thread running
    the job and, for :meth:`request_cancel`, from any other thread.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        job_id: str,
        store: JobStore,
        *,
        attempt: int = 1,
        cancel_check_interval: float = 0.25,
    ) -> None:
        #: The job's id.
        self.id: str | None = job_id
        #: Which run of the job this is: 1 for the first, 2 for the first
        #: retry... Writes from an older run are refused by the store.
        self.attempt = attempt
        self._store = store
        self._cancel = threading.Event()
        self._check_interval = cancel_check_interval
        self._next_check = 0.0
        #: Set once the view was told of a cancellation: ``cancelled``
        #: answered true, or ``progress()`` raised :class:`JobCancelled`.
        self.noticed_cancel = False

    @property
    def is_job(self) -> bool:
        """``True`` while the view runs as a job."""
        return True

    @property
    def cancelled(self) -> bool:
        """Whether the job should stop: cancellation was requested, its time
        ran out, or it was given up as lost and another run took it over.
        Looks at the store at most every ``JOBIFY_CANCEL_CHECK_INTERVAL``
        seconds."""
        now = time.monotonic()
        if not self._cancel.is_set() and now >= self._next_check:
            self._next_check = now + self._check_interval
            try:
                job = self._store.get(t.cast(str, self.id))
            except StoreError as exc:  # a store blip must not stop the work
                logger.warning("Job %s could not check for a cancellation: %s", self.id, exc)
                return False
            if (job is None or job.cancel_requested or job.status is not JobStatus.RUNNING
                    or job.attempts != self.attempt):
                self._cancel.set()
        if self._cancel.is_set():
            self.noticed_cancel = True
            return True
        return False

    def progress(self, percent: float | None = None, message: str | None = None) -> None:
        """Publish how far the job has come.

        :param percent: from 0 to 100, or ``None`` to keep it unset.
        :param message: a short text for people, or ``None``.
        :raises JobCancelled: if cancellation was requested; let it
            propagate and the job ends as ``cancelled``.
        :raises ValueError: for a percent outside 0..100 (or NaN).
        :raises TypeError: for a percent that is not a number (``bool``
            neither), or a message that is not a ``str``.

        A store that fails is logged (a warning) and the call returns: the
        progress is lost, the work goes on.
        """
        progress = _check_progress(percent, message)
        self.raise_if_cancelled()
        try:
            job = self._store.update(
                t.cast(str, self.id),
                {"progress": progress},
                if_status=[JobStatus.RUNNING],
                if_fields={"attempts": self.attempt},
            )
        except StoreError as exc:  # progress is for people: the work goes on
            logger.warning("Job %s could not publish its progress: %s", self.id, exc)
            return
        if job is None or job.cancel_requested:
            self._cancel.set()
            self.raise_if_cancelled()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if :attr:`cancelled` is true."""
        if self.cancelled:
            raise JobCancelled(f"Job {self.id} was cancelled or timed out.")

    def request_cancel(self) -> None:
        """Make :attr:`cancelled` true at once (same-process cancellation)."""
        self._cancel.set()


def _check_progress(percent: t.Any, message: t.Any) -> JobProgress:
    """The progress to publish: a number within 0..100 (or ``None``) and a
    text (or ``None``), the same on every store."""
    if percent is not None:
        if isinstance(percent, bool) or not isinstance(percent, (numbers.Real, decimal.Decimal)):
            raise TypeError(f"percent must be a number or None, not {type(percent).__name__}")
        percent = float(percent)
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be within 0..100, not {percent!r}")
    if message is not None and not isinstance(message, str):
        raise TypeError(f"message must be a str or None, not {type(message).__name__}")
    return JobProgress(percent, message)


class _NoJob(JobHandle):
    """The stand-in :data:`current_job` points at outside a job."""

    def __init__(self) -> None:
        self.id = None
        self.attempt = 0
        self.noticed_cancel = False

    @property
    def is_job(self) -> bool:
        return False

    @property
    def cancelled(self) -> bool:
        return False

    def progress(self, percent: float | None = None, message: str | None = None) -> None:
        _check_progress(percent, message)

    def raise_if_cancelled(self) -> None:
        return None

    def request_cancel(self) -> None:
        return None


_NO_JOB = _NoJob()
_current_job_var: ContextVar[JobHandle] = ContextVar("flask_jobify.current_job")
#: Key of a job's handle in its request's WSGI environ.
JOB_ENVIRON_KEY = "flask_jobify.job"


def job_of_request() -> JobHandle | None:
    """The job whose run the current request is, or ``None``."""
    if not has_request_context():
        return None
    handle: JobHandle | None = request.environ.get(JOB_ENVIRON_KEY)
    return handle


def _find_current_job() -> JobHandle:
    # Inside a request, its environ says (a request a job's view makes to
    # the app itself is not the job); outside one (a streamed body being
    # read after the request ended), the run's context variable.
    handle = job_of_request() if has_request_context() else _current_job_var.get(None)
    return _NO_JOB if handle is None else handle


#: The job the current view runs as. Outside a job, a stand-in whose
#: ``progress()`` does nothing and whose ``cancelled`` is ``False``; check
#: ``current_job.is_job`` to tell the two apart.
current_job: JobHandle = t.cast(
    JobHandle, LocalProxy(_find_current_job)
)


__all__ = [
    "JOB_ENVIRON_KEY", "JobHandle", "current_job", "job_of_request",
]
