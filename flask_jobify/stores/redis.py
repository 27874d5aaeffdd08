"""A job store in Redis, shared by every process and machine that reaches it."""
from __future__ import annotations

import collections
import contextlib
import functools
import json
import math
import threading
import time
import typing as t
import weakref
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from ..errors import StoreError, redact_url
from ..models import Job, JobStatus, StoredResponse
from .base import (
    NO_OWNER,
    Cursor,
    JobStore,
    OwnerFilter,
    WaitForChange,
    apply_changes,
    is_expired,
    of_app,
    status_allowed,
)

#: Seconds between two reads of a waited-on job when no notice comes. Only a
#: safety net for a connection that died silently: a notice lost to a
#: reconnection is not missed, as every waiter re-reads after a resubscription.
_SAFETY_POLL = 2.0
#: Seconds the listener waits for a notice before it looks whether its
#: store is still held by anyone (else it ends).
_LISTEN_CHECK = 1.0
#: Most ids read from an index in one round trip while listing or purging.
_BATCH = 1000
#: Records a store remembers having written (see :class:`_Written`).
_REMEMBERED = 4096

#: Insert a record, if its id is free, with its index entries; first drop the
#: entries of an expired predecessor with this id that no purge swept yet.
#: KEYS: job, final, expiry, leases, then the indexes. ARGV: record,
#: created_at, id, lease_until (empty for none).
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local stale = redis.call('HGET', KEYS[2], ARGV[3])
if stale then
  for _, key in ipairs(cjson.decode(stale)) do redis.call('ZREM', key, ARGV[3]) end
  redis.call('HDEL', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3]) end
for i = 5, #KEYS do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3]) end
return 1
"""

#: Keep a request if its job is active (the record is only read: cjson would
#: not give back the record's own JSON). KEYS: job, request. ARGV: request.
_SAVE_REQUEST = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local status = cjson.decode(raw)['status']
if status ~= 'pending' and status ~= 'running' then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""

#: Compare-and-set: run the commands only if the record is still the one the
#: caller read (byte for byte, so a lease renewal counts as a change too).
#: KEYS: job. ARGV: the record read, then each command as its argument
#: count followed by its arguments. One round trip, where WATCH, GET and
#: MULTI/EXEC take three.
_APPLY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


#: Renew leases: for each job, compare-and-set its record as :data:`_APPLY`
#: does and score it in the leases set. KEYS: leases, then the jobs' records.
#: ARGV: until, then per job its id, the record read, the record renewed.
#: Returns a 1 (renewed) or 0 (changed since it was read) per job.
_RENEW = """
local renewed = {}
for i = 2, #KEYS do
  local at = 3 * i - 4
  if redis.call('GET', KEYS[i]) == ARGV[at + 1] then
    redis.call('SET', KEYS[i], ARGV[at + 2])
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[at])
    renewed[i - 1] = 1
  else
    renewed[i - 1] = 0
  end
end
return renewed
"""


class _Commands:
    """Collects the writes of one update, in the shape :data:`_APPLY` runs."""

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


class _Written:
    """The record this store last wrote for each of the jobs it wrote last
    (at most :data:`_REMEMBERED`, least recently written out). An update
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
            if len(self._records) > _REMEMBERED:
                self._records.popitem(last=False)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._records.pop(job_id, None)


_F = t.TypeVar("_F", bound=t.Callable[..., t.Any])


