"""A job store in Redis, shared by every process and machine that reaches it."""
from __future__ import annotations

import json
import threading
import time
import typing as t
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from ..errors import StoreError
from ..models import Job, JobStatus, StoredResponse
from .base import Cursor, JobStore, apply_changes, is_expired, status_allowed

#: Seconds a waiter sleeps between two reads when no notification comes
#: (a safety net: pub/sub messages are not guaranteed).
_FALLBACK_POLL = 0.5


class RedisStore(JobStore):
    """Jobs in Redis, under keys that start with ``prefix``.

    Safe to share between threads (redis-py pools its connections) and
    between processes and machines: an update is a ``WATCH``/``MULTI``
    transaction, retried if another client changed the job in between, so
    compare-and-set is atomic everywhere. Finished jobs carry a Redis
    expiry at ``expires_at``. Waiters are woken through pub/sub by one
    listener thread per store (started at the first :meth:`wait`).

    Keys: ``{prefix}:job:{id}`` (the record as JSON), ``{prefix}:result:{id}``
    (a hash: status, headers, body), ``{prefix}:jobs`` (a sorted set of ids
    scored by ``created_at``, for listing) and the channel
    ``{prefix}:changed`` (a job id per message).
    """

    shared_across_processes = True

    def __init__(self, client: redis.Redis, *, prefix: str = "jobify") -> None:
        self.client = client
        self.prefix = prefix
        self._index = f"{prefix}:jobs"
        self._channel = f"{prefix}:changed"
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._listener: threading.Thread | None = None
        self._pubsub: t.Any = None
        self._subscribed = threading.Event()

    @classmethod
    def from_url(cls, url: str, **kwargs: t.Any) -> RedisStore:
        """``redis://host:port/db?prefix=name``; other query parameters go to
        redis-py."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        prefix = query.pop("prefix", "jobify")
        clean = urlunsplit(parts._replace(query=urlencode(query)))
        return cls(redis.Redis.from_url(clean, **kwargs), prefix=prefix)

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def _result_key(self, job_id: str) -> str:
        return f"{self.prefix}:result:{job_id}"

    @staticmethod
    def _load(raw: bytes | None) -> Job | None:
        if raw is None:
            return None
        job = Job.from_dict(json.loads(raw))
        return None if is_expired(job) else job

    # -- the contract ------------------------------------------------------
    def create(self, job: Job) -> None:
        if not self.client.set(self._job_key(job.id), json.dumps(job.to_dict()), nx=True):
            raise StoreError(f"A job with id {job.id!r} exists already.")
        self.client.zadd(self._index, {job.id: job.created_at})

    def get(self, job_id: str) -> Job | None:
        return self._load(self.client.get(self._job_key(job_id)))

    def update(
        self,
        job_id: str,
        changes: t.Mapping[str, t.Any],
        *,
        only_if: t.Iterable[JobStatus] | None = None,
        result: StoredResponse | None = None,
    ) -> Job | None:
        key = self._job_key(job_id)
        updated: list[Job | None] = [None]

        def attempt(pipe: redis.client.Pipeline) -> None:
            job = self._load(pipe.get(key))
            updated[0] = None
            if job is None or not status_allowed(job, only_if):
                return  # nothing to write
            apply_changes(job, changes)
            pipe.multi()
            pipe.set(key, json.dumps(job.to_dict()))
            if result is not None:
                result_key = self._result_key(job_id)
                pipe.hset(result_key, mapping={
                    "status": result.status,
                    "headers": json.dumps(result.headers),
                    "body": result.body,
                })
            if job.expires_at is not None:
                at_ms = max(int(job.expires_at * 1000), 1)
                pipe.pexpireat(key, at_ms)
                pipe.pexpireat(self._result_key(job_id), at_ms)
            updated[0] = job

        self.client.transaction(attempt, key)
        if updated[0] is not None:
            self.client.publish(self._channel, job_id)
        return updated[0]

    def get_result(self, job_id: str) -> StoredResponse | None:
        if self.get(job_id) is None:
            return None
        fields = self.client.hgetall(self._result_key(job_id))
        if not fields:
            return None
        headers = [(name, value) for name, value in json.loads(fields[b"headers"])]
        return StoredResponse(int(fields[b"status"]), headers, bytes(fields[b"body"]))

    def delete(self, job_id: str) -> bool:
        pipe = self.client.pipeline()
        pipe.delete(self._job_key(job_id), self._result_key(job_id))
        pipe.zrem(self._index, job_id)
        deleted, _ = pipe.execute()
        self.client.publish(self._channel, job_id)
        return deleted > 0

    def list(
        self,
        *,
        status: JobStatus | None = None,
        operation: str | None = None,
        owner: str | None = None,
        limit: int = 50,
        after: Cursor | None = None,
    ) -> list[Job]:
        found: list[Job] = []
        top: t.Any = "+inf" if after is None else after[0]
        offset = 0
        batch = max(limit * 2, 100)
        while len(found) < limit:
            ids = self.client.zrevrangebyscore(self._index, top, "-inf", start=offset, num=batch)
            if not ids:
                break
            offset += len(ids)
            raws = self.client.mget([self._job_key(i.decode()) for i in ids])
            for raw in raws:
                job = self._load(raw)
                if job is None:
                    continue
                if after is not None and (job.created_at, job.id) >= tuple(after):
                    continue
                if ((status is None or job.status == status)
                        and (operation is None or job.operation == operation)
                        and (owner is None or job.owner == owner)):
                    found.append(job)
                    if len(found) == limit:
                        break
        return found

    def wait(self, job_id: str, version: int, timeout: float) -> Job | None:
        self._ensure_listener()
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(event)
        try:
            deadline = time.monotonic() + timeout
            while True:
                job = self.get(job_id)  # read after subscribing: no change is missed
                if job is None or job.version != version:
                    return job
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return job
                event.wait(min(remaining, _FALLBACK_POLL))
                event.clear()
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[job_id]

    def purge_expired(self, now: float | None = None) -> int:
        """Drop index entries of jobs Redis has expired (or that are past
        ``expires_at``); Redis itself frees their keys."""
        now = time.time() if now is None else now
        purged = 0
        cursor = 0
        while True:
            cursor, entries = self.client.zscan(self._index, cursor, count=1000)
            ids = [member.decode() for member, _ in entries]
            if ids:
                raws = self.client.mget([self._job_key(i) for i in ids])
                gone = []
                for job_id, raw in zip(ids, raws):
                    if raw is None:
                        gone.append(job_id)
                    elif is_expired(Job.from_dict(json.loads(raw)), now):
                        gone.append(job_id)
                        self.client.delete(self._job_key(job_id), self._result_key(job_id))
                if gone:
                    purged += self.client.zrem(self._index, *gone)
            if cursor == 0:
                return purged

    def close(self) -> None:
        with self._lock:
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            pubsub.close()
        self.client.close()

    # -- notifications -------------------------------------------------------
    def _ensure_listener(self) -> None:
        with self._lock:
            if self._listener is not None and self._listener.is_alive():
                return
            self._subscribed.clear()
            self._pubsub = self.client.pubsub(ignore_subscribe_messages=False)
            self._listener = threading.Thread(
                target=self._listen, args=(self._pubsub,), name="jobify-redis", daemon=True
            )
            self._listener.start()
        self._subscribed.wait(5)

    def _listen(self, pubsub: t.Any) -> None:
        try:
            pubsub.subscribe(self._channel)
            for message in pubsub.listen():
                if message["type"] == "subscribe":
                    self._subscribed.set()
                elif message["type"] == "message":
                    with self._lock:
                        waiters = list(self._waiters.get(message["data"].decode(), ()))
                    for event in waiters:
                        event.set()
        except Exception:  # closed, or the connection dropped: waiters fall back to polling
            self._subscribed.set()
