"""Follow-up requests of a job (status, result, cancel), with retries.

Modelled on ``HTTPDigestAuth.handle_401``: the follow-ups are built from the
request that started the job and sent through the same adapter's plain
``send``, not through a session, so they share its connection pool and TLS
settings but none of the job machinery.
"""
from __future__ import annotations

import time
import typing as t
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from .exceptions import JobConnectionError, JobRecord
from .policy import PollPolicy, parse_retry_after

#: Headers never sent to a host other than the one the job was started on.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

#: Headers of the original request that make no sense on a follow-up: they
#: describe its body, ask for a job, or make it conditional.
DROPPED_HEADERS = frozenset({
    "content-type", "content-length", "content-encoding", "transfer-encoding", "expect",
    "x-job-flag", "prefer", "idempotency-key", "x-job-callback",
    "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range", "range",
})

#: Answers to a follow-up that say "try again" rather than "no".
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})

#: Errors on the way to the server that are worth a retry.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

_DEFAULT_PORTS = {"http": 80, "https": 443}

SendFunc = t.Callable[..., requests.Response]

if t.TYPE_CHECKING:
    #: What ``timeout=`` may be in requests.
    Timeout = float | tuple[float | None, float | None] | None


def same_origin(url: str, other: str) -> bool:
    """Tell whether credentials meant for ``url`` may go to ``other``.

    As requests does on redirects: the same host and port, and the same
    scheme or an upgrade from ``http`` to ``https`` on the default ports.
    """
    a, b = urlsplit(url), urlsplit(other)
    if (a.hostname or "").lower() != (b.hostname or "").lower():
        return False
    if a.scheme == "http" and b.scheme == "https" and a.port in (80, None) and b.port in (443, None):
        return True
    a_port = a.port or _DEFAULT_PORTS.get(a.scheme)
    b_port = b.port or _DEFAULT_PORTS.get(b.scheme)
    return a.scheme == b.scheme and a_port == b_port


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


def error_code(response: requests.Response) -> str | None:
    """The ``error.code`` of a Flask-Jobify JSON error body, if it is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


class Transport:
    """Sends one job's follow-up requests.

    Headers come from the request that started the job, less those in
    :data:`DROPPED_HEADERS`; credentials (:data:`CREDENTIAL_HEADERS`) go only
    to URLs of the same origin. Stateless after construction, so one
    transport may serve several threads.

    :param send: the adapter's plain ``send`` (no job handling).
    :param origin: the URL the job was started with; credentials go only
        to its origin.
    :param headers: the headers of the request that started the job.
    :param policy: retries and read timeouts.
    :param timeout: the caller's ``timeout=`` (connect and read).
    :param send_kwargs: ``verify``, ``cert`` and ``proxies`` for ``send``.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        send: SendFunc,
        origin: str,
        headers: t.Mapping[str, t.Any],
        policy: PollPolicy,
        *,
        timeout: Timeout = None,
        **send_kwargs: t.Any,
    ) -> None:
        self._send = send
        self.origin = origin
        self.policy = policy
        self._headers = CaseInsensitiveDict(
            {k: v for k, v in headers.items() if k.lower() not in DROPPED_HEADERS}
        )
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._connect_timeout = connect
        self._read_timeout = read if read is not None else policy.read_timeout
        self._send_kwargs = send_kwargs

    def headers_for(self, url: str) -> CaseInsensitiveDict[str]:
        """Headers of a follow-up to ``url``: no credentials to another origin."""
        headers = CaseInsensitiveDict(self._headers)
        if not same_origin(self.origin, url):
            for name in CREDENTIAL_HEADERS:
                headers.pop(name, None)
        return headers

    def send(
        self, method: str, url: str, *, wait: float | None = None, stream: bool = False
    ) -> requests.Response:
        """Send one follow-up, once; ``wait`` adds ``?wait=`` (long-poll)."""
        if wait is not None:
            url += ("&" if "?" in url else "?") + "wait=" + f"{wait:.3f}".rstrip("0").rstrip(".")
        prepared = requests.Request(method, url, headers=self.headers_for(url)).prepare()
        timeout = (self._connect_timeout, self._read_timeout + (wait or 0.0))
        return self._send(prepared, stream=stream, timeout=timeout, **self._send_kwargs)

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
    ) -> requests.Response | None:
        """Send a follow-up, retrying network errors and transient answers
        (:data:`TRANSIENT_STATUSES`, except ``expected_status``) with the
        policy's backoff.

        :return: the first answer that is not transient, or ``None`` when
            ``deadline`` came first.
        :raises JobConnectionError: after ``policy.retries`` failures in a row.
        """
        failures = 0
        while True:
            try:
                response = self.send(method, url, wait=wait, stream=stream)
            except TRANSIENT_ERRORS as exc:
                error: BaseException = exc
                retry_after = None
                failed_response = None
            else:
                status = response.status_code
                if status not in TRANSIENT_STATUSES or status == expected_status:
                    return response
                response.close()
                error = requests.HTTPError(f"{status} from {url}", response=response)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                failed_response = response
            failures += 1
            if failures > self.policy.retries:
                raise JobConnectionError(
                    f"{method} {url} failed {failures} times in a row ({error}); the job"
                    " may still be running: resume it later from its status URL.",
                    job=job,
                    response=failed_response,
                ) from error
            if not sleep_within(self.policy.delay(failures - 1, retry_after), deadline):
                return None


__all__ = [
    "CREDENTIAL_HEADERS",
    "DROPPED_HEADERS",
    "TRANSIENT_ERRORS",
    "TRANSIENT_STATUSES",
    "Transport",
    "error_code",
    "same_origin",
    "sleep_within",
]
