"""Server-Sent Events: a job's changes, and every visible job's, pushed.

``GET {prefix}/<id>/events`` streams ``text/event-stream``: one event per
change of the job, named ``status`` (its status, or anything but its
progress, changed), ``progress`` (only its progress did) or ``final``
(it ended; the stream then closes). Each event's ``data`` is the job
record as ``GET {prefix}/<id>`` gives it, and its ``id`` the record's
``version``, so a browser's ``EventSource`` that reconnects sends
``Last-Event-ID`` and the stream goes on from there: the job's current
state at once if it moved meanwhile, and a ``204`` (which stops
``EventSource`` from reconnecting) if it had already sent the final
event. Intermediate states a client missed while away are not replayed:
the store keeps a job's current state, not its history.

``GET {prefix}/events?status=&operation=`` streams ``job`` events (the
record, as above) for every job the caller may see (as ``GET {prefix}``
lists them) when it changes, first the newest 50, and ``deleted`` events
(``{"id": ...}``) for jobs forgotten; see :mod:`flask_jobify.feed`.

Every stream sends a ``: keep-alive`` comment after
``JOBIFY_SSE_KEEPALIVE`` seconds without an event, closes after
``JOBIFY_SSE_MAX_SECONDS`` (the browser reconnects) or when the process
stops, and holds a server thread while open: a process serves at most
``JOBIFY_SSE_MAX_STREAMS`` at once, one more gets ``503
too_many_streams``.
"""
from __future__ import annotations

import json
import os
import threading
import time
import typing as t

from flask import Blueprint, Response, current_app, request, send_file, stream_with_context

from .errors import InvalidArgument, TooManyStreams
from .feed import ChangeFeed, Subscription
from .models import Job, JobStatus
from .perprocess import PerProcess
from .schemas import MAX_OPERATION_LENGTH, STATUS_VALUES, JobSchema
from .serving import STOP_CHECK_INTERVAL, serves_one_at_a_time
from .stores.base import NO_OWNER

if t.TYPE_CHECKING:
    from .config import Settings
    from .state import JobifyState

#: The stream's media type (HTML Living Standard, 9.2).
EVENT_STREAM = "text/event-stream"
#: Milliseconds a browser waits before it reconnects a closed stream.
RECONNECT_MS = 1000
#: Jobs sent first by the all-jobs stream.
FIRST_JOBS = 50
#: The browser client, shipped in the package.
CLIENT_JS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "client.js")


