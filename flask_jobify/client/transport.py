"""Follow-up requests of a job (status, result, cancel), with retries.

They are built the way requests builds its own follow-ups (redirects in
``Session.resolve_redirects``, ``HTTPDigestAuth.handle_401``): a
``PreparedRequest.copy()`` of the request that started the job, without
its body; credentials stripped when ``Session.should_strip_auth`` says the
URL is on another origin, and otherwise the ``auth`` (the session's and the
call's) applied afresh, so that a scheme that signs each request (HMAC
over method and path, OAuth 1, AWS SigV4, Hawk) signs each follow-up;
cookies from the request's jar, updated from each answer's ``Set-Cookie``
(the ``202``'s included, as requests carries a redirect's ``Set-Cookie``
to the next hop) and merged into the session's jar when there is one;
to another origin only the cookies scoped to its host
(:func:`cookies_for_other_origin`), where requests would send every
cookie set without a domain.
They go through the adapter's plain ``send``, not through a session, so
they share its connection pool and TLS settings but none of the job
machinery.
"""
from __future__ import annotations

import copy
import threading
import time
import typing as t
from http.cookiejar import CookieJar, eff_request_host  # type: ignore[attr-defined]  # stdlib, not in typeshed

import requests
from requests.cookies import (
    MockRequest,
    RequestsCookieJar,
    extract_cookies_to_jar,
    get_cookie_header,
)
from requests.sessions import SessionRedirectMixin
from urllib3.exceptions import MaxRetryError

from ..protocol import error_code_of
from .exceptions import JobConnectionError, JobRecord
from .policy import GATEWAY_CUT_STATUSES, TRANSIENT_STATUSES, PollPolicy, count, delay

#: Headers never sent to another origin than the job's.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

#: Headers of the original request that make no sense on a follow-up: they
#: describe its body, ask for a job, or make it conditional.
DROPPED_HEADERS = frozenset({
    "content-type", "content-length", "content-encoding", "transfer-encoding", "expect",
    "x-job-flag", "prefer", "idempotency-key", "x-job-callback",
    "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range", "range",
})

#: Errors on the way to the server that are worth a retry.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

SendFunc = t.Callable[..., requests.Response]
#: What requests takes as ``auth=``: an ``AuthBase``, a callable, a
#: ``(user, password)`` tuple, or ``None``.
Auth = t.Union[  # evaluated at run time: no `X | Y` on Python 3.9
    requests.auth.AuthBase, t.Callable[..., t.Any], tuple[str, str], None
]

if t.TYPE_CHECKING:
    #: What ``timeout=`` may be in requests.
    Timeout = float | tuple[float | None, float | None] | None


class LongPollCut(Exception):
    """A long-poll failed after the server had held it: a gateway or proxy
    ends requests sooner than the wait asked. Internal: :class:`~flask_jobify.client.RemoteJob`
    shortens its wait and polls again.

    :param elapsed: seconds the long-poll lasted.
    :param response: the gateway's answer, or ``None`` for a reset.
    """

    def __init__(self, elapsed: float, response: requests.Response | None) -> None:
        super().__init__(f"long-poll cut after {elapsed:.2f} s")
        self.elapsed = elapsed
        self.response = response


def sleep_within(seconds: float, deadline: float | None) -> bool:
    """Sleep ``seconds``, or until ``deadline`` (``time.monotonic()``) if that
    comes first; tell whether the full delay was slept."""
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining < seconds:
            time.sleep(max(0.0, remaining))
            return False
    time.sleep(seconds)
    return True


def split_timeout(timeout: Timeout) -> tuple[float | None, float | None]:
    """requests' ``timeout=`` as ``(connect, read)`` seconds (``None``: no limit)."""
    if isinstance(timeout, tuple):
        return timeout
    return timeout, timeout


def clip_timeout(
    timeout: tuple[float | None, float | None], deadline: float | None
) -> tuple[float | None, float | None]:
    """``(connect, read)`` seconds, neither past ``deadline``
    (``time.monotonic()``), so that one request cannot outlast the call."""
    if deadline is None:
        return timeout
    remaining = max(deadline - time.monotonic(), 0.001)
    return tuple(  # type: ignore[return-value]
        remaining if limit is None else min(limit, remaining) for limit in timeout
    )


def past(deadline: float | None) -> bool:
    """Whether ``deadline`` (``time.monotonic()``) has come."""
    return deadline is not None and time.monotonic() >= deadline


