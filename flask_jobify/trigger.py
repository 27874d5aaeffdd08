"""Reading what a client asks for: ``X-Job-Flag`` and RFC 7240 ``Prefer``."""
from __future__ import annotations

import dataclasses
import typing as t

from .errors import InvalidJobFlag

# Re-exported (`X as X`): they were defined here.
from .protocol import JOB_FLAG_HEADER as JOB_FLAG_HEADER
from .protocol import JOB_ID_HEADER as JOB_ID_HEADER
from .protocol import MAX_DELTA_SECONDS as MAX_DELTA_SECONDS
from .protocol import MAX_WAIT_HEADER as MAX_WAIT_HEADER
from .protocol import VARY_HEADERS as VARY_HEADERS
from .protocol import parse_delta_seconds as parse_delta_seconds
from .protocol import parse_prefer as parse_prefer

__all__ = ["JobTrigger", "TriggerKind", "asks_for_job", "parse_trigger"]

_FLAG_VALUES = {"on": True, "off": False}

#: How a client asked for a job: ``X-Job-Flag: ON`` or ``Prefer: respond-async``.
TriggerKind = t.Literal["flag", "prefer"]


@dataclasses.dataclass(frozen=True)
class JobTrigger:
    """A client's request to run the call as a job."""

    #: ``"flag"`` for ``X-Job-Flag: ON``, ``"prefer"`` for ``Prefer: respond-async``.
    via: TriggerKind
    #: Seconds the client is willing to wait for the final response
    #: (``Prefer: wait=N``); ``None`` when not asked.
    wait: float | None = None


#: The WSGI environ keys of the headers that can ask for a job.
_TRIGGER_KEYS = ("HTTP_X_JOB_FLAG", "HTTP_PREFER")


def asks_for_job(environ: t.Mapping[str, t.Any]) -> bool:
    """Whether a request may ask for a job: it carries ``X-Job-Flag`` or
    ``Prefer`` (which :func:`parse_trigger` then reads). Two dict look-ups,
    so that a request without either costs a jobifiable view nothing more.

    :param environ: the request's WSGI environ.
    """
    return _TRIGGER_KEYS[0] in environ or _TRIGGER_KEYS[1] in environ


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
