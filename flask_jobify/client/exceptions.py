"""Exceptions of the client, rooted at both :class:`~flask_jobify.errors.JobifyError`
and :class:`requests.RequestException`.

Like requests' own exceptions they carry ``request=`` and ``response=``;
they also carry ``job=``, the last job record the client saw (the JSON of
``GET /jobs/<id>`` as a dict), or ``None`` when there was none yet. So
``except requests.RequestException`` still catches everything a call
through :class:`~flask_jobify.client.JobAdapter` can raise, and ``except
requests.Timeout`` catches a job that ran out of time.

The client's "job was cancelled" error is :class:`JobWasCancelled`, not
``JobCancelled``: :class:`flask_jobify.JobCancelled` already names the
exception a *view* sees when its job is cancelled, and one package should not
have two classes of one name.

.. versionadded:: 0.1
"""
from __future__ import annotations

import typing as t

import requests

from ..protocol import JobifyError

#: A job record as the server sends it (``GET /jobs/<id>``).
JobRecord = dict[str, t.Any]


class JobClientError(JobifyError, requests.RequestException):
    """Root of the client's exceptions.

    :param job: the last job record seen, or ``None``.
    :param request: the request being sent, as in requests.
    :param response: the response that made the call fail, if any.

    .. versionadded:: 0.1
    """

    def __init__(self, *args: t.Any, job: JobRecord | None = None, **kwargs: t.Any) -> None:
        #: The last job record seen (``GET /jobs/<id>`` as a dict), or ``None``.
        self.job = job
        super().__init__(*args, **kwargs)

    @property
    def job_id(self) -> str | None:
        """The job's id, when a record was seen."""
        return None if self.job is None else self.job.get("id")


class JobNotAccepted(JobClientError):
    """:meth:`JobSession.submit <flask_jobify.client.JobSession.submit>` got an
    answer that is not a job: the view is not jobifiable, the server does not
    run Flask-Jobify, or it refused the request. ``response`` is that answer.

    .. versionadded:: 0.1
    """


class JobFailed(JobClientError):
    """The job ended ``failed`` and ``raise_on_failure`` was asked for (or it
    left no response to return). ``response`` is the view's stored error
    response when there is one.

    .. versionadded:: 0.1
    """


class JobWasCancelled(JobClientError):
    """The job ended ``cancelled``: someone cancelled it, or the server shut
    down before it could run.

    .. versionadded:: 0.1
    """


class JobTimedOut(JobClientError, requests.Timeout):
    """The job ran out of time: on the server (its status is ``timed_out``)
    or on the client (the ``timeout`` given to the adapter or to
    :meth:`~flask_jobify.client.RemoteJob.result` passed while it was active; its
    status is then still ``pending`` or ``running``, unless
    ``cancel_on_timeout`` cancelled it). The client's ``timeout`` may also
    pass before the submission is answered (``job`` is then ``None``), or
    after the job ended and before its result came (``job`` has its final
    status).

    .. versionadded:: 0.1
    """

    @property
    def on_server(self) -> bool:
        """``True`` when the server timed the job out, ``False`` when the
        client stopped waiting."""
        return self.job is not None and self.job.get("status") == "timed_out"


class JobLost(JobClientError):
    """The server no longer knows the job (404): it expired, was deleted,
    or the caller may not see it; or its result is gone.

    .. versionadded:: 0.1
    """


class JobConnectionError(JobClientError, requests.ConnectionError):
    """Following the job kept failing (network errors or 5xx answers) after
    every retry the poll policy allows. The job itself may still be running:
    :meth:`JobSession.resume <flask_jobify.client.JobSession.resume>` its
    ``statusUrl`` later.

    .. versionadded:: 0.1
    """


__all__ = [
    "JobClientError",
    "JobConnectionError",
    "JobFailed",
    "JobLost",
    "JobNotAccepted",
    "JobRecord",
    "JobTimedOut",
    "JobWasCancelled",
]
