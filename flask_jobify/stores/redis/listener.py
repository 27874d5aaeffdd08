"""How a :class:`~flask_jobify.stores.redis.RedisStore` wait learns of a
change: :class:`Listener` keeps the waiters of each job and one thread per
store, subscribed to the store's channel, that wakes the waiters of each
job id published there; :func:`wait_for_change` is the wait itself.

:class:`Listener` is thread-safe: a lock guards its waiters and the start
of its thread. Any number of waiters share one connection, and no wait
pays a subscribe round trip. The price: every listening process receives
the id of every change under the store's prefix.
"""
from __future__ import annotations

import contextlib
import threading
import time
import typing as t
import weakref

import redis

from ...models import Job

#: Seconds between two reads of a waited-on job when no notice comes. Only a
#: safety net for a connection that died silently: a notice lost to a
#: reconnection is not missed, as every waiter re-reads after a resubscription.
_SAFETY_POLL = 2.0
#: Seconds the listener thread waits for a notice before it looks whether
#: its :class:`Listener` is still held by anyone (else it ends).
_LISTEN_CHECK = 1.0


class Listener:
    """The waiters of one store and the thread that wakes them.

    The thread starts with the first :meth:`waiter` (again after it died)
    and stops on :meth:`close`. It holds this object weakly: a listener
    nobody holds any more (its store was collected) is collected too, and
    its thread ends within :data:`_LISTEN_CHECK` seconds. Thread-safe.

    :param client: the store's client; the thread takes a connection of
        its own from it.
    :param channel: where the store publishes the id of each changed job.
    :param name: the thread's name.
    """

    def __init__(self, client: redis.Redis, channel: str, name: str) -> None:
        self.client = client
        self.channel = channel
        self.name = name
        #: The events of the waiters, by job id: what :meth:`wake` sets.
        self.waiters: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()  # the thread is subscribed
        self._closing = threading.Event()

    @contextlib.contextmanager
    def waiter(self, job_id: str, patience: float) -> t.Iterator[tuple[threading.Event, bool]]:
        """Register an event that notices of ``job_id`` set; yield it and
        whether the thread is subscribed (waited for up to ``patience``
        seconds)."""
        event = threading.Event()
        with self._lock:
            self.waiters.setdefault(job_id, set()).add(event)
            if self._thread is None or not self._thread.is_alive():
                self._ready.clear()
                self._thread = threading.Thread(
                    target=_listen, args=(weakref.ref(self), self.client, self.channel,
                                          self._closing, self._ready),
                    name=self.name, daemon=True)
                self._thread.start()
        try:
            yield event, self._ready.wait(patience)
        finally:
            with self._lock:
                self.waiters[job_id].discard(event)
                if not self.waiters[job_id]:
                    del self.waiters[job_id]

    def wake(self, job_id: str | None) -> None:
        """Wake the waiters of ``job_id``, or every waiter for ``None``."""
        with self._lock:
            if job_id is None:
                events = [event for events in self.waiters.values() for event in events]
            else:
                events = list(self.waiters.get(job_id, ()))
        for event in events:
            event.set()

    def close(self) -> None:
        """Stop the thread (waiting up to a second for it), if it runs."""
        self._closing.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            with contextlib.suppress(redis.RedisError):
                self.client.publish(self.channel, "")  # wakes the thread to stop
            thread.join(1.0)


def wait_for_change(
    get: t.Callable[[str], Job | None], job_id: str, event: threading.Event,
    version: int, timeout: float, *, read_first: bool,
) -> Job | None:
    """Wait until the job's version differs from ``version``, or ``timeout``
    seconds pass; return the job as ``get`` reads it then. Read, then sleep
    until ``event`` (a :meth:`Listener.waiter`'s) is set or
    :data:`_SAFETY_POLL` seconds pass, and again. Without ``read_first``,
    sleep first: the caller read the job after ``event`` was registered and
    the listener subscribed."""
    deadline = time.monotonic() + timeout
    read = read_first or timeout <= 0
    job: Job | None = None
    while True:
        if read:
            job = get(job_id)
            if job is None or job.version != version:
                return job
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return job if read else get(job_id)
        event.wait(min(remaining, _SAFETY_POLL))
        event.clear()  # before the next read, so no later notice is lost
        read = True


def _listen(
    ref: weakref.ref[Listener], client: redis.Redis, channel: str,
    closing: threading.Event, ready: threading.Event,
) -> None:
    """The thread of a :class:`Listener`: wake the waiters of each changed
    job, until the listener is closed or collected. Holds the listener only
    to wake them."""
    while not closing.is_set():
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]  # unannotated in redis-py
        try:
            pubsub.subscribe(channel)
            while not closing.is_set():
                message = pubsub.get_message(timeout=_LISTEN_CHECK)
                listener = ref()
                if listener is None:
                    return
                if message is None:
                    continue
                if message["type"] == "subscribe":  # at first, or after a reconnection
                    ready.set()
                    listener.wake(None)
                elif message["type"] == "message":
                    listener.wake(message["data"].decode())
                del listener
        except Exception:  # noqa: BLE001 - the connection dropped: read again, retry
            ready.clear()
            listener = ref()
            if listener is None:
                return
            listener.wake(None)
            del listener
            closing.wait(0.5)
        finally:
            pubsub.close()


__all__ = ["Listener", "wait_for_change"]
