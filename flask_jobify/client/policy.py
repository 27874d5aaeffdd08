"""How the client follows a job: long-poll length, backoff, retries."""
from __future__ import annotations

import dataclasses
import email.utils
import random
import time
import typing as t

#: What the adapter and the session accept as ``poll=``: a policy, a number
#: of seconds per long-poll, or ``None`` for the defaults.
PollPolicyLike = t.Union["PollPolicy", float, int, None]


@dataclasses.dataclass(frozen=True)
class PollPolicy:
    """How a job is followed to its end.

    The client long-polls (``GET {statusUrl}?wait=S``), so it hears of a
    change as soon as the server does. When the server answers at once with
    nothing new (long-poll disabled), it polls instead: the delays grow
    exponentially from :attr:`backoff` to :attr:`max_backoff`, with jitter,
    and never undercut the server's ``Retry-After``. The same delays space
    out retries after a network error or a 5xx answer.

    Like ``HTTPAdapter(max_retries=3)``, the adapter takes a plain number for
    the common case: ``JobAdapter(poll=10)`` is ``PollPolicy(wait=10)``.

    :param wait: seconds asked per long-poll (the server caps it); ``0``
        polls without long-polling.
    :param backoff: first delay between two polls, or before the first retry.
    :param max_backoff: longest delay the exponential backoff reaches.
    :param jitter: share of each delay drawn at random (``0`` to ``1``), so
        that many clients do not poll in step.
    :param retries: network errors or 5xx answers in a row tolerated while
        following a job; one more raises
        :class:`~flask_jobify.client.JobConnectionError`.
    :param submit_retries: times a submission answered ``503`` (queue full,
        server shutting down) is sent again, after ``Retry-After``.
    :param respect_retry_after: never poll or retry before the server's
        ``Retry-After``.
    :param max_retry_after: longest ``Retry-After`` honoured, in seconds.
    :param read_timeout: read timeout of follow-up requests, in seconds, on
        top of the long-poll's ``wait``.

    .. versionadded:: 0.1
    """

    wait: float = 30.0
    backoff: float = 0.1
    max_backoff: float = 5.0
    jitter: float = 0.5
    retries: int = 10
    submit_retries: int = 3
    respect_retry_after: bool = True
    max_retry_after: float = 60.0
    read_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("wait", "backoff", "max_backoff", "max_retry_after", "retries",
                     "submit_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"PollPolicy.{name} must be >= 0, not {getattr(self, name)!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"PollPolicy.jitter must be within 0..1, not {self.jitter!r}")
        if self.read_timeout <= 0:
            raise ValueError(f"PollPolicy.read_timeout must be > 0, not {self.read_timeout!r}")

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

    def delay(
        self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before poll or retry number ``attempt`` (from 0).

        ``backoff * 2**attempt``, capped at :attr:`max_backoff`, less up to
        :attr:`jitter` of itself; then raised to ``retry_after`` (itself
        capped at :attr:`max_retry_after`) when :attr:`respect_retry_after`.
        """
        base = min(self.max_backoff, self.backoff * 2 ** min(attempt, 64))
        delay = base * (1 - self.jitter * (rng or random).random())
        if self.respect_retry_after and retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

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
        limit = 1.0 if round_trip is None else 2 * round_trip + 0.05
        return elapsed < min(asked / 2, limit)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Read a ``Retry-After`` header: seconds, or an HTTP date.

    :return: seconds from now (``0`` for a date in the past), or ``None``
        when the header is missing or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


__all__ = ["PollPolicy", "PollPolicyLike", "parse_retry_after"]