def _reported(method: _F) -> _F:
    """Raise :class:`StoreError` for a Redis failure, as the other stores do."""

    @functools.wraps(method)
    def wrapper(self: RedisStore, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as exc:
            raise StoreError(f"Redis job store {self.prefix!r}: {exc}") from exc

    return t.cast(_F, wrapper)


class RedisStore(JobStore):
    """Jobs in Redis, shared by every thread, process and machine that reaches it.

    Safe to share between threads: redis-py pools its connections, and a
    lock guards the waiters. Safe to share between processes and machines:
    :meth:`update` reads the record, then writes it, its index entries and
    its notice with one Lua compare-and-set that applies only if the record
    is still the one read (retried otherwise), so ``only_if`` has one winner
    and no update is lost, in two round trips; in one when the record is
    still the one this store last wrote, which it tries first (a worker's
    progress and end after its claim); :meth:`delete` is a
    ``WATCH``/``MULTI`` transaction and :meth:`create` one Lua script.
    Standalone Redis or Sentinel: a job's keys span Redis Cluster slots.

    Keys start with ``prefix``: ``{prefix}:job:{id}`` (the record as JSON),
    ``{prefix}:result:{id}`` (a hash: ``status``, ``headers``, binary
    ``body``), ``{prefix}:request:{id}`` (an active job's saved request,
    deleted in the transaction that ends the job), ``{prefix}:leases`` (a
    sorted set of the active jobs that have a ``lease_until``, scored by it,
    which :meth:`expired_leases` walks), and sorted sets of ids scored by
    ``created_at``, kept in the record's transaction: ``{prefix}:jobs``,
    ``{prefix}:status:{status}``, ``{prefix}:operation:{name}``,
    ``{prefix}:owner:{owner}``, ``{prefix}:ownerless`` (jobs without an
    owner, which an anonymous caller lists). A filtered
    page walks its own index (the smallest, for several filters), so it
    costs the same at 100,000 jobs as at 10, where filtering ``jobs`` here
    would read every job to find a rare one. A finished job's keys expire
    at ``expires_at``; ``{prefix}:expiry`` (a sorted set) and
    ``{prefix}:final`` (a hash: id to index keys) let :meth:`purge_expired`
    drop the index entries of expired jobs without a scan.

    :meth:`renew_leases` compare-and-sets records as :meth:`update` does,
    a thousand per script, and publishes nothing. :meth:`update` and
    :meth:`delete` publish the job id on ``{prefix}:changed``. One listener
    thread per store, started by the first :meth:`wait` and stopped by
    :meth:`close`, holds the subscription and wakes that job's waiters: any
    number of waiters share one connection and no wait pays a subscribe
    round trip. The price: every listening
    process receives the id of every change under the prefix. The listener
    holds its store weakly: a store nobody holds any more is collected, and
    its listener ends within :data:`_LISTEN_CHECK` seconds.

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
        self._all = f"{prefix}:jobs"
        self._expiry = f"{prefix}:expiry"
        self._final = f"{prefix}:final"
        self._leases = f"{prefix}:leases"
        self._ownerless = f"{prefix}:ownerless"
        self._channel = f"{prefix}:changed"
        self._create = client.register_script(_CREATE)
        self._save_request = client.register_script(_SAVE_REQUEST)
        self._apply = client.register_script(_APPLY)
        self._written = _Written()
        self._renew = client.register_script(_RENEW)
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._listener: threading.Thread | None = None
        self._ready = threading.Event()  # the listener is subscribed
        self._closing = threading.Event()

    @classmethod
    def from_url(cls, url: str, *, prefix: str | None = None, **kwargs: t.Any) -> RedisStore:
        """Build a store from ``redis://host:port/db``, ``rediss://`` or
        ``unix:///path``.

        The ``prefix`` query parameter starts every key, else ``prefix``,
        else ``jobify``; other query parameters and ``kwargs`` go to
        :meth:`redis.Redis.from_url`, except ``decode_responses``, always off.
        ``socket_connect_timeout`` defaults to 2 seconds (redis-py's is
        none: an unreachable host would hold a request for minutes).
        """
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = dict(query).get("prefix", prefix or "jobify")
        rest = [(k, v) for k, v in query if k not in ("prefix", "decode_responses")]
        kwargs["decode_responses"] = False
        if "socket_connect_timeout" not in dict(query):
            kwargs.setdefault("socket_connect_timeout", 2.0)
        try:
            own_url = urlunsplit(parts._replace(query=urlencode(rest)))
            client = redis.Redis.from_url(own_url, **kwargs)
        except ValueError as exc:
            raise StoreError(f"Not a Redis URL: {redact_url(url)!r} ({exc})") from exc
        return cls(client, prefix=prefix)

    # -- keys --------------------------------------------------------------
    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}:{kind}:{name}"

    def _indexes(self, job: Job) -> list[str]:
        """The sorted sets that list ``job``, besides ``{prefix}:jobs``."""
        keys = [self._key("status", job.status.value), self._key("operation", job.operation)]
        keys.append(self._ownerless if job.owner is None else self._key("owner", job.owner))
        return keys

    @staticmethod
    def _lease(job: Job) -> float | None:
        """The score of ``job`` in ``{prefix}:leases``; ``None``: not there."""
        return None if job.is_final else job.lease_until

    @staticmethod
    def _load(raw: bytes | None, now: float | None = None) -> Job | None:
        job = None if raw is None else Job.from_dict(json.loads(raw))
        return None if job is None or is_expired(job, now) else job

    def _expire(self, pipe: t.Any, job: Job) -> None:
        """Queue the expiry of a finished job's keys and its purge entries."""
        assert job.expires_at is not None
        at_ms = math.ceil(job.expires_at * 1000)
        pipe.pexpireat(self._key("job", job.id), at_ms)
        pipe.pexpireat(self._key("result", job.id), at_ms)
        pipe.pexpireat(self._key("request", job.id), at_ms)  # kept by a failed job
        pipe.zadd(self._expiry, {job.id: job.expires_at})
        pipe.hset(self._final, job.id, json.dumps(self._indexes(job)))

    # -- the contract ------------------------------------------------------
    @_reported
    def create(self, job: Job) -> None:
        keys = [self._key("job", job.id), self._final, self._expiry, self._leases, self._all,
                *self._indexes(job)]
        lease = self._lease(job)
        record = json.dumps(job.to_dict())
        args = [record, repr(float(job.created_at)), job.id,
                "" if lease is None else repr(float(lease))]
        if not self._create(keys=keys, args=args):
            raise StoreError(f"A job with id {job.id!r} exists already.")
        self._written.put(job.id, record)
        if job.expires_at is not None:  # created finished: unusual, not atomic
            pipe = self._db.pipeline()
            self._expire(pipe, job)
            pipe.execute()

    @_reported
    def get(self, job_id: str) -> Job | None:
        return self._load(self._db.get(self._key("job", job_id)))

    @_reported
    def update(
        self,
        job_id: str,
        changes: t.Mapping[str, t.Any],
        *,
        only_if: t.Iterable[JobStatus] | None = None,
        result: StoredResponse | None = None,
        expect: t.Mapping[str, t.Any] | None = None,
    ) -> Job | None:
        key = self._key("job", job_id)
        raw = self._written.get(job_id)  # what we wrote last: it may still be current
        read = raw is None
        while True:  # until the record did not change between our read and write
            if read:
                raw = self._db.get(key)
            job = self._load(raw)
            if job is None or not status_allowed(job, only_if, expect):
                if not read:  # decided on what we wrote: the record may have moved on
                    read = True
                    continue
                return None
            before, created_at, leased, ended = (
                self._indexes(job), job.created_at, self._lease(job), job.is_final)
            apply_changes(job, changes)
            after = self._indexes(job)
            moved = job.created_at != created_at
            pipe = _Commands()
            record = json.dumps(job.to_dict())
            pipe.set(key, record)
            for index in set(before) - set(after):
                pipe.zrem(index, job_id)
            for index in [self._all, *after] if moved else set(after) - set(before):
                pipe.zadd(index, {job_id: job.created_at})
            if result is not None:
                pipe.hset(self._key("result", job_id), mapping={
                    "status": result.status, "headers": result.head_json(),
                    "body": result.body})
            lease = self._lease(job)
            if lease is not None and lease != leased:
                pipe.zadd(self._leases, {job_id: lease})
            elif lease is None and leased is not None:
                pipe.zrem(self._leases, job_id)
            if job.is_final and not ended and self.forgets_request(job):
                pipe.delete(self._key("request", job_id))
            if job.expires_at is not None:
                self._expire(pipe, job)
            pipe.publish(self._channel, job_id)  # in the script: sent once applied
            if self._apply(keys=[key], args=[t.cast(bytes, raw), *pipe.args]):
                self._written.put(job_id, record)
                return job
            read = True

    @_reported
    def renew_leases(self, leases: t.Mapping[str, int], until: float) -> set[str]:
        """Two round trips per thousand jobs: ``MGET`` the records, then one
        Lua script that compare-and-sets each (a record changed in between
        is read and tried again)."""
        until, renewed, left = float(until), set(), dict(leases)
        while left:
            ids = list(left)[:_BATCH]
            keys = [self._key("job", job_id) for job_id in ids]
            script_keys, args = [self._leases], [repr(until)]
            for job_id, key, raw in zip(ids, keys, self._db.mget(keys)):
                attempt = left.pop(job_id)
                job = self._load(raw)
                if job is None or job.is_final or job.attempts != attempt:
                    continue
                job.lease_until = until
                script_keys.append(key)
                args += [job_id, raw, json.dumps(job.to_dict())]  # active: no expiry to keep
            if len(script_keys) == 1:
                continue
            done = self._renew(keys=script_keys, args=args)
            for i, ok in enumerate(done):
                job_id = args[1 + 3 * i]
                if ok:
                    renewed.add(job_id)
                    if self._written.get(job_id) is not None:  # keep it current
                        self._written.put(job_id, args[3 + 3 * i])
                else:  # changed since read: read it again
                    left[job_id] = leases[job_id]
        return renewed

    @_reported
    def expired_leases(
        self, now: float | None = None, limit: int = 100, *, app: str | None = None
    ) -> list[Job]:
        """Walks ``{prefix}:leases`` oldest first, past other apps' jobs."""
        now = time.time() if now is None else now
        found: list[Job] = []
        start = 0
        while len(found) < limit:
            ids = self._db.zrangebyscore(self._leases, "-inf", now, start=start, num=limit)
            if not ids:
                break
            start += len(ids)
            jobs = (self._load(raw) for raw in self._db.mget(
                [self._key("job", member.decode()) for member in ids]))
            # A job that ended between the two reads has left the set since.
            found += [job for job in jobs
                      if job is not None and not job.is_final and of_app(job, app)]
            if len(ids) < limit:
                break
        return found[:limit]

    @_reported
    def save_request(self, job_id: str, data: bytes) -> None:
        self._save_request(keys=[self._key("job", job_id), self._key("request", job_id)],
                           args=[bytes(data)])

    @_reported
    def load_request(self, job_id: str) -> bytes | None:
        raw, data = self._db.pipeline(transaction=False).get(self._key("job", job_id)).get(
            self._key("request", job_id)).execute()
        if data is None or self._load(raw) is None:
            return None
        return bytes(data)

    @_reported
    def get_result(self, job_id: str) -> StoredResponse | None:
        return self.get_with_result(job_id)[1]

    @_reported
    def get_with_result(self, job_id: str) -> tuple[Job | None, StoredResponse | None]:
        """One round trip: ``GET`` and ``HGETALL`` in ``MULTI``/``EXEC``."""
        raw, fields = self._db.pipeline(transaction=True).get(self._key("job", job_id)).hgetall(
            self._key("result", job_id)).execute()
        job = self._load(raw)
        if job is None or not fields:
            return job, None
        return job, StoredResponse.from_parts(
            int(fields[b"status"]), fields[b"headers"], fields[b"body"])

    @_reported
    def delete(self, job_id: str) -> bool:
        key = self._key("job", job_id)

        def attempt(pipe: t.Any) -> bool:
            raw = pipe.get(key)
            if raw is None:  # unknown, or expired by Redis: purge_expired() sweeps it
                return False
            job = Job.from_dict(json.loads(raw))
            pipe.multi()
            pipe.delete(key, self._key("result", job_id), self._key("request", job_id))
            for index in (self._all, *self._indexes(job), self._expiry, self._leases):
                pipe.zrem(index, job_id)
            pipe.hdel(self._final, job_id)
            pipe.publish(self._channel, job_id)
            return True

        self._written.forget(job_id)
        return bool(self._db.transaction(attempt, key, value_from_callable=True))

    @_reported
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
        indexes = [self._key(kind, value) for kind, value in filters.items() if value is not None]
        if owner is NO_OWNER:
            indexes.append(self._ownerless)
        index = indexes[0] if indexes else self._all
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
            raws = self._db.mget([self._key("job", member.decode()) for member, _ in entries])
            for raw in raws:
                job = self._load(raw, now)
                if job is not None and wanted(job):
                    found.append(job)
                    if len(found) == limit:
                        break
            if len(entries) < batch:
                break
            batch = min(batch * 2, _BATCH)
        return found

    def wait(self, job_id: str, version: int, timeout: float) -> Job | None:
        with self._waiter(job_id, min(max(timeout, 0.0), 5.0)) as (event, _):
            # Subscribed first, then read: no change slips in between.
            return self._wait_on(job_id, event, version, timeout, read_first=True)

    @contextlib.contextmanager
    def watching(self, job_id: str) -> t.Iterator[WaitForChange]:
        """Listen for the job's changes from entry on: the ``wait`` yielded
        sleeps until a notice, then reads, one round trip where
        :meth:`wait` takes two. It reads first, as :meth:`wait`, when the
        listener is not subscribed yet (a process's first long-polls, or
        Redis is unreachable): it never blocks waiting for the listener, so
        a long-poll never outlives its ``wait``."""
        with self._waiter(job_id, 0.0) as (event, subscribed):
            yield functools.partial(self._wait_on, job_id, event, read_first=not subscribed)

    @contextlib.contextmanager
    def _waiter(self, job_id: str, patience: float) -> t.Iterator[tuple[threading.Event, bool]]:
        """Register an event that notices of ``job_id`` set; yield it and
        whether the listener is subscribed (waited for up to ``patience``)."""
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(event)
            if self._listener is None or not self._listener.is_alive():
                self._ready.clear()
                self._listener = threading.Thread(
                    target=_listen, args=(weakref.ref(self), self.client, self._channel,
                                          self._closing, self._ready),
                    name=f"jobify-redis-{self.prefix}", daemon=True)
                self._listener.start()
        try:
            yield event, self._ready.wait(patience)
        finally:
            with self._lock:
                self._waiters[job_id].discard(event)
                if not self._waiters[job_id]:
                    del self._waiters[job_id]

    def _wait_on(
        self, job_id: str, event: threading.Event, version: int, timeout: float,
        *, read_first: bool,
    ) -> Job | None:
        """Wait until the job's version differs from ``version``: read, then
        sleep until a notice (or :data:`_SAFETY_POLL`), and again. Without
        ``read_first``, sleep first: the caller read the job after ``event``
        was registered and the listener subscribed."""
        deadline = time.monotonic() + timeout
        read = read_first or timeout <= 0
        job: Job | None = None
        while True:
            if read:
                job = self.get(job_id)
                if job is None or job.version != version:
                    return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return job if read else self.get(job_id)
            event.wait(min(remaining, _SAFETY_POLL))
            event.clear()  # before the next read, so no later notice is lost
            read = True

    @_reported
    def purge_expired(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        purged = skipped = 0
        while True:
            ids = [member.decode() for member in self._db.zrangebyscore(
                self._expiry, "-inf", now, start=skipped, num=_BATCH)]
            if not ids:
                return purged
            forgot, live = self._db.transaction(
                functools.partial(self._purge, ids, now),
                *(self._key("job", job_id) for job_id in ids), value_from_callable=True)
            purged, skipped = purged + forgot, skipped + live

    def _purge(self, ids: t.Sequence[str], now: float, pipe: t.Any) -> tuple[int, int]:
        """Forget the expired jobs among ``ids`` (their keys are WATCHed);
        return how many were forgotten, and how many are live (re-created)."""
        raws, stale = pipe.mget([self._key("job", i) for i in ids]), pipe.hmget(self._final, ids)
        gone = [n for n, raw in enumerate(raws) if self._load(raw, now) is None]
        if not gone:
            return 0, len(ids)
        pipe.multi()
        pipe.zrem(self._all, *(ids[n] for n in gone))
        for n in gone:
            pipe.delete(self._key("job", ids[n]), self._key("result", ids[n]),
                        self._key("request", ids[n]))
            for index in json.loads(stale[n] or "[]"):
                pipe.zrem(index, ids[n])
        pipe.zrem(self._expiry, *(ids[n] for n in gone))
        pipe.zrem(self._leases, *(ids[n] for n in gone))
        pipe.hdel(self._final, *(ids[n] for n in gone))
        # Executed here for the counts; transaction()'s own execute() then
        # finds nothing left to send. A WatchError still makes it retry.
        return int(pipe.execute()[0]), len(ids) - len(gone)

    def close(self) -> None:
        self._closing.set()
        listener = self._listener
        if listener is not None and listener.is_alive():
            with contextlib.suppress(redis.RedisError):
                self.client.publish(self._channel, "")  # wakes the listener to stop
            listener.join(1.0)
        self.client.close()

    # -- notifications -----------------------------------------------------
    def _wake(self, job_id: str | None) -> None:
        """Wake the waiters of ``job_id``, or every waiter for ``None``."""
        with self._lock:
            if job_id is None:
                events = [event for events in self._waiters.values() for event in events]
            else:
                events = list(self._waiters.get(job_id, ()))
        for event in events:
            event.set()


def _listen(
    ref: weakref.ref[RedisStore], client: redis.Redis, channel: str,
    closing: threading.Event, ready: threading.Event,
) -> None:
    """The listener of a store: wake the waiters of each changed job, until
    the store is closed or collected. Holds the store only to wake them."""
    while not closing.is_set():
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]  # unannotated in redis-py
        try:
            pubsub.subscribe(channel)
            while not closing.is_set():
                message = pubsub.get_message(timeout=_LISTEN_CHECK)
                store = ref()
                if store is None:
                    return
                if message is None:
                    continue
                if message["type"] == "subscribe":  # at first, or after a reconnection
                    ready.set()
                    store._wake(None)
                elif message["type"] == "message":
                    store._wake(message["data"].decode())
                del store
        except Exception:  # noqa: BLE001 - the connection dropped: read again, retry
            ready.clear()
            store = ref()
            if store is None:
                return
            store._wake(None)
            del store
            closing.wait(0.5)
        finally:
            pubsub.close()
