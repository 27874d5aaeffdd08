"""Per-operation options, given to ``@jobify.job(...)``."""
from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing as t

from .backoff import backoff_delay
from .rules import MAX_SECONDS

#: Attribute under which a decorated view keeps its :class:`JobOptions`.
OPTIONS_ATTR = "_jobify_options"

#: Methods RFC 9110 calls idempotent: running them twice has the effect of
#: running them once, so a failed job of one may be run again unasked.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

#: What a queue's name may be: it names a Celery queue and store keys too.
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """How jobs of one operation run. ``None`` takes the app's default.

    .. versionadded:: 0.1
    """

    #: Seconds each run of the job may take before the job is ``timed_out``
    #: (``JOBIFY_DEFAULT_TIMEOUT``).
    timeout: float | None = None
    #: Seconds a finished job is kept (``JOBIFY_RESULT_TTL``).
    result_ttl: float | None = None
    #: URL POSTed to when a job ends, unless the request names one with
    #: ``X-Job-Callback``. Checked at each submission, like the header.
    callback: str | None = None
    #: Secret that signs webhooks sent to ``callback`` (not to a URL the
    #: request names), instead of ``JOBIFY_WEBHOOK_SECRET``. Never leaves
    #: the process: :meth:`to_dict` leaves it out, and the process that
    #: delivers reads it from the view.
    callback_secret: str | bytes | None = dataclasses.field(default=None, repr=False)
    #: Runs after the first when a run fails (an exception, or a 5xx
    #: answer), or when the process running it dies.
    retries: int = 0
    #: Seconds before the first retry; each further retry waits twice as
    #: long (with jitter), up to ``JOBIFY_RETRY_MAX_BACKOFF``.
    backoff: float = 1.0
    #: Whether a failed job may run again. ``None``: only for idempotent
    #: methods (``GET``, ``PUT``, ``DELETE``...), so that a failed ``POST``
    #: never runs twice unless the operation says it may.
    retryable: bool | None = None
    #: Whether ``GET /jobs/<id>`` of a succeeded job answers ``303 See
    #: Other`` to its result. ``None``: ``JOBIFY_SEE_OTHER``.
    see_other: bool | None = None
    #: The execution queue its jobs go to: with the Celery executor, the
    #: Celery queue of that name; with ``concurrency``, a limit on how many
    #: run at once (see :mod:`flask_jobify.queues`).
    queue: str | None = None
    #: Most jobs of ``queue`` running at once, across every process that
    #: shares the store; the others wait ``pending``, oldest first.
    #: ``None``: no limit.
    concurrency: int | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "result_ttl", "retries", "backoff"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_SECONDS:  # NaN fails too
                raise ValueError(f"{name} must be within 0..{MAX_SECONDS:g} (ten years),"
                                 f" not {value!r}")
        if self.queue is not None and not (
                isinstance(self.queue, str) and QUEUE_NAME.fullmatch(self.queue)):
            raise ValueError("queue must be a name of 1 to 100 letters, digits and _.:-"
                             f" (starting with a letter or digit), not {self.queue!r}")
        if self.concurrency is not None and (
                isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int)
                or self.concurrency < 1):
            raise ValueError(f"concurrency must be an integer >= 1, not {self.concurrency!r}")
        if self.concurrency is not None and self.queue is None:
            raise ValueError("concurrency limits a queue: name it, as in"
                             " @jobify.job(queue='reports', concurrency=1)")

    def max_attempts(self, method: str) -> int:
        """Runs a job of this operation gets in all, for an HTTP ``method``."""
        retryable = self.retryable
        if retryable is None:
            retryable = method.upper() in IDEMPOTENT_METHODS
        return 1 + self.retries if retryable else 1

    def retry_delay(self, attempt: int, max_backoff: float) -> float:
        """Seconds to wait before the run after run number ``attempt``:
        ``backoff * 2 ** (attempt - 1)``, capped at ``max_backoff``, then a
        random point in its upper half (jitter), so that jobs that failed
        together do not all retry together."""
        return backoff_delay(self.backoff, attempt, max_backoff)

    def to_dict(self) -> dict[str, t.Any]:
        """A JSON-compatible form, for handing the options to another process
        (a store, a broker): without ``callback_secret``."""
        data = dataclasses.asdict(self)
        del data["callback_secret"]
        return data

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> JobOptions:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def options_of(view: t.Callable[..., t.Any]) -> JobOptions | None:
    """Return the options ``@jobify.job`` attached to ``view``, if any."""
    return getattr(view, OPTIONS_ATTR, None)


def looks_decorated(view: t.Callable[..., t.Any]) -> bool:
    """Whether ``view`` may be wrapped in decorators, whose guards
    (``@login_required``) must run before a job is accepted: it has a
    ``__wrapped__`` (``functools.wraps``), it is not a plain function, or it
    holds another function in its closure or its default arguments, itself
    or in a list, tuple, set or dict (a decorator without ``functools.wraps``).
    A guard that reaches the view only through a global name cannot be
    seen: put ``@jobify.job`` below such guards.

    ``JOBIFY_ALL_VIEWS`` leaves such views alone: its wrapper goes around
    the view as registered, outside its decorators, so it would accept a
    job before they run. A view built in an app factory that calls a local
    helper function is taken for decorated too; better that than a guard
    skipped. ``View.as_view`` functions, which close over themselves, are not.
    """
    if hasattr(view, "__wrapped__") or not isinstance(view, types.FunctionType):
        return True
    held: list[t.Any] = []
    for cell in view.__closure__ or ():
        try:
            held.append(cell.cell_contents)
        except ValueError:  # a cell not filled yet
            continue
    held += [*(view.__defaults__ or ()), *(view.__kwdefaults__ or {}).values()]
    return any(_holds_a_function(value, view) for value in held)


def _holds_a_function(value: t.Any, view: t.Any, depth: int = 2) -> bool:
    """Whether ``value`` is, or holds in a list, tuple, set or dict (two
    levels deep), a function other than ``view``."""
    if value is view:
        return False
    if isinstance(value, (types.FunctionType, types.MethodType, functools.partial)):
        return True
    if depth == 0:
        return False
    if isinstance(value, dict):
        items: t.Iterable[t.Any] = value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return False
    return any(_holds_a_function(item, view, depth - 1) for item in items)


__all__ = [
    "IDEMPOTENT_METHODS", "OPTIONS_ATTR", "QUEUE_NAME", "JobOptions", "looks_decorated",
    "options_of",
]
