"""The Redis job store: its records, their indexes and their expiry.

:class:`RedisStore` is thread-safe and safe across processes and machines
(see the class). It runs the Lua scripts of :mod:`.scripts`, queues its writes
with :mod:`.writes`, leaves the wake-up of waiters to :mod:`.listener` and the
execution queues to :mod:`.slots`."""
from __future__ import annotations

import contextlib
import functools
import json
import math
import time
import typing as t

import redis

from ...errors import DuplicateJobId, StoreError
from ...models import Job, JobStatus, StoredResponse
from ..base import (
    NO_OWNER,
    Cursor,
    JobStore,
    OwnerFilter,
    WaitForChange,
    apply_changes,
    conditions_hold,
    of_app,
)
from .connect import client_from_url, reported
from .keys import Keys, lease_score, load
from .listener import Listener, wait_for_change
from .scripts import Scripts
from .slots import RedisSlots
from .writes import Commands, Written

#: Most ids read from an index in one round trip while listing or purging.
_BATCH = 1000


class RedisStore(RedisSlots, JobStore):
    """Jobs in Redis, shared by every thread, process and machine that reaches it.

    Safe to share between threads: redis-py pools its connections, and a
    lock guards the waiters. Safe to share between processes and machines:
    :meth:`update` reads the record, then writes it, its index entries and
    its notice with one Lua compare-and-set that applies only if the record
    is still the one read (retried otherwise), so ``if_status`` has one winner
    and no update is lost, in two round trips; in one when the record is
    still the one this store last wrote, which it tries first (a worker's
    progress and end after its claim); :meth:`delete` is a
    ``WATCH``/``MULTI`` transaction and :meth:`create` one Lua script.
    Standalone Redis or Sentinel: a job's keys span Redis Cluster slots.

    Keys start with ``prefix`` (the layout: :mod:`flask_jobify.stores.redis.keys`):
    ``{prefix}:job:{id}`` (the record as JSON), its result and saved request,
    and sorted sets of ids scored by ``created_at``, kept in the record's
    transaction: ``{prefix}:jobs`` and one per status, operation and owner
    (``{prefix}:ownerless`` for none). A filtered page walks its own index
    (the smallest, for several filters), so it costs the same at 100,000
    jobs as at 10. :meth:`expired_leases` walks ``{prefix}:leases``, scored
    by ``lease_until``. A finished job's keys expire at ``expires_at``, and
    :meth:`purge_expired` drops their index entries without a scan.

    :meth:`renew_leases` compare-and-sets records as :meth:`update` does,
    a thousand per script, and publishes nothing. :meth:`update` and
    :meth:`delete` publish the job id on ``{prefix}:changed``. One listener
    thread per store (:class:`~flask_jobify.stores.redis.listener.Listener`),
    started by the first :meth:`wait` and stopped by :meth:`close`, wakes
    that job's waiters: any number of waiters share one connection and no
    wait pays a subscribe round trip; every listening process receives the
    id of every change under the prefix. A store nobody holds any more is
    collected, and its listener thread ends within a second.

    The client must not decode responses; :meth:`from_url` makes one.
    """

    shared_across_processes = True

    def __init__(self, client: redis.Redis, *, prefix: str = "jobify") -> None:
        if not prefix:
            raise StoreError("RedisStore needs a non-empty key prefix.")
        if client.get_encoder().decode_responses:
            raise StoreError("RedisStore needs a client with decode_responses=False.")
        self.client = client
        self._db: t.Any = client  # redis-py's return types are unions: untyped here
        self.prefix = prefix
        self._keys = Keys(prefix)
        self._scripts = Scripts(client)
        self._written = Written()
        self._listener = Listener(client, self._keys.channel, f"jobify-redis-{prefix}")

    @classmethod
    def from_url(cls, url: str, *, prefix: str | None = None, **kwargs: t.Any) -> RedisStore:
        """Build a store from ``redis://host:port/db``, ``rediss://`` or
        ``unix:///path``.

        The ``prefix`` query parameter starts every key, else ``prefix``,
        else ``jobify``; other query parameters and ``kwargs`` go to
        :meth:`redis.Redis.from_url`, except ``decode_responses``, always off.
        ``socket_connect_timeout`` defaults to 2 seconds (redis-py's is
        none: an unreachable host would hold a request for minutes).

        :raises StoreError: if ``url`` is not a Redis URL.
        """
        client, prefix = client_from_url(url, prefix, **kwargs)
        return cls(client, prefix=prefix)

    # -- the contract ------------------------------------------------------
    @reported
    def create(self, job: Job) -> None:
        names = self._keys
        keys = [names.key("job", job.id), names.final, names.expiry, names.leases, names.all,
                *names.indexes(job)]
        lease = lease_score(job)
        record = json.dumps(job.to_dict())
        args = [record, repr(float(job.created_at)), job.id,
                "" if lease is None else repr(float(lease))]
        if not self._scripts.create(keys=keys, args=args):
            raise DuplicateJobId(f"A job with id {job.id!r} exists already.")
        self._written.put(job.id, record)
        if job.expires_at is not None:  # created finished: unusual, not atomic
            pipe = self._db.pipeline()
            self._keys.expire(pipe, job)
            pipe.execute()

    @reported
    def get(self, job_id: str) -> Job | None:
        return load(self._db.get(self._keys.key("job", job_id)))

    @reported
    def update(
        self,
        job_id: str,
        changes: t.Mapping[str, t.Any],
        *,
        if_status: t.Iterable[JobStatus] | None = None,
        result: StoredResponse | None = None,
        if_fields: t.Mapping[str, t.Any] | None = None,
    ) -> Job | None:
        key = self._keys.key("job", job_id)
        raw = self._written.get(job_id)  # what we wrote last: it may still be current
        read = raw is None
        while True:  # until the record did not change between our read and write
            if read:
                raw = self._db.get(key)
            job = load(raw)
            if job is None or not conditions_hold(job, if_status, if_fields):
                if not read:  # decided on what we wrote: the record may have moved on
                    read = True
                    continue
                return None
            before, created_at, leased, ended = (
                self._keys.indexes(job), job.created_at, lease_score(job), job.is_final)
            apply_changes(job, changes)
            after = self._keys.indexes(job)
            moved = job.created_at != created_at
            pipe = Commands()
            record = json.dumps(job.to_dict())
            pipe.set(key, record)
            for index in set(before) - set(after):
                pipe.zrem(index, job_id)
            for index in [self._keys.all, *after] if moved else set(after) - set(before):
                pipe.zadd(index, {job_id: job.created_at})
            if result is not None:
                pipe.hset(self._keys.key("result", job_id), mapping={
                    "status": result.status, "headers": result.head_json(),
                    "body": result.body})
            lease = lease_score(job)
            if lease is not None and lease != leased:
                pipe.zadd(self._keys.leases, {job_id: lease})
            elif lease is None and leased is not None:
                pipe.zrem(self._keys.leases, job_id)
            if job.is_final and not ended and self.forgets_request(job):
                pipe.delete(self._keys.key("request", job_id))
            if job.expires_at is not None:
                self._keys.expire(pipe, job)
            pipe.publish(self._keys.channel, job_id)  # in the script: sent once applied
            if self._scripts.apply(keys=[key], args=[t.cast(bytes, raw), *pipe.args]):
                self._written.put(job_id, record)
                return job
            read = True

    @reported
    def renew_leases(self, leases: t.Mapping[str, int], until: float) -> set[str]:
        """Two round trips per thousand jobs: ``MGET`` the records, then one
        Lua script that compare-and-sets each (a record changed in between
        is read and tried again)."""
        until, renewed, left = float(until), set(), dict(leases)
        while left:
            ids = list(left)[:_BATCH]
            keys = [self._keys.key("job", job_id) for job_id in ids]
            script_keys, args = [self._keys.leases], [repr(until)]
            for job_id, key, raw in zip(ids, keys, self._db.mget(keys)):
                attempt = left.pop(job_id)
                job = load(raw)
                if job is None or job.is_final or job.attempts != attempt:
                    continue
                job.lease_until = until
                script_keys.append(key)
                args += [job_id, raw, json.dumps(job.to_dict())]  # active: no expiry to keep
            if len(script_keys) == 1:
                continue
            done = self._scripts.renew(keys=script_keys, args=args)
            for i, ok in enumerate(done):
                job_id = args[1 + 3 * i]
                if ok:
                    renewed.add(job_id)
                    if self._written.get(job_id) is not None:  # keep it current
                        self._written.put(job_id, args[3 + 3 * i])
                else:  # changed since read: read it again
                    left[job_id] = leases[job_id]
        return renewed

    @reported
    def expired_leases(
        self, now: float | None = None, limit: int = 100, *, app: str | None = None
    ) -> list[Job]:
        """Walks ``{prefix}:leases`` oldest first, past other apps' jobs."""
        now = time.time() if now is None else now
        found: list[Job] = []
        start = 0
        while len(found) < limit:
            ids = self._db.zrangebyscore(self._keys.leases, "-inf", now, start=start, num=limit)
            if not ids:
                break
            start += len(ids)
            jobs = (load(raw) for raw in self._db.mget(
                [self._keys.key("job", member.decode()) for member in ids]))
            # A job that ended between the two reads has left the set since.
            found += [job for job in jobs
                      if job is not None and not job.is_final and of_app(job, app)]
            if len(ids) < limit:
                break
        return found[:limit]

    @reported
    def save_request(self, job_id: str, data: bytes) -> None:
        keys = [self._keys.key("job", job_id), self._keys.key("request", job_id)]
        self._scripts.save_request(keys=keys, args=[bytes(data)])

    @reported
    def load_request(self, job_id: str) -> bytes | None:
        raw, data = self._db.pipeline(transaction=False).get(self._keys.key("job", job_id)).get(
            self._keys.key("request", job_id)).execute()
        if data is None or load(raw) is None:
            return None
        return bytes(data)

    @reported
    def get_result(self, job_id: str) -> StoredResponse | None:
        return self.get_with_result(job_id)[1]

    @reported
    def get_with_result(self, job_id: str) -> tuple[Job | None, StoredResponse | None]:
        """One round trip: ``GET`` and ``HGETALL`` in ``MULTI``/``EXEC``."""
        raw, fields = self._db.pipeline(transaction=True).get(
            self._keys.key("job", job_id)).hgetall(self._keys.key("result", job_id)).execute()
        job = load(raw)
        if job is None or not fields:
            return job, None
        return job, StoredResponse.from_parts(
            int(fields[b"status"]), fields[b"headers"], fields[b"body"])

    @reported
    def delete(self, job_id: str) -> bool:
        key = self._keys.key("job", job_id)

        def attempt(pipe: t.Any) -> bool:
            raw = pipe.get(key)
            if raw is None:  # unknown, or expired by Redis: purge_expired() sweeps it
                return False
            job = Job.from_dict(json.loads(raw))
            pipe.multi()
            pipe.delete(key, self._keys.key("result", job_id), self._keys.key("request", job_id))
            names = self._keys
            for index in (names.all, *names.indexes(job), names.expiry, names.leases):
                pipe.zrem(index, job_id)
            pipe.hdel(self._keys.final, job_id)
            pipe.publish(self._keys.channel, job_id)
            return True

        self._written.forget(job_id)
        return bool(self._db.transaction(attempt, key, value_from_callable=True))

    @reported
    def list(
        self,
        *,
        status: JobStatus | None = None,
        operation: str | None = None,
        owner: OwnerFilter = None,
        limit: int = 50,
        after: Cursor | None = None,
        app: str | None = None,
    ) -> list[Job]:
        filters = {"status": None if status is None else JobStatus(status).value,
                   "operation": operation, "owner": None if owner is NO_OWNER else owner}
        indexes = [self._keys.key(kind, value)
                   for kind, value in filters.items() if value is not None]
        if owner is NO_OWNER:
            indexes.append(self._keys.ownerless)
        index = indexes[0] if indexes else self._keys.all
        if len(indexes) > 1:  # walk the smallest, check the other filters here
            pipe = self._db.pipeline(transaction=False)
            for key in indexes:
                pipe.zcard(key)
            index = min(zip(pipe.execute(), indexes))[1]

        def wanted(job: Job) -> bool:
            return ((status is None or job.status == status)
                    and (operation is None or job.operation == operation)
                    and (owner is None or job.owner == (None if owner is NO_OWNER else owner))
                    and of_app(job, app)
                    and (after is None or (job.created_at, job.id) < tuple(after)))

        # Walk the index newest first from the cursor's score. Equal scores
        # come by id, descending; ``skip`` steps over those already read, so
        # no read starts further than the ties of one score.
        found: list[Job] = []
        top, skip, batch, now = math.inf if after is None else after[0], 0, limit + 10, time.time()
        while len(found) < limit:
            entries = self._db.zrevrangebyscore(
                index, top, "-inf", start=skip, num=batch, withscores=True)
            if not entries:
                break
            last = entries[-1][1]
            ties = sum(1 for _, score in entries if score == last)
            skip, top = (skip + ties if last == top else ties), last
            raws = self._db.mget([self._keys.key("job", member.decode()) for member, _ in entries])
            for raw in raws:
                job = load(raw, now)
                if job is not None and wanted(job):
                    found.append(job)
                    if len(found) == limit:
                        break
            if len(entries) < batch:
                break
            batch = min(batch * 2, _BATCH)
        return found

    def wait(self, job_id: str, version: int, timeout: float) -> Job | None:
        with self._listener.waiter(job_id, min(max(timeout, 0.0), 5.0)) as (event, _):
            # Subscribed first, then read: no change slips in between.
            return wait_for_change(self.get, job_id, event, version, timeout, read_first=True)

    @contextlib.contextmanager
    def watching(self, job_id: str) -> t.Iterator[WaitForChange]:
        """Listen for the job's changes from entry on: the ``wait`` yielded
        sleeps until a notice, then reads, one round trip where
        :meth:`wait` takes two. It reads first, as :meth:`wait`, when the
        listener is not subscribed yet (a process's first long-polls, or
        Redis is unreachable): it never blocks waiting for the listener, so
        a long-poll never outlives its ``wait``."""
        with self._listener.waiter(job_id, 0.0) as (event, subscribed):
            yield functools.partial(
                wait_for_change, self.get, job_id, event, read_first=not subscribed)

    @reported
    def purge_expired(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        purged = skipped = 0
        while True:
            ids = [member.decode() for member in self._db.zrangebyscore(
                self._keys.expiry, "-inf", now, start=skipped, num=_BATCH)]
            if not ids:
                return purged
            forgot, live = self._db.transaction(
                functools.partial(self._purge, ids, now),
                *(self._keys.key("job", job_id) for job_id in ids), value_from_callable=True)
            purged, skipped = purged + forgot, skipped + live

    def _purge(self, ids: t.Sequence[str], now: float, pipe: t.Any) -> tuple[int, int]:
        """Forget the expired jobs among ``ids`` (their keys are WATCHed);
        return how many were forgotten, and how many are live (re-created)."""
        raws = pipe.mget([self._keys.key("job", i) for i in ids])
        stale = pipe.hmget(self._keys.final, ids)
        gone = [n for n, raw in enumerate(raws) if load(raw, now) is None]
        if not gone:
            return 0, len(ids)
        pipe.multi()
        pipe.zrem(self._keys.all, *(ids[n] for n in gone))
        for n in gone:
            pipe.delete(self._keys.key("job", ids[n]), self._keys.key("result", ids[n]),
                        self._keys.key("request", ids[n]))
            for index in json.loads(stale[n] or "[]"):
                pipe.zrem(index, ids[n])
        pipe.zrem(self._keys.expiry, *(ids[n] for n in gone))
        pipe.zrem(self._keys.leases, *(ids[n] for n in gone))
        pipe.hdel(self._keys.final, *(ids[n] for n in gone))
        # Executed here for the counts; transaction()'s own execute() then
        # finds nothing left to send. A WatchError still makes it retry.
        return int(pipe.execute()[0]), len(ids) - len(gone)

    def close(self) -> None:
        self._listener.close()
        self.client.close()


__all__ = ["RedisStore"]
