"""The writes of one :class:`~flask_jobify.stores.redis.RedisStore`
update, before they are sent: :class:`Commands` collects them for the
compare-and-set script, :class:`Written` remembers the records this store
wrote last, so that an update can start from one without reading it.

:class:`Commands` belongs to one update in one thread; :class:`Written`
is thread-safe.
"""
from __future__ import annotations

import collections
import threading
import typing as t

#: Records a store remembers having written (see :class:`Written`).
REMEMBERED = 4096


class Commands:
    """Collects the writes of one update, in the shape
    :data:`~flask_jobify.stores.redis.scripts.APPLY` runs: each command as
    its argument count followed by its arguments, in :attr:`args`. Its
    methods mirror redis-py's pipeline (``set``, ``zadd``...), so that code
    that queues writes works on either. Not thread-safe: one per update."""

    def __init__(self) -> None:
        self.args: list[t.Any] = []

    def _add(self, *command: t.Any) -> None:
        self.args += [len(command), *command]

    def set(self, key: str, value: t.Any) -> None:
        self._add("SET", key, value)

    def zadd(self, key: str, mapping: t.Mapping[str, float]) -> None:
        for member, score in mapping.items():
            self._add("ZADD", key, repr(float(score)), member)

    def zrem(self, key: str, member: str) -> None:
        self._add("ZREM", key, member)

    def hset(self, key: str, field: str | None = None, value: t.Any = None,
             mapping: t.Mapping[str, t.Any] | None = None) -> None:
        pairs = dict(mapping or {})
        if field is not None:
            pairs[field] = value
        self._add("HSET", key, *(part for pair in pairs.items() for part in pair))

    def delete(self, key: str) -> None:
        self._add("DEL", key)

    def pexpireat(self, key: str, at_ms: int) -> None:
        self._add("PEXPIREAT", key, at_ms)

    def publish(self, channel: str, message: str) -> None:
        self._add("PUBLISH", channel, message)


class Written:
    """The record this store last wrote for each of the jobs it wrote last
    (at most :data:`REMEMBERED`, least recently written out). An update
    starts from it instead of reading the record: a worker that claimed a
    job writes its progress and its end in one round trip each, as long as
    no other process changed the record meanwhile (the compare-and-set
    tells, and the update then reads). Thread-safe."""

    def __init__(self) -> None:
        self._records: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str) -> bytes | None:
        with self._lock:
            return self._records.get(job_id)

    def put(self, job_id: str, record: str) -> None:
        with self._lock:
            self._records[job_id] = record.encode()
            self._records.move_to_end(job_id)
            if len(self._records) > REMEMBERED:
                self._records.popitem(last=False)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._records.pop(job_id, None)


__all__ = ["REMEMBERED", "Commands", "Written"]
