"""Shared fixtures: ``store`` runs a test against every store backend."""
from __future__ import annotations

import os
import socket
import typing as t
import uuid

import pytest

from flask_jobify.stores import store_from_url
from flask_jobify.stores.base import JobStore

#: On CI a missing service is a failure, never a skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_HOST = os.environ.get("JOBIFY_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("JOBIFY_TEST_REDIS_PORT", "6379"))
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/15"


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_redis() -> None:
    """Skip (or fail on CI) when Redis is not reachable."""
    if service_reachable(REDIS_HOST, REDIS_PORT):
        return
    message = f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}"
    if IN_CI:
        pytest.fail(message + " and CI=true: Redis tests must run on CI.")
    pytest.skip(message + " (start redis-server to run these tests)")


def store_url(backend: str, tmp_path) -> str:
    """A fresh, isolated store URL for ``backend``."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    if backend == "redis":
        require_redis()
        return f"{REDIS_URL}?prefix=jobify-test-{uuid.uuid4().hex}"
    raise AssertionError(backend)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_backend(request) -> str:
    return request.param


def drop_redis_keys(prefix: str) -> None:
    """Delete every key a test wrote under ``prefix``."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def store(store_backend, tmp_path) -> t.Iterator[JobStore]:
    store = store_from_url(store_url(store_backend, tmp_path))
    yield store
    store.close()
    if store_backend == "redis":
        drop_redis_keys(store.prefix)  # type: ignore[attr-defined]
