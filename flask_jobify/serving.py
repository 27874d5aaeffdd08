"""Where the extension meets the server that runs the app: stop signals,
long-polls that end when the process stops, and waits capped on servers
that serve one request at a time.

Jobs run inside the web processes, so a process's stop is a job's end: the
shutdown (:meth:`JobifyState.shutdown <flask_jobify.state.JobifyState.shutdown>`)
runs at interpreter exit and from a server's exit hook (gunicorn
``worker_exit``, uWSGI ``uwsgi.atexit``), and a stop signal first makes the
process refuse new jobs and end its long-polls
(:meth:`~flask_jobify.state.JobifyState.begin_shutdown`), so that a server
draining its requests before it exits is not held by them. Where the
server has no handler for ``SIGTERM`` (waitress, ``flask run``), the one
installed here turns it into an orderly exit, as ``Ctrl-C`` is.
"""
from __future__ import annotations

import atexit
import signal
import sys
import threading
import time
import typing as t
import weakref

from .config import Settings
from .models import Job
from .stores.base import WaitForChange

#: Signals a stopping process gets: each one ends long-polls and refuses
#: new jobs before the server's own handler (or, for ``SIGTERM`` and
#: ``SIGINT`` where there is none, an orderly exit) runs. ``SIGQUIT`` is
#: only chained to a server's handler (gunicorn's quick stop), never
#: installed where it has the default action (a core dump).
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT")

#: Seconds between two looks at ``JobifyState.stopping`` by a waiting
#: long-poll: at shutdown, long-polls answer within this.
STOP_CHECK_INTERVAL = 0.5

Handler = t.Callable[[int, t.Any], t.Any]


class Serving(t.Protocol):
    """What this module needs of an app's state
    (:class:`~flask_jobify.state.JobifyState`)."""

    settings: Settings
    #: New jobs are refused and long-polls answer at once.
    stopping: bool
    #: ``time.monotonic()`` of the last :meth:`end_long_polls`.
    long_polls_ended_at: float

    def begin_shutdown(self) -> None: ...

    def end_long_polls(self) -> None: ...

    def shutdown(self, grace: float | None = None) -> None: ...


def on_stop_signals(state: Serving) -> list[str]:
    """Have the stop signals of this process begin ``state``'s shutdown,
    chaining the handler each had (a server's, or another app's); return
    the names of the signals handled.

    Only from the main thread (Python allows signal handlers nowhere
    else; an app built in another thread relies on the server's exit
    hook and on interpreter exit), and never under uWSGI, whose signals
    are its own (see :func:`at_uwsgi_exit`). An ignored signal stays
    ignored. One handler per signal serves every app of the process, and
    holds them weakly.
    """
    if threading.current_thread() is not threading.main_thread() or _under_uwsgi():
        return []
    handled = []
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:  # not on this platform
            continue
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN or previous is None:  # ignored, or set outside Python
            continue
        if previous is signal.SIG_DFL and name == "SIGQUIT":
            continue
        if not isinstance(previous, _StopHandler):  # else one handler serves every app
            previous = _StopHandler(previous)
            signal.signal(signum, previous)
        previous.states.add(state)
        handled.append(name)
    return handled


class _StopHandler:
    """The handler of one stop signal: begins the shutdown of every app
    it holds (weakly: a test suite that builds an app per test neither
    keeps them alive nor grows a chain of handlers), then runs the handler
    it replaced."""

    def __init__(self, previous: Handler | int) -> None:
        self.previous = previous
        self.states: weakref.WeakSet[Serving] = weakref.WeakSet()

    def __call__(self, signum: int, frame: t.Any) -> t.Any:
        if self.previous is signal.default_int_handler:
            # Python's own Ctrl-C: a KeyboardInterrupt the program may catch
            # (a REPL, `flask shell`) and live on, so jobs are still taken;
            # waiting long-polls end, so that a server whose request threads
            # interpreter exit waits for can exit, and run the shutdown.
            for state in list(self.states):
                state.end_long_polls()
            return self.previous(signum, frame)
        for state in list(self.states):
            state.begin_shutdown()
        if callable(self.previous):  # the server's handler
            return self.previous(signum, frame)
        # No handler (SIG_DFL): exit in order, as Ctrl-C does, so that
        # interpreter exit runs the shutdown, instead of dying at once.
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(0)


