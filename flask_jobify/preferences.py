"""Job options a client sets and the server enforces: a shorter time limit
and how long the finished job is kept, asked with RFC 7240 preferences, and
the callback (``X-Job-Callback``, see :mod:`flask_jobify.webhooks`).

Why ``Prefer``: RFC 7240 is how a client states preferences about how a
server handles its request (``respond-async`` and ``wait`` already ask
for a job), it lets a server honour part of them and say which with
``Preference-Applied`` (section 3), and section 2 allows preferences of
one's own. The names ``job-timeout`` and ``job-ttl`` are not registered
and do not look like registered ones::

    Prefer: respond-async, job-timeout=30, job-ttl=600

The server clamps what it is asked to the operation's bounds, never
beyond: a timeout only shortens the operation's (``@jobify.job(timeout=)``,
else ``JOBIFY_DEFAULT_TIMEOUT``) and is at least :data:`MIN_TIMEOUT`; a
TTL lies within [:data:`MIN_RESULT_TTL`, the operation's ``result_ttl``,
else ``JOBIFY_RESULT_TTL``]. The values applied are answered in
``Preference-Applied`` and kept in the job record (``options``).

.. versionadded:: 0.2
"""
from __future__ import annotations

import dataclasses
import decimal
import typing as t

from .errors import InvalidJobPreference
from .options import JobOptions
from .protocol import (
    CALLBACK_HEADER,
    PREFER_JOB_TIMEOUT,
    PREFER_JOB_TTL,
    parse_delta_seconds,
    parse_prefer,
)
from .rules import MAX_SECONDS

#: Shortest time limit a client may ask for, in seconds (a shorter one is
#: raised to it), unless the operation's own is shorter.
MIN_TIMEOUT = 1.0
#: Shortest time a client may ask a finished job to be kept, in seconds,
#: unless the operation's own is shorter: long enough to fetch the result.
MIN_RESULT_TTL = 60.0


@dataclasses.dataclass(frozen=True)
class AskedOptions:
    """The options a request asks for; ``None``: not asked."""

    #: ``Prefer: job-timeout=N``, seconds.
    timeout: int | None = None
    #: ``Prefer: job-ttl=N``, seconds.
    result_ttl: int | None = None
    #: Whether the request names its own callback (``X-Job-Callback``).
    callback: bool = False


@dataclasses.dataclass(frozen=True)
class AppliedOptions:
    """The options a job runs with, after clamping what its client asked."""

    #: The operation's options with the timeout and TTL applied: what the
    #: job's runs use.
    options: JobOptions
    #: Seconds each run may take, or ``None`` for no limit.
    timeout: float | None
    #: Seconds the finished job is kept.
    result_ttl: float
    #: What the client set, of ``"timeout"``, ``"resultTtl"`` and ``"callback"``.
    from_client: tuple[str, ...] = ()

    def record(self) -> dict[str, t.Any]:
        """The record's ``options`` field: ``{"timeout": 30.0 | None,
        "resultTtl": 600.0, "fromClient": ["timeout"]}``."""
        return {"timeout": self.timeout, "resultTtl": self.result_ttl,
                "fromClient": list(self.from_client)}

    def preferences_applied(self) -> list[str]:
        """The ``Preference-Applied`` items for the preferences honoured,
        with the values applied: ``["job-timeout=30"]``."""
        return preferences_applied(self.record())


def preferences_applied(record: t.Mapping[str, t.Any] | None) -> list[str]:
    """The ``Preference-Applied`` items of a job's recorded ``options``
    (:meth:`AppliedOptions.record`), with the very values applied, in plain
    digits (``job-ttl=1234567``, ``job-timeout=2.5``; never ``1.23e+06``):
    ``[]`` for a job whose client set none, or an older record without them.
    """
    if not isinstance(record, t.Mapping):
        return []
    from_client = record.get("fromClient") or ()
    applied = []
    for field, name in (("timeout", PREFER_JOB_TIMEOUT), ("resultTtl", PREFER_JOB_TTL)):
        value = record.get(field)
        if field in from_client and isinstance(value, (int, float)):
            applied.append(f"{name}={_plain(value)}")
    return applied


def _plain(seconds: float) -> str:
    """``seconds`` in plain decimal digits, exactly as Python reads it back."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return format(decimal.Decimal(repr(float(seconds))), "f")


def asked_options(headers: t.Any) -> AskedOptions:
    """Read the options a request asks for from its headers.

    :param headers: the request's headers (a Werkzeug ``Headers``).
    :raises InvalidJobPreference: ``400``, for a ``job-timeout`` or
        ``job-ttl`` whose value is not RFC 9111 ``delta-seconds`` (ASCII
        digits): a limit the client set is not silently dropped.
    """
    preferences = parse_prefer(headers.getlist("Prefer"))
    values: dict[str, int | None] = {}
    for name in (PREFER_JOB_TIMEOUT, PREFER_JOB_TTL):
        raw = preferences.get(name)
        values[name] = None if raw is None else parse_delta_seconds(raw)
        if raw is not None and values[name] is None:
            raise InvalidJobPreference(
                f"Prefer: {name}= takes a whole number of seconds in ASCII digits"
                f" ({name}=30), not {raw[:40]!r}.")
    return AskedOptions(timeout=values[PREFER_JOB_TIMEOUT], result_ttl=values[PREFER_JOB_TTL],
                        callback=bool(headers.get(CALLBACK_HEADER)))


def apply_options(asked: AskedOptions, options: JobOptions, *,
                  default_timeout: float | None, default_result_ttl: float) -> AppliedOptions:
    """Clamp what a client asked to the operation's bounds.

    :param options: the operation's options (``@jobify.job(...)``).
    :param default_timeout: ``JOBIFY_DEFAULT_TIMEOUT``, for an operation
        without its own.
    :param default_result_ttl: ``JOBIFY_RESULT_TTL``, likewise.
    """
    longest = options.timeout if options.timeout is not None else default_timeout
    keep = options.result_ttl if options.result_ttl is not None else default_result_ttl
    timeout, result_ttl, from_client = longest, keep, []
    if asked.timeout is not None:  # ten years at most, as any option
        timeout = min(max(float(asked.timeout), MIN_TIMEOUT), MAX_SECONDS)
        if longest is not None:
            timeout = min(timeout, longest)
        from_client.append("timeout")
    if asked.result_ttl is not None:
        result_ttl = max(min(float(asked.result_ttl), keep), min(MIN_RESULT_TTL, keep))
        from_client.append("resultTtl")
    if asked.callback:
        from_client.append("callback")
    if asked.timeout is not None or asked.result_ttl is not None:
        options = dataclasses.replace(
            options,
            timeout=timeout if asked.timeout is not None else options.timeout,
            result_ttl=result_ttl if asked.result_ttl is not None else options.result_ttl)
    return AppliedOptions(options=options, timeout=timeout, result_ttl=result_ttl,
                          from_client=tuple(from_client))


__all__ = [
    "MIN_RESULT_TTL", "MIN_TIMEOUT", "AppliedOptions", "AskedOptions", "apply_options",
    "asked_options", "preferences_applied",
]