def cookies_for_other_origin(
    jar: CookieJar, request: requests.PreparedRequest
) -> RequestsCookieJar:
    """The cookies of ``jar`` that may go with ``request`` to another origin
    than the job's (another host, port, or a downgrade from ``https``).

    Only cookies scoped to its host: set for a domain that matches it
    (``domain_specified``, as ``jar.set(name, value, domain=...)`` does), or
    set by that very host's own ``Set-Cookie`` (RFC 6265's host-only
    cookies). A cookie set without a domain (``session.cookies.set(name,
    value)``, a call's ``cookies={...}``) belongs to no host, and requests
    would send it everywhere: it stays home. The jar's policy then applies
    as usual: domain, path and expiry, and ``secure`` cookies only over
    ``https``.
    """
    _, host = eff_request_host(MockRequest(request))
    scoped = RequestsCookieJar()
    for cookie in jar:
        if cookie.domain and (cookie.domain_specified or cookie.domain.lower() == host):
            scoped.set_cookie(copy.copy(cookie))
    return scoped


def error_code(response: requests.Response) -> str | None:
    """The ``error.code`` of a Flask-Jobify JSON error body, if it is one."""
    try:
        return error_code_of(response.json())
    except ValueError:
        return None


class Transport:
    """Sends one job's follow-up requests (see the module's docstring for
    how each is built). Thread-safe: the template request is only copied,
    and the cookie jar has its own lock.

    :param send: the adapter's plain ``send`` (no job handling).
    :param request: the request that started the job (or, for a job
        resumed from its status URL, the ``GET`` of that URL), as prepared
        by requests.
    :param policy: retries and read timeouts.
    :param auth: the auth to apply afresh to each follow-up on the job's
        origin; ``None`` keeps the ``Authorization`` of ``request``.
    :param timeout: the caller's ``timeout=`` (connect and read).
    :param cookie_sink: a jar (the session's) into which every answer's
        cookies are merged too, as ``Session.send`` merges those of each
        redirect. The cookies of the result, the view's own answer, are
        merged as set by the request that started the job.
    :param send_kwargs: ``verify``, ``cert`` and ``proxies`` for ``send``.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        send: SendFunc,
        request: requests.PreparedRequest,
        policy: PollPolicy,
        *,
        auth: Auth = None,
        timeout: Timeout = None,
        cookie_sink: CookieJar | None = None,
        **send_kwargs: t.Any,
    ) -> None:
        self._send = send
        assert request.url is not None
        #: The URL the job was started with: credentials go only to its origin.
        self.origin = request.url
        self.policy = policy
        self._auth = auth
        self._template = request.copy()
        self._template.body = None
        for name in DROPPED_HEADERS:
            self._template.headers.pop(name, None)
        cookie = self._template.headers.pop("Cookie", None)
        jar = getattr(request, "_cookies", None)
        self._jar = jar.copy() if isinstance(jar, RequestsCookieJar) else RequestsCookieJar()
        from_jar = get_cookie_header(self._jar, self._template)
        #: A ``Cookie`` header set by hand (not from the jar): resent to the
        #: job's origin when the jar has nothing for it.
        self._own_cookie = None if cookie == from_jar else cookie
        self._jar_lock = threading.Lock()
        self._sink = cookie_sink
        self._redirects = SessionRedirectMixin()  # should_strip_auth needs no session state
        connect, read = split_timeout(timeout)
        self._connect_timeout = connect
        self._read_timeout = read if read is not None else policy.read_timeout
        self._send_kwargs = send_kwargs

    def prepare(self, method: str, url: str) -> requests.PreparedRequest:
        """The follow-up ``method url``, ready to send."""
        prepared = self._template.copy()
        prepared.method = method
        prepared.prepare_url(url, None)
        other_origin = self._redirects.should_strip_auth(self.origin, url)
        if other_origin:
            for name in CREDENTIAL_HEADERS:
                prepared.headers.pop(name, None)
        elif self._auth is not None:
            prepared.headers.pop("Authorization", None)
            prepared.prepare_auth(self._auth)
        with self._jar_lock:
            jar = self._jar.copy()
        prepared.prepare_cookies(cookies_for_other_origin(jar, prepared) if other_origin else jar)
        if not other_origin and "Cookie" not in prepared.headers and self._own_cookie:
            prepared.headers["Cookie"] = self._own_cookie
        return prepared

    def send(
        self,
        method: str,
        url: str,
        *,
        wait: float | None = None,
        stream: bool = False,
        deadline: float | None = None,
        replayed: bool = False,
    ) -> requests.Response:
        """Send one follow-up, once; ``wait`` adds ``?wait=`` (long-poll).

        Its read timeout is the caller's (else the policy's) plus ``wait``,
        and neither it nor the connect timeout goes past ``deadline``.
        ``replayed`` says that the answer is the result (see
        :meth:`take_cookies`).
        """
        if wait is not None:
            url += ("&" if "?" in url else "?") + "wait=" + f"{wait:.3f}".rstrip("0").rstrip(".")
        prepared = self.prepare(method, url)
        timeout = clip_timeout(
            (self._connect_timeout, self._read_timeout + (wait or 0.0)), deadline
        )
        response = self._send(prepared, stream=stream, timeout=timeout, **self._send_kwargs)
        self.take_cookies(response, prepared, replayed=replayed)
        return response

    def take_cookies(
        self,
        response: requests.Response,
        request: requests.PreparedRequest | None = None,
        *,
        replayed: bool = False,
    ) -> None:
        """Keep the cookies ``response`` sets for the next follow-ups, and
        merge them into the cookie sink.

        :param request: the request ``response`` answers; by default
            ``response.request``.
        :param replayed: ``response`` replays the view's answer (the
            result): in the sink its cookies are those of the request that
            started the job, as they would have been without a job.
        """
        request = request or response.request
        with self._jar_lock:
            extract_cookies_to_jar(self._jar, request, response.raw)
        if self._sink is not None:  # a CookieJar has its own lock
            extract_cookies_to_jar(self._sink, self._template if replayed else request,
                                   response.raw)

    def send_with_retries(
        self,
        method: str,
        url: str,
        *,
        wait: float | None = None,
        stream: bool = False,
        deadline: float | None = None,
        expected_status: int | None = None,
        job: JobRecord | None = None,
        round_trip: float | None = None,
        replayed: bool = False,
    ) -> requests.Response | None:
        """Send a follow-up, retrying network errors and transient answers
        (:data:`~flask_jobify.client.policy.TRANSIENT_STATUSES`, except
        ``expected_status``) as the policy's :class:`~urllib3.util.Retry`
        says.

        :param round_trip: seconds a plain status request takes, to tell a
            cut long-poll from a refused one.
        :param replayed: the answer is the job's result (see :meth:`take_cookies`).
        :return: the first answer that is not transient, or ``None`` when
            ``deadline`` came first (no request outlasts it).
        :raises LongPollCut: a long-poll (``wait > 0``) failed after the
            server had held it (:meth:`PollPolicy.long_poll_cut`).
        :raises JobConnectionError: after ``policy.retries`` failures in a row.
        """
        retry = self.policy.retry(total=self.policy.retries)
        while True:
            if past(deadline):
                return None
            started = time.monotonic()
            failed: requests.Response | None = None
            try:
                response = self.send(method, url, wait=wait, stream=stream, deadline=deadline,
                                     replayed=replayed)
            except TRANSIENT_ERRORS as exc:
                if past(deadline):
                    return None  # cut short by the deadline, not by the server
                error: Exception = exc
            else:
                status = response.status_code
                if status not in TRANSIENT_STATUSES or status == expected_status:
                    return response
                response.close()
                failed = response
                error = requests.HTTPError(f"{status} from {url}", response=response)
            elapsed = time.monotonic() - started
            gateway_like = failed is None or failed.status_code in GATEWAY_CUT_STATUSES
            if wait and gateway_like and self.policy.long_poll_cut(wait, elapsed, round_trip):
                raise LongPollCut(elapsed, failed)
            try:
                retry = count(retry, method, url, response=failed,
                              error=None if failed is not None else error)
            except MaxRetryError:
                failures = len(retry.history) + 1
                raise JobConnectionError(
                    f"{method} {url} failed {failures} times in a row ({error}); the job"
                    " may still be running: resume it later from its status URL.",
                    job=job,
                    response=failed,
                ) from error
            if not sleep_within(delay(retry, failed, self.policy.retry_after_max), deadline):
                return None


__all__ = [
    "CREDENTIAL_HEADERS",
    "DROPPED_HEADERS",
    "TRANSIENT_ERRORS",
    "Auth",
    "LongPollCut",
    "SendFunc",
    "Transport",
    "clip_timeout",
    "cookies_for_other_origin",
    "error_code",
    "past",
    "sleep_within",
    "split_timeout",
]
