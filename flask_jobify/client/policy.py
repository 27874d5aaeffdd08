"""How the client follows a job: long-poll length, and the
:class:`urllib3.util.Retry` that spaces out polls and retries."""
from __future__ import annotations

import dataclasses
import inspect
import typing as t

import requests
from urllib3.exceptions import InvalidHeader
from urllib3.util import Retry

#: What the adapter and the session accept as ``poll=``: a policy, a number
#: of seconds per long-poll, or ``None`` for the defaults.
PollPolicyLike = t.Union["PollPolicy", float, int, None]

#: Answers to a follow-up that say "try again" rather than "no".
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})

#: Answers a gateway gives when it ends a request that ran too long.
GATEWAY_CUT_STATUSES = frozenset({502, 503, 504})

#: Whether this urllib3 caps ``Retry-After`` itself (``retry_after_max``,
#: urllib3 2.7, Python 3.10+); :func:`retry_after` caps it in any case.
_URLLIB3_CAPS_RETRY_AFTER = "retry_after_max" in inspect.signature(Retry).parameters


#: Longest time a :class:`PollPolicy` takes, in seconds: a day. Past it a
#: socket timeout may not even be representable (``1e12`` overflows).
MAX_SECONDS = 86400.0


@dataclasses.dataclass(frozen=True)
class PollPolicy:
    """How a job is followed to its end.

    The client long-polls (``GET {statusUrl}?wait=S``), so it hears of a
    change as soon as the server does. The delays between plain polls (a
    server that does not long-poll, a long-poll cut by a gateway) and
    between retries are urllib3's (:meth:`retry` builds the
    :class:`~urllib3.util.Retry`): the first goes at once, then
    ``backoff_factor * 2 ** (n - 1)`` seconds plus up to ``backoff_jitter``
    at random, capped at ``backoff_max``; a ``Retry-After`` (seconds or an
    HTTP-date, RFC 9110 section 10.2.3), capped at ``retry_after_max``,
    replaces the backoff when the server sends one.

    Like ``HTTPAdapter(max_retries=3)``, the adapter takes a plain number for
    the common case: ``JobAdapter(poll=10)`` is ``PollPolicy(wait=10)``.

    :param wait: seconds asked per long-poll (the server caps it); ``0``
        polls without long-polling. The default, 15, stays under the
        request limits of common gateways (Heroku's router and Google
        Cloud's load balancer end requests at 30 s, AWS API Gateway at 29 s,
        Azure Application Gateway at 20 s). Behind a shorter one, the client
        notices the cut long-polls and shortens the wait itself.
    :param min_wait: shortest long-poll worth keeping after a cut, in
        seconds: below it the client polls instead.
    :param backoff_factor: urllib3's ``backoff_factor``, in seconds.
    :param backoff_max: longest backoff, in seconds (urllib3's ``backoff_max``).
    :param backoff_jitter: most seconds added at random to each backoff, so
        that many clients do not poll in step (urllib3's ``backoff_jitter``).
    :param retries: network errors or transient answers (429, 5xx) in a row
        tolerated while following a job (urllib3's ``total``); one more
        raises :class:`~flask_jobify.client.JobConnectionError`.
    :param submit_retries: times a submission answered ``503`` (queue full,
        server shutting down) is sent again, after ``Retry-After``.
    :param respect_retry_after_header: wait as long as the server's
        ``Retry-After`` says (urllib3's ``respect_retry_after_header``).
    :param retry_after_max: longest ``Retry-After`` honoured, in seconds
        (urllib3's ``retry_after_max``).
    :param read_timeout: read timeout of follow-up requests, in seconds, on
        top of the long-poll's ``wait``.
    :param inline_wait: whole seconds the server may hold a submission for
        the job's final response (``Prefer: wait=N``): a job that ends
        within them costs one request, like a synchronous call; a slower
        one is answered ``202`` after them, and followed. ``0`` asks for
        the ``202`` at once. (The adapter's ``prefer_wait``, when given,
        replaces it.)
    :param long_poll_result: follow a job by long-polling its result
        (``GET .../result?wait=S``: two requests in all for a slow job)
        when no progress is to be shown and no ``JobFailed`` raised;
        ``False`` follows the status, then fetches the result.
    :raises ValueError: a time that is not a finite number of seconds from
        0 to a day (``read_timeout`` above 0; NaN and infinities neither),
        or a count below 0.
    :raises TypeError: a time that is not a number, or a count that is not
        an integer (``bool`` is neither).

    .. versionadded:: 0.1
    """

    wait: float = 15.0
    min_wait: float = 0.5
    backoff_factor: float = 0.1
    backoff_max: float = 5.0
    backoff_jitter: float = 0.1
    retries: int = 10
    submit_retries: int = 3
    respect_retry_after_header: bool = True
    retry_after_max: float = 60.0
    read_timeout: float = 10.0
    inline_wait: int = 1
    long_poll_result: bool = True

    def __post_init__(self) -> None:
        for name in ("wait", "min_wait", "backoff_factor", "backoff_max", "backoff_jitter",
                     "retry_after_max", "read_timeout"):
            value = getattr(self, name)
            bounds = "> 0" if name == "read_timeout" else ">= 0"
            wanted = f"a number of seconds {bounds} and at most {MAX_SECONDS:.0f} (a day)"
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"PollPolicy.{name} must be {wanted}, not {value!r}")
            if not 0 <= value <= MAX_SECONDS or (name == "read_timeout" and value == 0):
                raise ValueError(f"PollPolicy.{name} must be {wanted}, not {value!r}")
        for name in ("retries", "submit_retries", "inline_wait"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"PollPolicy.{name} must be an integer >= 0, not {value!r}")
            if value < 0:
                raise ValueError(f"PollPolicy.{name} must be an integer >= 0, not {value!r}")
        for name in ("respect_retry_after_header", "long_poll_result"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"PollPolicy.{name} must be True or False,"
                                f" not {getattr(self, name)!r}")

    @classmethod
    def from_value(cls, value: PollPolicyLike) -> PollPolicy:
        """Normalise ``poll=``: a policy is kept, a number is the long-poll
        ``wait``, ``None`` gives the defaults.

        :raises TypeError: for anything else.
        """
        if value is None:
            return cls()
        if isinstance(value, PollPolicy):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(wait=float(value))
        raise TypeError(
            f"poll must be a PollPolicy or a number of seconds, not {type(value).__name__}"
        )

    def retry(self, total: int | None = None) -> Retry:
        """A fresh :class:`~urllib3.util.Retry` with this policy's backoff
        and ``Retry-After`` handling.

        :param total: failures allowed (``None``: no limit, for spacing out
            polls rather than counting failures).
        """
        optional: dict[str, t.Any] = (
            {"retry_after_max": int(self.retry_after_max)} if _URLLIB3_CAPS_RETRY_AFTER else {}
        )
        return Retry(
            total=total,
            connect=None, read=None, redirect=False, status=None, other=None,
            allowed_methods=None,  # every method: follow-ups are GET, HEAD and DELETE
            status_forcelist=TRANSIENT_STATUSES,
            backoff_factor=self.backoff_factor,
            backoff_max=self.backoff_max,
            backoff_jitter=self.backoff_jitter,
            respect_retry_after_header=self.respect_retry_after_header,
            raise_on_status=False,
            **optional,
        )

    def long_poll_ignored(
        self, asked: float, elapsed: float, round_trip: float | None = None
    ) -> bool:
        """Tell whether an answer with nothing new, that came ``elapsed``
        seconds after asking to wait ``asked`` seconds, shows that the server
        does not long-poll.

        It does not if the answer came back well before the wait was up: in
        less than half of it, and no later than a plain status request
        would have (twice ``round_trip``, its duration, plus 50 ms). Without
        a ``round_trip``, within one second. A server that caps the wait
        lower than asked still counts as long-polling.
        """
        if asked <= 0:
            return False
        return elapsed < min(asked / 2, _quick(round_trip))

    def long_poll_cut(
        self, asked: float, elapsed: float, round_trip: float | None = None
    ) -> bool:
        """Tell whether a long-poll of ``asked`` seconds that failed (a
        ``502``/``503``/``504``, or a connection reset) after ``elapsed``
        seconds was cut by a gateway, rather than refused by the server.

        It was if the server had held it: longer than a plain status
        request takes (see :meth:`long_poll_ignored`), or half the wait.
        """
        return asked > 0 and elapsed >= min(asked / 2, _quick(round_trip))

    def shortened_wait(self, elapsed: float) -> float:
        """The long-poll to ask for after one was cut at ``elapsed`` seconds:
        half of that, so that it ends well before the gateway's limit; ``0``
        (poll instead) when that is under :attr:`min_wait`."""
        wait = round(elapsed / 2, 1)
        return wait if wait >= self.min_wait else 0.0