def format_event(data: t.Any, *, event: str | None = None, event_id: int | None = None) -> str:
    """One event: ``event:``, ``id:`` and a one-line JSON ``data:`` field."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


#: A comment line: ignored by clients, it keeps proxies and the TCP
#: connection alive and lets the server notice a client that left.
KEEP_ALIVE = ": keep-alive\n\n"


def event_name(before: Job | None, job: Job) -> str:
    """``final``, ``progress`` (only the progress changed) or ``status``."""
    if job.is_final:
        return "final"
    if before is not None and before.status == job.status and before.progress != job.progress:
        return "progress"
    return "status"


class _Count:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.most = 0


class EventHub:
    """The event streams of one app: how many are open in this process, and
    the change feed of the all-jobs stream. Thread-safe.

    :param feed: the app's :class:`~flask_jobify.feed.ChangeFeed`.
    :param settings: the app's settings (``JOBIFY_SSE_*``).
    """

    def __init__(self, feed: ChangeFeed, settings: Settings) -> None:
        self.feed = feed
        self.settings = settings
        self._count: PerProcess[_Count] = PerProcess(_Count)

    @classmethod
    def for_state(cls, state: JobifyState) -> EventHub:
        return cls(ChangeFeed(state.store, state.name, state.settings.sse_feed_interval),
                   state.settings)


    def open_streams(self) -> tuple[int, int]:
        """Streams open in this process now, and the most open at once."""
        count = self._count.get()
        with count.lock:
            return count.open, count.most

    def take_slot(self) -> t.Callable[[], None]:
        """Count one more open stream; return what gives its slot back
        (call it once).

        :raises TooManyStreams: if ``JOBIFY_SSE_MAX_STREAMS`` are open.
        """
        count = self._count.get()
        with count.lock:
            if count.open >= self.settings.sse_max_streams:
                raise TooManyStreams(headers={"Retry-After": str(self.settings.retry_after)})
            count.open += 1
            count.most = max(count.most, count.open)
        given = threading.Event()

        def give_back() -> None:
            if not given.is_set():
                given.set()
                with count.lock:
                    count.open -= 1
        return give_back


#: Where an app keeps its :class:`EventHub`: ``app.extensions[HUB_KEY]``.
HUB_KEY = "jobify.events"


def hub_of(state: JobifyState) -> EventHub:
    """The event streams of ``state``'s app (made by :func:`add_event_routes`
    at ``init_app``)."""
    return t.cast(EventHub, state.app.extensions[HUB_KEY])


def _state() -> JobifyState:
    return t.cast("JobifyState", current_app.extensions["jobify"])


def _dump(job: Job) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", JobSchema().dump(job))


def _lifetime(state: JobifyState) -> float:
    """How long a stream of this request may stay open."""
    if serves_one_at_a_time(request.environ):
        return min(state.settings.sse_max_seconds, state.settings.blocking_max_wait)
    return state.settings.sse_max_seconds


def _ended(state: JobifyState, began: float, deadline: float) -> bool:
    return (time.monotonic() >= deadline or state.stopping
            or state.long_polls_ended_at >= began)


def _last_event_id() -> int | None:
    """``Last-Event-ID`` (or ``?lastEventId=``, for clients that cannot set
    headers) as a version; ``None`` when absent or not one: the stream then
    starts with the job's current state, which loses nothing."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("lastEventId") or ""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else None


def _streaming(events: t.Iterator[str], on_close: t.Callable[[], None]) -> Response:
    """Stream ``events`` (in the request's context); ``on_close`` runs when
    the server closes the response, however the stream ended, even if it
    never started."""
    response = Response(stream_with_context(events), mimetype=EVENT_STREAM, headers={
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        "X-Content-Type-Options": "nosniff"})
    response.call_on_close(on_close)
    return response


def job_events(state: JobifyState, job: Job, last: int | None) -> Response:
    """The response of ``GET {prefix}/<id>/events`` for ``job``, which the
    caller may see."""
    if last is not None and job.is_final and last >= job.version:
        return Response(status=204)  # it had the final event: EventSource stops
    hub = hub_of(state)
    give_back = hub.take_slot()
    keepalive, lifetime = state.settings.sse_keepalive, _lifetime(state)

    def events() -> t.Iterator[str]:
        began = time.monotonic()
        deadline = began + lifetime
        yield f"retry: {RECONNECT_MS}\n\n"
        with state.store.watching(job.id) as wait_for_change:
            current = state.store.get(job.id)
            if current is None:
                yield format_event({"id": job.id}, event="deleted")
                return
            if last is None or current.version != last:
                yield format_event(_dump(current), event=event_name(None, current),
                                   event_id=current.version)
            quiet_since = time.monotonic()
            while not current.is_final and not _ended(state, began, deadline):
                step = min(STOP_CHECK_INTERVAL, keepalive, max(deadline - time.monotonic(), 0))
                changed = wait_for_change(current.version, step)
                if changed is None:
                    yield format_event({"id": job.id}, event="deleted")
                    return
                if changed.version != current.version:
                    yield format_event(_dump(changed), event=event_name(current, changed),
                                       event_id=changed.version)
                    current, quiet_since = changed, time.monotonic()
                elif time.monotonic() - quiet_since >= keepalive:
                    yield KEEP_ALIVE
                    quiet_since = time.monotonic()

    return _streaming(events(), give_back)


