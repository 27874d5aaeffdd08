"""The :class:`JobAdapter`: a requests transport adapter that runs calls as
jobs and hands back their final response."""
from __future__ import annotations

import time
import typing as t
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter

from ..protocol import JOB_FLAG_HEADER, JOB_ID_HEADER, parse_prefer
from .awaiting import inline_wait
from .exceptions import JobClientError, JobTimedOut
from .job import RemoteJob
from .policy import PollPolicy, PollPolicyLike, count, delay
from .progress import ProgressCallback
from .record import accepted_body
from .transport import (
    Auth,
    Transport,
    clip_timeout,
    error_code,
    past,
    sleep_within,
    split_timeout,
)

if t.TYPE_CHECKING:
    from .transport import Timeout

#: Attribute a :class:`~flask_jobify.client.JobSession` sets on each request
#: it prepares: the auth (the call's, else the session's) that the job's
#: follow-ups apply afresh.
AUTH_ATTRIBUTE = "jobify_auth"

#: Attribute a :class:`~flask_jobify.client.JobSession` sets on each request
#: it prepares: its cookie jar, into which the cookies each answer of a job
#: sets are merged, as requests merges those of each redirect.
COOKIES_ATTRIBUTE = "jobify_cookies"

#: ``error.code`` values of a ``503`` that refused a job for now, not for good.
RETRYABLE_SUBMISSION_ERRORS = frozenset({"queue_full", "shutting_down"})


def is_job_response(response: requests.Response) -> bool:
    """Tell whether ``response`` is a Flask-Jobify ``202 Accepted`` (with
    ``X-Job-Id``), rather than the view's own answer.

    .. versionadded:: 0.1
    """
    return response.status_code == 202 and JOB_ID_HEADER in response.headers