def _quick(round_trip: float | None) -> float:
    """Longest time a plain status request takes: twice ``round_trip`` plus
    50 ms, or one second when it is not known."""
    return 1.0 if round_trip is None else 2 * round_trip + 0.05


def retry_after(
    retry: Retry, response: requests.Response | None, cap: float | None = None
) -> float | None:
    """Seconds the server's ``Retry-After`` asks for (RFC 9110 section
    10.2.3), read by urllib3's :meth:`~urllib3.util.Retry.parse_retry_after`
    (an HTTP-date without a zone, the obsolete asctime form, is UTC as RFC
    9110 section 5.6.7 says), capped at ``cap`` seconds.

    :return: ``None`` when there is no ``response``, no header, an
        unreadable one (``Retry-After: 1.5``, 5000 digits, a date in the
        year 99999), or the retry does not respect it.
    """
    if response is None or not retry.respect_retry_after_header:
        return None
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = retry.parse_retry_after(value)
    except (InvalidHeader, ValueError, OverflowError):
        # Not a delay or a date; or one past Python's limits (more digits
        # than int() takes, a year past 9999): the backoff applies.
        return None
    return seconds if cap is None else min(seconds, cap)


def delay(
    retry: Retry, response: requests.Response | None = None, cap: float | None = None
) -> float:
    """Seconds to wait before the next poll or retry: the ``Retry-After``
    of ``response`` (capped at ``cap``) if it has a non-zero one, else
    ``retry``'s backoff, as :meth:`urllib3.util.Retry.sleep` decides (which
    sleeps; the client must not sleep past its own deadline, so it asks
    for the number)."""
    return retry_after(retry, response, cap) or retry.get_backoff_time()


def count(retry: Retry, method: str, url: str, *, response: requests.Response | None = None,
          error: Exception | None = None) -> Retry:
    """``retry`` with one more poll or failure in its history
    (:meth:`urllib3.util.Retry.increment`).

    :raises urllib3.exceptions.MaxRetryError: when that exhausts it.
    """
    return retry.increment(method, url, response=None if response is None else response.raw,
                           error=error)


__all__ = [
    "GATEWAY_CUT_STATUSES",
    "MAX_SECONDS",
    "TRANSIENT_STATUSES",
    "PollPolicy",
    "PollPolicyLike",
    "count",
    "delay",
    "retry_after",
]
