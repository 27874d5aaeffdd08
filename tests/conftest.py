"""Shared fixtures.

Stores: a test that uses ``store_backend`` (directly, or through ``store``,
``apps``, ``make_app``, ``app`` or ``client``) runs once per store backend,
memory, sqlite and redis; ``@pytest.mark.stores("sqlite", "redis")`` on a
test (or as a module's ``pytestmark``) narrows that list. Redis is the one
at ``JOBIFY_TEST_REDIS_HOST``:``JOBIFY_TEST_REDIS_PORT`` (default
127.0.0.1:6379), database 15, each test under its own key prefix
``jobify-test-<uuid>``, whose keys are deleted at the end of the test.

Apps: ``apps(factory, **config)`` builds an app with ``factory(url,
**config)`` on the test's store URL (``apps.url``), and every app built or
added there is shut down at the end of the test, its store closed and its
Redis keys dropped. ``make_app`` / ``app`` / ``client`` are the core test
app (``tests/core_app.py``) built that way.
"""
from __future__ import annotations

import os
import socket
import typing as t
import urllib.parse
import uuid

import pytest
from flask import Flask

from flask_jobify.stores import store_from_url
from flask_jobify.stores.base import JobStore

#: On CI a missing service is a failure, never a skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_HOST = os.environ.get("JOBIFY_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("JOBIFY_TEST_REDIS_PORT", "6379"))
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/15"
#: How the Redis key prefix of every test's store begins.
TEST_PREFIX = "jobify-test-"
#: Every store backend, in the order the tests run on them.
BACKENDS = ("memory", "sqlite", "redis")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stores(*backends): run the test on these store backends only "
        "(of memory, sqlite, redis) instead of all three")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that depends on ``store_backend`` once per backend of
    its closest ``stores`` mark (all of them without one)."""
    if "store_backend" not in metafunc.fixturenames:
        return
    mark = metafunc.definition.get_closest_marker("stores")
    backends = list(mark.args) if mark is not None else list(BACKENDS)
    unknown = set(backends) - set(BACKENDS)
    if unknown or not backends:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: stores{tuple(backends)}")
    metafunc.parametrize("store_backend", backends, indirect=True)


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
        return f"{REDIS_URL}?prefix={TEST_PREFIX}{uuid.uuid4().hex}"
    raise AssertionError(backend)


def drop_redis_keys(prefix: str) -> None:
    """Delete every key a test wrote under ``prefix``."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """``memory``, ``sqlite`` or ``redis``: see :func:`pytest_generate_tests`."""
    return t.cast(str, request.param)


@pytest.fixture
def store(store_backend, tmp_path) -> t.Iterator[JobStore]:
    store = store_from_url(store_url(store_backend, tmp_path))
    yield store
    store.close()
    if store_backend == "redis":
        drop_redis_keys(store.prefix)  # type: ignore[attr-defined]


class Apps:
    """The apps of one test, on the test's store; stopped at its end.

    ``apps(factory, *args, **config)`` returns ``factory(apps.url, *args,
    **config)`` (an app, or a tuple whose first item is one) and keeps the
    app; ``apps.add(app)`` keeps an app built otherwise. ``stop`` callables
    given to either run before the shutdowns (to release a view a test held).
    """

    def __init__(self, backend: str, tmp_path: t.Any) -> None:
        self.backend = backend
        self._tmp_path = tmp_path
        self._url: str | None = None
        self._prefixes: set[str] = set()
        self.built: list[Flask] = []
        self._stops: list[t.Callable[[], object]] = []

    @property
    def url(self) -> str:
        """The test's store URL: one per test, made on first use (a Redis
        one has the test's own prefix; a subprocess given it shares it)."""
        if self._url is None:
            self._url = store_url(self.backend, self._tmp_path)
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self._url).query)
            self._prefixes.update(query.get("prefix", []))
        return self._url

    def __call__(self, factory: t.Callable[..., t.Any], *args: t.Any,
                 stop: t.Callable[[], object] | None = None, **config: t.Any) -> t.Any:
        built = factory(self.url, *args, **config)
        self.add(built[0] if isinstance(built, tuple) else built, stop=stop)
        return built

    def add(self, app: Flask, *, stop: t.Callable[[], object] | None = None) -> Flask:
        self.built.append(app)
        if stop is not None:
            self._stops.append(stop)
        return app

    def close(self, grace: float = 1.0) -> None:
        """Release held views, shut every app down (``grace`` seconds for
        its jobs), close the stores and drop the test's Redis keys (those
        under a prefix of :func:`store_url`, never another's)."""
        from flask_jobify.stores.redis import RedisStore

        for stop in self._stops:
            stop()
        stores: list[JobStore] = []
        try:
            for app in reversed(self.built):
                state = app.extensions.get("jobify")
                if state is None:  # init_app refused the config
                    continue
                state.shutdown(grace=grace)
                if all(state.store is not seen for seen in stores):
                    stores.append(state.store)
        finally:
            for opened in stores:
                opened.close()
                if isinstance(opened, RedisStore) and opened.prefix.startswith(TEST_PREFIX):
                    self._prefixes.add(opened.prefix)
            for prefix in self._prefixes:
                drop_redis_keys(prefix)


@pytest.fixture
def apps(store_backend: str, tmp_path: t.Any) -> t.Iterator[Apps]:
    """Builds apps on the test's store (see :class:`Apps`), and stops them."""
    made = Apps(store_backend, tmp_path)
    yield made
    made.close()


@pytest.fixture
def make_app(apps: Apps) -> t.Callable[..., Flask]:
    """Builds core apps (``tests/core_app.py``) with extra config."""
    from core_app import create_app

    def make(**config: t.Any) -> Flask:
        app = create_app(apps.url, **config)
        return apps.add(app, stop=app.extensions["gates"].release.set)

    return make


@pytest.fixture
def app(make_app: t.Callable[..., Flask]) -> Flask:
    """The core app with its default config, on the test's store."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> t.Any:
    return app.test_client()
