"""Where a :class:`~flask_jobify.stores.redis.RedisStore` keeps a job: the
names of its keys under a prefix, the indexes a record belongs to, and the
record's JSON. Plain values and pure functions: thread-safe.

Keys start with the prefix: ``{prefix}:job:{id}`` (the record as JSON),
``{prefix}:result:{id}`` (a hash: ``status``, ``headers``, binary
``body``), ``{prefix}:request:{id}`` (an active job's saved request,
deleted in the transaction that ends the job), ``{prefix}:leases`` (a
sorted set of the active jobs that have a ``lease_until``, scored by it),
and sorted sets of ids scored by ``created_at``, kept in the record's
transaction: ``{prefix}:jobs``, ``{prefix}:status:{status}``,
``{prefix}:operation:{name}``, ``{prefix}:owner:{owner}``,
``{prefix}:ownerless`` (jobs without an owner, which an anonymous caller
lists). A finished job's keys expire at ``expires_at``;
``{prefix}:expiry`` (a sorted set) and ``{prefix}:final`` (a hash: id to
index keys) let a purge drop the index entries of expired jobs without a
scan. The store publishes changed ids on ``{prefix}:changed``.
"""
from __future__ import annotations

import json
import math
import typing as t

from ...models import Job
from ..base import is_expired


class Keys:
    """The key names under ``prefix`` (see the module)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.all = f"{prefix}:jobs"
        self.expiry = f"{prefix}:expiry"
        self.final = f"{prefix}:final"
        self.leases = f"{prefix}:leases"
        self.ownerless = f"{prefix}:ownerless"
        self.channel = f"{prefix}:changed"

    def key(self, kind: str, name: str) -> str:
        """``{prefix}:{kind}:{name}``: ``key("job", job_id)``."""
        return f"{self.prefix}:{kind}:{name}"

    def indexes(self, job: Job) -> list[str]:
        """The sorted sets that list ``job``, besides ``{prefix}:jobs``."""
        keys = [self.key("status", job.status.value), self.key("operation", job.operation)]
        keys.append(self.ownerless if job.owner is None else self.key("owner", job.owner))
        return keys

    def expire(self, pipe: t.Any, job: Job) -> None:
        """Queue the expiry of a finished job's keys and its purge entries
        on ``pipe`` (a redis-py pipeline, or a
        :class:`~flask_jobify.stores.redis.writes.Commands`)."""
        assert job.expires_at is not None
        at_ms = math.ceil(job.expires_at * 1000)
        pipe.pexpireat(self.key("job", job.id), at_ms)
        pipe.pexpireat(self.key("result", job.id), at_ms)
        pipe.pexpireat(self.key("request", job.id), at_ms)  # kept by a failed job
        pipe.zadd(self.expiry, {job.id: job.expires_at})
        pipe.hset(self.final, job.id, json.dumps(self.indexes(job)))


def lease_score(job: Job) -> float | None:
    """The score of ``job`` in ``{prefix}:leases``; ``None``: not there."""
    return None if job.is_final else job.lease_until


def load(raw: bytes | None, now: float | None = None) -> Job | None:
    """The job in a record as read (``None`` if absent or expired at ``now``)."""
    job = None if raw is None else Job.from_dict(json.loads(raw))
    return None if job is None or is_expired(job, now) else job


__all__ = ["Keys", "lease_score", "load"]