def all_events(state: JobifyState, status: JobStatus | None, operation: str | None) -> Response:
    """The response of ``GET {prefix}/events``: every job the caller may see
    (and that matches ``status`` and ``operation``), as it changes."""
    hub = hub_of(state)
    owner = state.current_owner()  # before the slot: a refused caller (401) keeps none
    give_back = hub.take_slot()
    try:
        subscription = hub.feed.subscribe()  # before the first read: no change slips by
    except BaseException:
        give_back()
        raise
    keepalive, lifetime = state.settings.sse_keepalive, _lifetime(state)

    def close() -> None:
        hub.feed.unsubscribe(subscription)
        give_back()

    def wanted(job: Job) -> bool:
        # The owner filter of GET {prefix}: an owner's jobs, or those without one.
        return (job.owner == owner and (status is None or job.status == status)
                and (operation is None or job.operation == operation))

    def events() -> t.Iterator[str]:
        began = time.monotonic()
        deadline = began + lifetime
        yield f"retry: {RECONNECT_MS}\n\n"
        first = state.store.list(owner=NO_OWNER if owner is None else owner, limit=FIRST_JOBS,
                                 app=state.name, status=status, operation=operation)
        sent = {job.id for job in first}  # a job sent once is followed when it stops matching
        for job in reversed(first):
            yield format_event(_dump(job), event="job")
        yield from _follow(state, subscription, wanted, sent, began, deadline, keepalive)

    return _streaming(events(), close)


def _follow(state: JobifyState, subscription: Subscription,
            wanted: t.Callable[[Job], bool], sent: set[str], began: float,
            deadline: float, keepalive: float) -> t.Iterator[str]:
    quiet_since = time.monotonic()
    while not _ended(state, began, deadline):
        change = subscription.get(min(STOP_CHECK_INTERVAL, keepalive))
        if subscription.overflowed:
            yield format_event({"reason": "This stream fell behind; reload."}, event="reload")
            return
        if change is not None and (change.job.id in sent or wanted(change.job)):
            if change.deleted:
                sent.discard(change.job.id)
                yield format_event({"id": change.job.id}, event="deleted")
            else:
                sent.add(change.job.id)
                yield format_event(_dump(change.job), event="job")
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= keepalive:
            yield KEEP_ALIVE
            quiet_since = time.monotonic()


def _filters() -> tuple[JobStatus | None, str | None]:
    """``?status=`` and ``?operation=`` of the all-jobs stream, checked."""
    status, operation = request.args.get("status") or None, request.args.get("operation") or None
    problems: dict[str, list[str]] = {}
    if status is not None and status not in STATUS_VALUES:
        problems["status"] = [f"Must be one of: {', '.join(STATUS_VALUES)}."]
    if operation is not None and len(operation) > MAX_OPERATION_LENGTH:
        problems["operation"] = [f"Longer than {MAX_OPERATION_LENGTH} characters."]
    if problems:
        raise InvalidArgument("Invalid arguments; see details.", details={"query": problems})
    return (JobStatus(status) if status else None), operation


def _client_js() -> Response:
    response = send_file(CLIENT_JS, mimetype="text/javascript", max_age=300)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def add_event_routes(blueprint: Blueprint, state: JobifyState) -> None:
    """Add the event streams and ``client.js`` to the jobs blueprint, with
    Flask's own ``add_url_rule`` (out of the OpenAPI spec, like the spec's
    own route). A job's stream shows what the status endpoint shows (the
    same lookup: 400, or 404 to others)."""
    from .views import _visible_job as visible_job

    state.app.extensions[HUB_KEY] = EventHub.for_state(state)
    add_rule = Blueprint.add_url_rule

    def job_stream(job_id: str) -> Response:
        return job_events(_state(), visible_job(job_id), _last_event_id())

    def all_stream() -> Response:
        return all_events(_state(), *_filters())

    add_rule(blueprint, "/<job_id>/events", "job_events", job_stream)
    add_rule(blueprint, "/events", "events", all_stream)
    add_rule(blueprint, "/client.js", "client_js", _client_js)


__all__ = [
    "CLIENT_JS",
    "EVENT_STREAM",
    "FIRST_JOBS",
    "HUB_KEY",
    "KEEP_ALIVE",
    "RECONNECT_MS",
    "EventHub",
    "add_event_routes",
    "all_events",
    "event_name",
    "format_event",
    "hub_of",
    "job_events",
]