def copy_request(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """``request.copy()``, keeping the auth and the cookie jar a
    :class:`~flask_jobify.client.JobSession` noted on it."""
    copied = request.copy()
    for name in (AUTH_ATTRIBUTE, COOKIES_ATTRIBUTE):
        if hasattr(request, name):
            setattr(copied, name, getattr(request, name))
    return copied


class JobAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that runs each call as a job and returns the job's
    final response, as if the view had answered synchronously::

        s = requests.Session()
        s.mount("https://api.example.com/", JobAdapter(on_progress=print, timeout=600))
        r = s.post("https://api.example.com/reports", json={"month": "2024-03"})

    Each request goes out with ``X-Job-Flag: ON`` (or ``Prefer:
    respond-async`` with ``prefer=True``). A ``202 Accepted`` job is followed
    with long-polls to its end; the view's stored response is returned with
    the original request's ``url``, and ``history`` holding the ``202`` and
    the status answer that saw the job end. Any other answer (a view that
    is not jobifiable, a server without Flask-Jobify) is returned unchanged.
    A request that sets ``X-Job-Flag`` (``OFF``, say) or ``Prefer:
    respond-async`` itself is sent as it is.

    Thread-safe: the options are read-only and each call follows its job
    with its own state.

    :param poll: a :class:`PollPolicy`, or the seconds of each long-poll.
    :param timeout: seconds a call may take in all, the submission and the
        job included: no request (the submission, a long-poll, the result)
        waits past it. The ``timeout=`` of a call still bounds each HTTP
        request.
    :param on_progress: called with a :class:`~flask_jobify.JobProgress`
        on each change of the job's progress, in order.
    :param progress_bar: show a tqdm bar on the terminal (needs tqdm).
    :param raise_on_failure: raise :class:`JobFailed` for a failed job
        instead of returning its stored error response.
    :param cancel_on_timeout: cancel the job on the server when ``timeout``
        passes.
    :param cancel_on_interrupt: cancel the job on the server on Ctrl-C
        (``KeyboardInterrupt``) while waiting for it.
    :param prefer: ask with RFC 7240 ``Prefer: respond-async`` instead of
        ``X-Job-Flag: ON``.
    :param prefer_wait: seconds the server may hold the submission for the
        job's final response (``Prefer: wait=N``, sent with either way of
        asking for a job); ``None``: the poll policy's ``inline_wait``
        (1 s by default). A job that ends within them costs one request,
        like a synchronous call, and its response has an empty
        ``history``; a slower one is answered ``202`` after them and
        followed. ``0`` asks for the ``202`` at once. Not sent with
        ``raise_on_failure``, nor when the call's read timeout or
        ``timeout`` is not longer.
    :param auth: requests' ``auth=`` (an ``AuthBase``, a ``(user,
        password)`` tuple) applied afresh to each follow-up request of a
        job on its own origin. Needed on a plain ``requests.Session`` for an
        auth that signs each request (HMAC, OAuth 1, AWS SigV4, Hawk): the
        adapter never sees the session's or the call's ``auth``; a
        :class:`~flask_jobify.client.JobSession` hands them over itself.
    :param kwargs: ``HTTPAdapter``'s own (``pool_connections``,
        ``pool_maxsize``, ``max_retries``, ``pool_block``).

    .. versionadded:: 0.1
    """

    __attrs__ = [  # noqa: RUF012 - requests' own name and type, for pickling
        *HTTPAdapter.__attrs__,
        "poll", "timeout", "on_progress", "progress_bar", "raise_on_failure",
        "cancel_on_timeout", "cancel_on_interrupt", "prefer", "prefer_wait", "auth",
    ]

    def __init__(
        self,
        *,
        poll: PollPolicyLike = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        progress_bar: bool = False,
        raise_on_failure: bool = False,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool = False,
        prefer: bool = False,
        prefer_wait: int | None = None,
        auth: Auth = None,
        **kwargs: t.Any,
    ) -> None:
        self.poll = PollPolicy.from_value(poll)
        self.timeout = timeout
        self.on_progress = on_progress
        self.progress_bar = progress_bar
        self.raise_on_failure = raise_on_failure
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_interrupt = cancel_on_interrupt
        self.prefer = prefer
        self.prefer_wait = prefer_wait
        self.auth = auth
        super().__init__(**kwargs)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: bool | str = True,
        cert: t.Any = None,
        proxies: t.Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request`` as a job and return its final response."""
        settings = {"verify": verify, "cert": cert, "proxies": proxies}
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        wait = self.poll.inline_wait if self.prefer_wait is None else self.prefer_wait
        job_request = self.job_request(request, wait=inline_wait(
            self, wait, deadline=deadline, read_timeout=split_timeout(timeout)[1]))
        if job_request is None:
            return self.send_plain(request, stream=stream, timeout=timeout, **settings)
        accepted = self.submit(job_request, stream=stream, timeout=timeout, deadline=deadline,
                               **settings)
        if not is_job_response(accepted):
            return accepted
        job = self.job_for(accepted, timeout=timeout, **settings)
        return job.follow_to_result(deadline, stream=stream)

    def send_plain(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        """Send ``request`` as ``HTTPAdapter`` would, with no job handling."""
        return super().send(request, **kwargs)

    def job_request(
        self, request: requests.PreparedRequest, *, wait: int | None = None
    ) -> requests.PreparedRequest | None:
        """``request`` as it should go out to start a job, or ``None`` when
        the caller turned jobs off for it (``X-Job-Flag: OFF``). A request
        that asks for a job itself goes out as it is.

        :param wait: ask the server to hold the answer up to ``wait``
            seconds for the job's final response (``Prefer: wait``).
        """
        flag = request.headers.get(JOB_FLAG_HEADER)
        if flag is not None:
            return request if flag.strip().lower() == "on" else None
        prefer = t.cast("str | None", request.headers.get("Prefer"))
        if prefer and "respond-async" in parse_prefer([prefer]):
            return request
        job_request = copy_request(request)
        wanted = ", ".join(([] if not self.prefer else ["respond-async"])
                           + ([] if not wait else [f"wait={wait}"]))
        if wanted:
            job_request.headers["Prefer"] = f"{prefer}, {wanted}" if prefer else wanted
        if not self.prefer:
            job_request.headers[JOB_FLAG_HEADER] = "ON"
        return job_request

    def submit(
        self,
        request: requests.PreparedRequest,
        *,
        deadline: float | None = None,
        timeout: Timeout = None,
        **kwargs: t.Any,
    ) -> requests.Response:
        """Send a job's submission; a ``503`` with ``queue_full`` or
        ``shutting_down`` is sent again after ``Retry-After``, up to
        ``poll.submit_retries`` times (if the body can be sent again).

        Each retry is a fresh copy of ``request`` with the auth applied
        afresh, as the follow-ups are (:meth:`resend`): a scheme that signs
        each request with a nonce signs each retry.

        :param timeout: the call's ``timeout=``, clipped so that no attempt
            outlasts ``deadline``.
        :return: the server's answer: a job's ``202`` or any other.
        :raises JobTimedOut: ``deadline`` passed before an answer came.
        """
        retry = self.poll.retry()
        attempt = request
        while True:
            try:
                response = self.send_plain(
                    attempt, timeout=clip_timeout(split_timeout(timeout), deadline), **kwargs
                )
            except requests.Timeout as exc:
                if not past(deadline):
                    raise
                raise JobTimedOut(
                    f"{request.method} {request.url} was not answered within the adapter's"
                    f" timeout ({self.timeout} s). If the server started a job, it goes on;"
                    " find it with GET /jobs.",
                    request=attempt,
                ) from exc
            if (
                response.status_code != 503
                or len(retry.history) >= self.poll.submit_retries
                or not isinstance(request.body, (bytes, str, type(None)))
                or error_code(response) not in RETRYABLE_SUBMISSION_ERRORS
            ):
                return response
            retry = count(retry, t.cast(str, request.method), t.cast(str, request.url),
                          response=response)
            if not sleep_within(delay(retry, response, self.poll.retry_after_max), deadline):
                return response
            response.close()
            attempt = self.resend(request)

    def resend(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """A copy of ``request`` to send again, with its auth (the one a
        :class:`~flask_jobify.client.JobSession` noted, else the adapter's)
        applied afresh; without one, the copy keeps ``request``'s
        ``Authorization``, as a plain ``HTTPAdapter`` retry would."""
        again = copy_request(request)
        auth = getattr(request, AUTH_ATTRIBUTE, None) or self.auth
        if auth is not None:
            again.headers.pop("Authorization", None)
            again.prepare_auth(auth)
        return again

    def job_for(self, accepted: requests.Response, **kwargs: t.Any) -> RemoteJob:
        """The :class:`RemoteJob` a ``202 Accepted`` started. Its follow-ups carry
        the cookies the ``202`` set.

        :param kwargs: ``timeout``, ``verify``, ``cert`` and ``proxies``
            for the follow-up requests.
        """
        request = accepted.request
        location = accepted.headers.get("Location") or accepted_body(accepted).get("statusUrl")
        if not location:
            raise JobClientError(
                "The 202 Accepted has neither a Location header nor a statusUrl.",
                response=accepted,
            )
        assert request.url is not None
        status_url = urljoin(request.url, t.cast(str, location))
        transport = self._transport(request, **kwargs)
        transport.take_cookies(accepted)  # a load balancer's affinity cookie, say
        return RemoteJob(self, transport, status_url, accepted=accepted)

    def job_at(self, request: requests.PreparedRequest, **kwargs: t.Any) -> RemoteJob:
        """A :class:`RemoteJob` for the status URL ``request`` points to, with its
        headers, auth and cookies for the follow-ups."""
        assert request.url is not None
        return RemoteJob(self, self._transport(request, **kwargs), request.url)

    def _transport(self, request: requests.PreparedRequest, **kwargs: t.Any) -> Transport:
        auth = getattr(request, AUTH_ATTRIBUTE, None) or self.auth
        return Transport(self.send_plain, request, self.poll, auth=auth,
                         cookie_sink=getattr(request, COOKIES_ATTRIBUTE, None), **kwargs)


__all__ = [
    "AUTH_ATTRIBUTE",
    "COOKIES_ATTRIBUTE",
    "RETRYABLE_SUBMISSION_ERRORS",
    "JobAdapter",
    "copy_request",
    "is_job_response",
]