def _under_uwsgi() -> bool:
    return "uwsgi" in sys.builtin_module_names or _uwsgi() is not None


def _uwsgi() -> t.Any:
    try:
        import uwsgi
    except ImportError:
        return None
    return uwsgi


def at_uwsgi_exit(state: Serving) -> bool:
    """Under uWSGI, run ``state``'s shutdown from ``uwsgi.atexit``, after
    any function already there (uWSGI keeps one). ``False`` elsewhere."""
    uwsgi = _uwsgi()
    if uwsgi is None:
        return False
    ref = weakref.ref(state)
    previous = getattr(uwsgi, "atexit", None)

    def shutdown() -> None:
        alive = ref()
        if alive is not None:
            alive.shutdown()
        if callable(previous):
            previous()

    uwsgi.atexit = shutdown
    return True


def serves_one_at_a_time(environ: t.Mapping[str, t.Any]) -> bool:
    """Whether the server that made ``environ`` serves one request at a
    time per process: ``wsgi.multithread`` is false (gunicorn's ``sync``
    worker, uWSGI without ``--threads``, a non-threaded development
    server) and no greenlet library patched the process (gevent's own
    server says false too). A long wait there blocks every other client
    of the process. Werkzeug's test client says false too, but serves
    only its caller: it is told apart by naming no server
    (``SERVER_SOFTWARE``, or uWSGI's ``uwsgi.version``), as servers do."""
    named = "SERVER_SOFTWARE" in environ or "uwsgi.version" in environ
    if environ.get("wsgi.multithread", False) or not named:
        return False
    return not _greenlets_patched()


def _greenlets_patched() -> bool:
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched("socket"):
        return True
    eventlet_patcher = sys.modules.get("eventlet.patcher")
    return bool(eventlet_patcher is not None and eventlet_patcher.is_monkey_patched("socket"))


def max_wait(state: Serving, environ: t.Mapping[str, t.Any]) -> tuple[float, bool]:
    """The longest wait this request may have, and whether it was capped
    because the server serves one request at a time
    (``JOBIFY_BLOCKING_MAX_WAIT``)."""
    longest = state.settings.max_wait
    if serves_one_at_a_time(environ) and state.settings.blocking_max_wait < longest:
        return state.settings.blocking_max_wait, True
    return longest, False


def wait_while_serving(
    state: Serving, wait_for_change: WaitForChange, job: Job, seconds: float
) -> Job | None:
    """Wait up to ``seconds`` for ``job`` to change, as
    ``wait_for_change(version, timeout)`` does, but answer within
    :data:`STOP_CHECK_INTERVAL` once the process stops: the job as it is
    then (``None`` if it is gone)."""
    began = time.monotonic()
    deadline = began + seconds
    current: Job | None = job
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or state.stopping or state.long_polls_ended_at >= began:
            return current
        current = wait_for_change(job.version, min(remaining, STOP_CHECK_INTERVAL))
        if current is None or current.version != job.version:
            return current


def wait_until_final(
    state: Serving, wait_for_change: WaitForChange, job: Job, seconds: float
) -> Job | None:
    """Wait up to ``seconds`` for ``job`` to end, change after change, as
    :func:`wait_while_serving` waits for one: at once when the process
    stops or ends its long-polls. Return the job as it is then (final or
    not), ``None`` if it is gone."""
    deadline = time.monotonic() + seconds
    current: Job | None = job
    while current is not None and not current.is_final:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or state.stopping:
            break
        changed = wait_while_serving(state, wait_for_change, current, remaining)
        if changed is not None and changed.version == current.version:
            break  # the wait ran out, or the process ended its long-polls
        current = changed
    return current


def shutdown_at_exit(state: Serving) -> None:
    """Wind ``state`` down at interpreter exit, and at uWSGI's worker
    exit (``uwsgi.atexit``), without keeping it alive."""
    at_uwsgi_exit(state)
    ref = weakref.ref(state)

    def shutdown() -> None:
        alive = ref()
        if alive is not None:
            alive.shutdown()

    atexit.register(shutdown)


__all__ = [
    "STOP_CHECK_INTERVAL",
    "STOP_SIGNALS",
    "Handler",
    "Serving",
    "at_uwsgi_exit",
    "max_wait",
    "on_stop_signals",
    "serves_one_at_a_time",
    "shutdown_at_exit",
    "wait_until_final",
    "wait_while_serving",
]
