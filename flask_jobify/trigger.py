"""Reading what a client asks for: ``X-Job-Flag`` and RFC 7240 ``Prefer``."""
from __future__ import annotations

import dataclasses
import re
import typing as t

from .errors import InvalidJobFlag

#: Header a client sets to ``ON`` to run a request as a job.
JOB_FLAG_HEADER = "X-Job-Flag"
#: Header carrying the id of the job a 202 created.
JOB_ID_HEADER = "X-Job-Id"
#: Sent when a wait the client asked for was cut to this many seconds
#: because the server serves one request at a time per process
#: (``JOBIFY_BLOCKING_MAX_WAIT``).
MAX_WAIT_HEADER = "X-Job-Max-Wait"
#: Headers whose value decides whether a response is a job: sent in ``Vary``.
VARY_HEADERS = ("Prefer", JOB_FLAG_HEADER)

_FLAG_VALUES = {"on": True, "off": False}
#: RFC 9110 section 5.6.2 ``token``: the only names a preference can have.
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: RFC 9111 section 1.2.2 ``delta-seconds``: ASCII digits only.
_DELTA_SECONDS_RE = re.compile(r"[0-9]+")
#: RFC 9111 section 1.2.2: a larger ``delta-seconds`` is read as this.
MAX_DELTA_SECONDS = 2**31


@dataclasses.dataclass(frozen=True)
class JobTrigger:
    """A client's request to run the call as a job."""

    #: ``"flag"`` for ``X-Job-Flag: ON``, ``"prefer"`` for ``Prefer: respond-async``.
    via: str
    #: Seconds the client is willing to wait for the final response
    #: (``Prefer: wait=N``); ``None`` when not asked.
    wait: float | None = None


def parse_prefer(values: t.Iterable[str]) -> dict[str, str]:
    """Parse ``Prefer`` header values into ``{token: value}`` (RFC 7240).

    Tokens are lower-cased; parameters after ``;`` are dropped, as no
    preference used here takes any. The first occurrence of a token wins,
    across repeated ``Prefer`` fields too (RFC 7240 section 2). A
    preference whose name is not an RFC 9110 ``token`` (non-ASCII bytes,
    control characters, spaces) cannot be understood and is left out, as
    RFC 7240 asks; so is one whose value holds such characters.

    :param values: every ``Prefer`` field of the request, as Werkzeug
        decodes them (Latin-1, so any byte reads as one character).
    :returns: ``{"respond-async": "", "wait": "5"}`` for
        ``Prefer: respond-async, wait=5``.
    """
    preferences: dict[str, str] = {}
    for header in values:
        for item in header.split(","):
            pref = item.split(";", 1)[0].strip()
            if not pref:
                continue
            token, _, value = pref.partition("=")
            token, value = token.strip().lower(), value.strip().strip('"')
            if _TOKEN_RE.fullmatch(token) is None or not _is_visible_ascii(value):
                continue
            preferences.setdefault(token, value)
    return preferences


def parse_trigger(headers: t.Any) -> JobTrigger | None:
    """Return the :class:`JobTrigger` a request carries, or ``None``.

    An explicit ``X-Job-Flag: OFF`` wins over ``Prefer: respond-async``.
    ``Prefer`` preferences that cannot be understood are ignored, as RFC
    7240 asks: ``wait`` is RFC 9111 ``delta-seconds`` (ASCII digits;
    anything else, ``wait=\u00b2`` or ``wait=1.5``, is ignored).

    :param headers: the request's headers (a Werkzeug ``Headers``).
    :raises InvalidJobFlag: for an ``X-Job-Flag`` other than ON or OFF
        (ASCII, any case), sent once.
    """
    preferences = parse_prefer(headers.getlist("Prefer"))
    wait = parse_delta_seconds(preferences.get("wait"))
    flags = headers.getlist(JOB_FLAG_HEADER)
    if flags:
        # Repeated fields read as one list (RFC 9110 section 5.3), as a
        # WSGI server joins them: "ON, OFF" is neither ON nor OFF.
        flag = ", ".join(flags)
        wanted = _FLAG_VALUES.get(flag.strip().lower()) if flag.isascii() else None
        if wanted is None:
            raise InvalidJobFlag(
                f"{JOB_FLAG_HEADER} must be ON or OFF, not {flag[:40]!r}."
            )
        return JobTrigger("flag", wait) if wanted else None
    if "respond-async" in preferences:
        return JobTrigger("prefer", wait)
    return None


def parse_delta_seconds(value: str | None) -> int | None:
    """Read RFC 9111 ``delta-seconds`` (section 1.2.2): ASCII digits.

    :returns: the seconds, capped at :data:`MAX_DELTA_SECONDS` as the RFC
        asks for larger values; ``None`` for a missing value or anything
        but ASCII digits (``"\u00b2"``, ``"1.5"``, ``"-1"``, ``" 5"``).
    """
    if value is None or _DELTA_SECONDS_RE.fullmatch(value) is None:
        return None
    if len(value) > len(str(MAX_DELTA_SECONDS)):  # int() refuses very long strings
        return MAX_DELTA_SECONDS
    return min(int(value), MAX_DELTA_SECONDS)


def _is_visible_ascii(value: str) -> bool:
    """Whether ``value`` is printable ASCII (RFC 9110 VCHAR and spaces)."""
    return value.isascii() and value.isprintable()
