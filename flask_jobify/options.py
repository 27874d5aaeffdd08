"""Per-operation options, given to ``@jobify.job(...)``."""
from __future__ import annotations

import dataclasses
import typing as t

#: Attribute under which a decorated view keeps its :class:`JobOptions`.
OPTIONS_ATTR = "_jobify_options"


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """How jobs of one operation run. ``None`` takes the app's default.

    .. versionadded:: 0.1
    """

    #: Seconds the job may run before it is ``timed_out``
    #: (``JOBIFY_DEFAULT_TIMEOUT``).
    timeout: float | None = None
    #: Seconds a finished job is kept (``JOBIFY_RESULT_TTL``).
    result_ttl: float | None = None
    #: URL POSTed to when a job ends, unless the request names one with
    #: ``X-Job-Callback``. Checked at each submission, like the header.
    callback: str | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "result_ttl"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, not {value!r}")


def options_of(view: t.Callable[..., t.Any]) -> JobOptions | None:
    """Return the options ``@jobify.job`` attached to ``view``, if any."""
    return getattr(view, OPTIONS_ATTR, None)
