"""Reading what a client asks for: ``X-Job-Flag`` and RFC 7240 ``Prefer``."""
from __future__ import annotations

import dataclasses
import typing as t

from .errors import InvalidJobFlag

#: Header a client sets to ``ON`` to run a request as a job.
JOB_FLAG_HEADER = "X-Job-Flag"
#: Header carrying the id of the job a 202 created.
JOB_ID_HEADER = "X-Job-Id"
#: Headers whose value decides whether a response is a job: sent in ``Vary``.
VARY_HEADERS = ("Prefer", JOB_FLAG_HEADER)

_FLAG_VALUES = {"on": True, "off": False}


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
    preference used here takes any. The first occurrence of a token wins.
    """
    preferences: dict[str, str] = {}
    for header in values:
        for item in header.split(","):
            pref = item.split(";", 1)[0].strip()
            if not pref:
                continue
            token, _, value = pref.partition("=")
            preferences.setdefault(token.strip().lower(), value.strip().strip('"'))
    return preferences


def parse_trigger(headers: t.Any) -> JobTrigger | None:
    """Return the :class:`JobTrigger` a request carries, or ``None``.

    An explicit ``X-Job-Flag: OFF`` wins over ``Prefer: respond-async``.
    ``Prefer`` preferences that cannot be understood are ignored, as RFC
    7240 asks.

    :param headers: the request's headers.
    :raises InvalidJobFlag: for an ``X-Job-Flag`` other than ON or OFF.
    """
    preferences = parse_prefer(headers.getlist("Prefer"))
    wait = _parse_wait(preferences.get("wait"))
    flag = headers.get(JOB_FLAG_HEADER)
    if flag is not None:
        wanted = _FLAG_VALUES.get(flag.strip().lower())
        if wanted is None:
            raise InvalidJobFlag(
                f"{JOB_FLAG_HEADER} must be ON or OFF, not {flag[:40]!r}."
            )
        return JobTrigger("flag", wait) if wanted else None
    if "respond-async" in preferences:
        return JobTrigger("prefer", wait)
    return None


def _parse_wait(value: str | None) -> float | None:
    if value is None or not value.isdigit():
        return None
    return float(value)
