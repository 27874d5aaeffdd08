"""The backbone test: a job equals the synchronous call.

Every entry of :data:`SHAPES` is one request to a view of
``tests/equivalence_app.py``. It is sent synchronously, then again as a job
(``X-Job-Flag: ON``); the job must end with the expected final status, and
``GET /jobs/<id>/result`` must give back what the synchronous call gave:
the same status, the same headers (as multisets of (lower-cased name,
value), minus :data:`ALWAYS_MAY_DIFFER` and the shape's own ``may_differ``)
and the same body bytes.

It runs on the memory, SQLite (a file) and Redis stores with the thread
executor, and a subset (``celery=True``) on a real Celery worker (solo
pool) with the Redis store. Redis and Celery tests skip when Redis is not
reachable, and fail instead under ``CI=true``.

A failing test lists *every* difference it found (final status, error
type, progress, status, headers, body), not only the first.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import time
import typing as t
import uuid

import pytest
import requests
from conftest import REDIS_HOST, REDIS_PORT, REDIS_URL, drop_redis_keys, require_redis, store_url
from equivalence_app import ALICE, FILE_ETAG, Note, create_app, create_celery_pair, db
from flask import Flask
from servers import serve_app, stop_process_group

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FLAG = {"X-Job-Flag": "ON"}
PREFER = {"Prefer": "respond-async"}
FINAL = ("succeeded", "failed", "cancelled", "timed_out")

#: Response headers that may always differ between the synchronous answer
#: and the replay, for every shape: they describe the moment (``Date``:
#: werkzeug's conditional responses add it, and real servers do) or the
#: server that sent the answer (``Server``), not the view's response.
#: Nothing else may differ unless a shape says so in ``may_differ``, with a
#: comment saying why. (Session cookies are not an exception: their signed
#: value carries a one-second timestamp, so ``Set-Cookie: session=...`` is
#: compared on its decoded content and attributes; see :func:`_normalise`.)
#: Headers made from the clock when the response is sent (``Expires`` is
#: ``Date`` plus ``max_age``, as ``send_file`` sets it): a second apart
#: between the synchronous call and the job under load.
ALWAYS_MAY_DIFFER = frozenset({"date", "server", "expires"})

#: Seconds a job of these trivial views may take to reach a final status.
THREAD_WITHIN = 5.0
CELERY_WITHIN = 10.0


# -- the corpus ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Shape:
    """One request, and what its job must end as."""

    name: str
    method: str
    path: str
    #: Flask test client keyword arguments: ``json``, ``data``, ``headers``,
    #: ``query_string``. ``headers`` are sent with the submission and, for
    #: ``Authorization`` (the job's owner), with every jobs API call.
    request: t.Mapping[str, t.Any] = dataclasses.field(default_factory=dict)
    #: The job's expected final status.
    final: str = "succeeded"
    #: Headers (lower-cased) this shape's replay may differ on, besides
    #: :data:`ALWAYS_MAY_DIFFER`. Every use has a comment saying why.
    may_differ: frozenset[str] = frozenset()
    #: The job record's expected ``error.type`` (``None``: no check).
    error_type: str | None = None
    #: Uploaded files: field name -> (content, file name, mimetype).
    files: t.Mapping[str, tuple[bytes, str, str]] = dataclasses.field(default_factory=dict)
    #: A body sent without ``Content-Length`` (``Transfer-Encoding: chunked``).
    chunked: bytes | None = None
    #: ``client`` (Flask's test client) or ``server`` (a real HTTP server,
    #: werkzeug's, in a thread, for what the test client cannot show).
    transport: str = "client"
    #: ``response``: the synchronous call answers normally; ``truncated``:
    #: its streamed body raises ``sync_error`` after the status was sent.
    sync: str = "response"
    sync_error: str | None = None
    #: ``(method, path)``: compare the job's result with the synchronous
    #: answer to this request instead (when the shape's own cannot be replayed).
    reference: tuple[str, str] | None = None
    #: ``replay``: ``/result`` replays a response; ``no_result``: ``409 no_result``.
    result: str = "replay"
    #: The job record's expected ``progress`` once it ended.
    progress: t.Mapping[str, t.Any] | None = None
    #: ``main`` (with an owner loader) or ``noowner`` (see equivalence_app).
    app: str = "main"
    #: ``replayed``: Set-Cookie is compared like any header; ``dropped``:
    #: the replay must carry none (the job has no owner).
    cookies: str = "replayed"
    #: Extra checks: ``check(app)`` returns a list of problems.
    check: t.Callable[[Flask], list[str]] | None = None
    #: The test client raises this exception synchronously (checked too).
    client_raises: str | None = None
    #: Also run on the Celery worker.
    celery: bool = False

    def __str__(self) -> str:
        return self.name


def _note(key: str, text: str | None) -> t.Callable[[Flask], list[str]]:
    """Check that note ``key`` is in the database with ``text`` (or absent)."""
    def check(app: Flask) -> list[str]:
        with app.app_context():
            note = db.session.get(Note, key)
            found = None if note is None else note.text
            db.session.remove()
        return [] if found == text else [f"database: note {key!r} is {found!r}, not {text!r}"]
    return check


UPLOAD = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20 + "fin é".encode()
CHUNKED = b"".join(f"{n:05d},".encode() for n in range(3000))  # ~18 KB
JSON_HEADERS = {"X-Custom": "custom-value", "Accept": "application/json"}
PROXY_HEADERS = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
                 "X-Forwarded-Host": "shop.example", "X-Forwarded-Prefix": "/store"}

SHAPES: list[Shape] = [
    # -- bodies
    Shape("json", "POST", "/json?q=1", {"json": {"a": [1, 2, {"b": None}], "é": "ü"},
                                        "headers": JSON_HEADERS}, celery=True),
    Shape("json_list", "GET", "/json-list"),
    Shape("queued_json", "POST", "/queued?q=2", {"json": {"n": [1, 2]}, "headers": JSON_HEADERS}),
    Shape("text", "GET", "/text", celery=True),
    Shape("unicode_text", "GET", "/unicode-text"),
    Shape("binary", "GET", "/binary", celery=True),
    Shape("large_body_1mb", "GET", "/large", celery=True),
    Shape("empty_204", "DELETE", "/empty"),
    Shape("form_urlencoded", "POST", "/form", {"data": {"a": "1", "b": ["x", "y é"]}}),
    # -- files
    Shape("send_file_path", "GET", "/file", celery=True),
    Shape("send_file_bytesio", "GET", "/file-bytes"),
    Shape("send_file_if_none_match_304", "GET", "/file",
          {"headers": {"If-None-Match": f'"{FILE_ETAG}"'}}),
    Shape("send_file_range_206", "GET", "/file", {"headers": {"Range": "bytes=0-9"}},
          celery=True),
    # -- streams
    Shape("stream_ok", "GET", "/stream", celery=True),
    # Over a real server the synchronous stream is sent chunked.
    Shape("stream_ok_real_server", "GET", "/stream", transport="server"),
    # The synchronous call is a 200 whose body breaks after one chunk: a
    # truncated answer that cannot be replayed. The job must fail with the
    # exception's class, and its result must be what the app renders for
    # an unhandled RuntimeError in a view: the synchronous answer of
    # GET /crash (the app's 500 handler).
    Shape("stream_raises_runtime_error", "GET", "/stream-fail", final="failed",
          error_type="RuntimeError", sync="truncated", sync_error="RuntimeError",
          reference=("GET", "/crash"), celery=True),
    # JobCancelled while streaming: the job ends cancelled, with no result.
    Shape("stream_raises_job_cancelled", "GET", "/stream-cancel", final="cancelled",
          error_type="cancelled", sync="truncated", sync_error="JobCancelled",
          result="no_result"),
    Shape("stream_with_context", "GET", "/stream-context?word=alpha&word=beta"),
    # -- redirects and errors
    Shape("redirect_302", "GET", "/redirect/302"),
    Shape("redirect_303", "POST", "/redirect/303", {"data": {"x": "1"}}, celery=True),
    Shape("redirect_307", "POST", "/redirect/307", {"json": {"keep": "body"}}),
    Shape("abort_400", "GET", "/abort/400", final="failed", error_type="http_error"),
    Shape("abort_404", "GET", "/abort/404", final="failed", error_type="http_error",
          celery=True),
    Shape("abort_500", "GET", "/abort/500", final="failed", error_type="http_error"),
    Shape("abort_503_retry_after", "GET", "/abort/503", final="failed",
          error_type="http_error"),
    Shape("app_error_handler", "GET", "/out-of-stock", final="failed",
          error_type="http_error"),
    Shape("blueprint_error_handler", "GET", "/api/v1/widgets/7/broken", final="failed",
          error_type="http_error"),
    Shape("unhandled_exception", "GET", "/crash", final="failed", error_type="RuntimeError",
          celery=True),
    # -- hooks
    Shape("after_request_adds_header", "GET", "/hooks/after-header"),
    # The hook raises on the view's response (X-Poison), not on the 202 nor
    # on the 500 that follows: synchronously the app's 500 (its handler,
    # through every after_request hook). The job's result is that 500.
    Shape("after_request_raises", "GET", "/hooks/after-raise", final="failed",
          error_type="AfterHookError", celery=True),
    # The test client re-raises an exception from teardown_request (it
    # escapes wsgi_app after the response was made); a real server answers
    # its own bare 500 instead, which is what the synchronous call here
    # gets (werkzeug's server) and what the job must keep.
    Shape("teardown_request_raises", "GET", "/hooks/teardown", final="failed",
          error_type="TeardownError", transport="server", client_raises="TeardownError"),
    Shape("before_request_sets_g", "GET", "/g"),
    # -- session and cookies (owner alice: Set-Cookie is replayed)
    Shape("session_set", "POST", "/session", {"json": {"items": ["apple", "pear"]},
                                              "headers": ALICE}, celery=True),
    Shape("make_response_set_cookie", "GET", "/cookies", {"headers": ALICE}),
    # No owner loader: the stored Set-Cookie headers are not replayed (and
    # the fetching request's own session, saved on every request by this
    # app, must not add one): the documented difference.
    Shape("set_cookie_without_owner", "GET", "/cookies", app="noowner", cookies="dropped",
          may_differ=frozenset({"set-cookie"})),
    # -- methods
    Shape("head_on_get_view", "HEAD", "/unicode-text"),
    Shape("options_explicit", "OPTIONS", "/options"),
    Shape("async_view", "GET", "/async?n=4", celery=True),
    Shape("methodview_get", "GET", "/items/7"),
    Shape("methodview_post", "POST", "/items/7", {"json": {"name": "lamp"}}),
    Shape("methodview_put", "PUT", "/items/7", {"json": {"name": "desk"}}, celery=True),
    Shape("methodview_delete", "DELETE", "/items/7"),
    Shape("blueprint_url_prefix", "GET", "/api/v1/widgets/42"),
    # -- requests
    Shape("proxy_fix_forwarded", "GET", "/whoami?x=1", {"headers": PROXY_HEADERS,
          "environ_base": {"REMOTE_ADDR": "10.0.0.2"}}, celery=True),
    Shape("upload_multipart", "POST", "/upload", {"data": {"field": "valeur é"}},
          files={"file": (UPLOAD, "photo été.png", "image/png")}, celery=True),
    Shape("upload_chunked_no_length", "POST", "/upload-raw",
          {"headers": {"Content-Type": "application/octet-stream"}}, chunked=CHUNKED,
          celery=True),
    Shape("upload_chunked_real_server", "POST", "/upload-raw",
          {"headers": {"Content-Type": "application/octet-stream"}}, chunked=CHUNKED,
          transport="server"),
    Shape("query_repeated_keys", "GET", "/query?tag=a&tag=b&tag=a&empty=&x=1&x=%C3%A9"),
    Shape("non_ascii_path", "GET", "/unicode/café-日本", celery=True),
    # -- extensions
    Shape("flask_login_current_user", "GET", "/me", {"headers": ALICE}),
    Shape("sqlalchemy_commit", "POST", "/notes/kept", {"json": {"text": "hello"}},
          check=_note("kept", "hello"), celery=True),
    Shape("sqlalchemy_rollback_on_error", "POST", "/notes/dropped/reject", final="failed",
          error_type="NoteRejected", check=_note("dropped", None)),
    Shape("copy_current_request_context_thread", "GET", "/thread?n=5",
          progress={"percent": 50.0, "message": "from thread"}, celery=True),
]
BY_NAME = {shape.name: shape for shape in SHAPES}
CELERY_SHAPES = [shape for shape in SHAPES if shape.celery]
PREFER_SHAPES = [BY_NAME[name] for name in (
    "json", "send_file_path", "abort_404", "session_set", "upload_multipart",
    "stream_raises_runtime_error")]


# -- environments ---------------------------------------------------------------
@dataclasses.dataclass
class Env:
    """One store and executor: the apps under test and their servers."""

    name: str
    apps: dict[str, Flask]
    urls: dict[str, str]
    within: float
    #: The Celery worker's log: every job must show up in it (it ran there).
    worker_log: t.Any = None


@contextlib.contextmanager
def _apps(env: Env, prefixes: list[str]) -> t.Iterator[Env]:
    try:
        yield env
    finally:
        for app in env.apps.values():
            app.extensions["jobify"].shutdown(grace=1)
        for prefix in prefixes:
            drop_redis_keys(prefix)


@pytest.fixture(scope="module", params=["memory", "sqlite", "redis"])
def thread_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               ) -> t.Iterator[Env]:
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"equivalence-{backend}")
    apps: dict[str, Flask] = {}
    prefixes: list[str] = []
    for variant in ("main", "noowner"):
        (tmp / variant).mkdir()
        url = store_url(backend, tmp / variant)  # skips (or fails on CI) without Redis
        if backend == "redis":
            prefixes.append(url.rsplit("prefix=", 1)[1])
        apps[variant] = create_app(store=url, data_dir=str(tmp / "data"),
                                   db_path=str(tmp / variant / "app.db"), variant=variant)
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(_apps(Env(backend, apps, {}, THREAD_WITHIN), prefixes))
        env.urls["main"] = stack.enter_context(serve_app(apps["main"]))
        yield env


@pytest.fixture(scope="module")
def celery_env(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Env]:
    """The main app on the Celery executor (Redis store), and one real
    Celery worker (solo pool) that imports the same app."""
    require_redis()
    tmp = tmp_path_factory.mktemp("equivalence-celery")
    prefix = f"jobify-equivalence-{uuid.uuid4().hex[:12]}"
    settings = {
        "EQUIV_STORE": f"{REDIS_URL}?prefix={prefix}",
        "EQUIV_BROKER": f"redis://{REDIS_HOST}:{REDIS_PORT}/14",
        "EQUIV_QUEUE": prefix,
        "EQUIV_DATA_DIR": str(tmp / "data"),
        "EQUIV_DB_PATH": str(tmp / "app.db"),
    }
    app, celery_app = create_celery_pair(
        store=settings["EQUIV_STORE"], broker=settings["EQUIV_BROKER"],
        queue=settings["EQUIV_QUEUE"], data_dir=settings["EQUIV_DATA_DIR"],
        db_path=settings["EQUIV_DB_PATH"])
    node = f"{prefix}@localhost"
    log_path = tmp / "worker.log"
    env = {**os.environ, **settings, "PYTHONPATH": os.pathsep.join(
        p for p in (HERE, ROOT, os.environ.get("PYTHONPATH")) if p)}
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "equivalence_app:celery_app", "worker",
             "--pool=solo", "--loglevel=INFO", "--hostname", node, "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-Q", prefix],
            cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            text = log_path.read_text(errors="replace")
            if worker.poll() is not None:
                raise RuntimeError(f"the Celery worker exited early:\n{text}")
            if " ready." in text and any(
                    node in reply for reply in
                    celery_app.control.ping(destination=[node], timeout=1.0) or []):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start in time:\n{text}")
            time.sleep(0.2)
        with _apps(Env("celery", {"main": app}, {}, CELERY_WITHIN, log_path), [prefix]) as env_:
            yield env_
    finally:
        stop_process_group(worker)
        import redis

        broker = redis.Redis.from_url(settings["EQUIV_BROKER"])
        keys = list(broker.scan_iter(f"*{prefix}*", count=1000))
        if keys:
            broker.delete(*keys)
        broker.close()
        celery_app.close()


# -- transports -------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Transport:
    """Sends requests to an app, in Flask test client terms."""

    def __init__(self, env: Env, shape: Shape) -> None:
        self.app = env.apps[shape.app]
        self.url = env.urls.get(shape.app) if shape.transport == "server" else None
        if shape.transport == "server" and self.url is None:
            raise AssertionError(f"no server for {shape.app} in {env.name}")

    def open(self, method: str, path: str, **kwargs: t.Any) -> t.Any:
        """A test client response (client transport only)."""
        return self.app.test_client(use_cookies=False).open(path, method=method, **kwargs)

    def send(self, method: str, path: str, **kwargs: t.Any) -> Answer:
        if self.url is None:
            response = self.open(method, path, **kwargs)
            try:
                return Answer(response.status_code, list(response.headers.items()),
                              response.get_data())
            finally:
                response.close()
        return self._send_http(method, path, **kwargs)

    def _send_http(self, method: str, path: str, *, headers: t.Any = None,
                   json: t.Any = None, data: t.Any = None, input_stream: t.Any = None,
                   environ_overrides: t.Any = None, **rest: t.Any) -> Answer:
        assert not rest, rest
        if input_stream is not None:  # a generator body: requests sends it chunked
            body = input_stream.read()
            data = iter([body[: len(body) // 3], body[len(body) // 3:]])
        response = requests.request(method, self.url + path, headers=headers, json=json,
                                    data=data, timeout=30, allow_redirects=False)
        return Answer(response.status_code, list(response.raw.headers.items()),
                      response.content)


def request_kwargs(shape: Shape, extra_headers: t.Mapping[str, str] = {}) -> dict[str, t.Any]:
    """Fresh test client keyword arguments for one sending of ``shape``."""
    kwargs = dict(shape.request)
    headers = {**kwargs.pop("headers", {}), **extra_headers}
    if shape.files:
        data = dict(kwargs.pop("data", {}))
        for name, (content, filename, mimetype) in shape.files.items():
            data[name] = (io.BytesIO(content), filename, mimetype)
        kwargs["data"] = data
    if shape.chunked is not None:
        headers["Transfer-Encoding"] = "chunked"
        kwargs["input_stream"] = io.BytesIO(shape.chunked)
        # What a server does for a chunked body: it de-chunks and says the
        # stream ends by itself (no CONTENT_LENGTH in the environ).
        kwargs["environ_overrides"] = {"wsgi.input_terminated": True}
    kwargs["headers"] = headers
    return kwargs


def owner_headers(shape: Shape) -> dict[str, str]:
    headers = shape.request.get("headers", {})
    return {k: v for k, v in headers.items() if k.lower() == "authorization"}


# -- comparing ---------------------------------------------------------------------
def _normalise(app: Flask, name: str, value: str) -> str:
    """A session cookie's signed value holds a timestamp: compare what it says."""
    cookie = app.config["SESSION_COOKIE_NAME"] + "="
    if name == "set-cookie" and value.startswith(cookie):
        signed, sep, attributes = value[len(cookie):].partition(";")
        serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        try:
            content = json.dumps(serializer.loads(signed), sort_keys=True)
        except Exception:  # noqa: BLE001 - not a session cookie: compared as it is
            return value
        return f"{cookie}<{content}>{sep}{attributes}"
    return value


def header_multiset(app: Flask, answer: Answer, ignore: frozenset[str]) -> collections.Counter:
    return collections.Counter(
        (name.lower(), _normalise(app, name.lower(), value))
        for name, value in answer.headers if name.lower() not in ignore)


def differences(app: Flask, sync: Answer, replay: Answer, ignore: frozenset[str]) -> list[str]:
    found = []
    if sync.status != replay.status:
        found.append(f"status: synchronous {sync.status}, replay {replay.status}")
    expected, got = header_multiset(app, sync, ignore), header_multiset(app, replay, ignore)
    if expected - got:
        found.append(f"headers missing from the replay: {sorted((expected - got).elements())}")
    if got - expected:
        found.append(f"headers only in the replay: {sorted((got - expected).elements())}")
    if sync.body != replay.body:
        found.append(f"body: synchronous {len(sync.body)} bytes {sync.body[:100]!r},"
                     f" replay {len(replay.body)} bytes {replay.body[:100]!r}")
    return found


# -- the procedure -------------------------------------------------------------------
def synchronous(transport: Transport, shape: Shape, problems: list[str]) -> Answer | None:
    """The synchronous answer the job's result must equal."""
    if shape.client_raises is not None:
        try:
            response = transport.open(shape.method, shape.path, **request_kwargs(shape))
            response.close()
            problems.append(f"the test client did not raise {shape.client_raises}:"
                            f" {response.status_code}")
        except Exception as exc:  # noqa: BLE001 - compared by name below
            if type(exc).__name__ != shape.client_raises:
                problems.append(f"the test client raised {type(exc).__name__},"
                                f" not {shape.client_raises}")
    if shape.sync == "truncated":
        response = transport.open(shape.method, shape.path, **request_kwargs(shape))
        try:
            if response.status_code != 200:
                problems.append(f"synchronous status {response.status_code}, not 200")
            try:
                response.get_data()
                problems.append(f"the synchronous stream did not raise {shape.sync_error}")
            except Exception as exc:  # noqa: BLE001 - compared by name below
                if type(exc).__name__ != shape.sync_error:
                    problems.append(f"the synchronous stream raised {type(exc).__name__}")
        finally:
            response.close()
    else:
        answer = transport.send(shape.method, shape.path, **request_kwargs(shape))
        if shape.method == "HEAD" and answer.body:
            problems.append("the synchronous HEAD has a body")
        if shape.reference is None:
            return answer
    if shape.reference is not None:
        method, path = shape.reference
        return transport.send(method, path, headers=owner_headers(shape))
    return None


def wait_final(transport: Transport, job_id: str, headers: dict[str, str],
               within: float) -> dict[str, t.Any]:
    """Long-poll (``?wait=5``) until the job is final or ``within`` seconds passed."""
    deadline = time.monotonic() + within
    query = "wait=5"
    while True:
        answer = transport.send("GET", f"/jobs/{job_id}?{query}", headers=headers)
        assert answer.status == 200, answer
        record = json.loads(answer.body)
        remaining = deadline - time.monotonic()
        if record["status"] in FINAL or remaining <= 0:
            return record
        query = f"wait={min(5.0, round(remaining, 1)):g}&version={record['version']}"


def result_long_poll(transport: Transport, fetch: str, job_id: str, headers: dict[str, str],
                     within: float) -> Answer:
    """``GET /jobs/<id>/result?wait=5`` until it answers anything but the
    ``202`` of a job still active, or ``within`` seconds passed."""
    deadline = time.monotonic() + within
    while True:
        answer = transport.send(fetch, f"/jobs/{job_id}/result?wait=5", headers=headers)
        still = answer.status == 202 and any(
            name.lower() == "x-job-id" and value == job_id for name, value in answer.headers)
        if not still or time.monotonic() > deadline:
            return answer


def run_inline(env: Env, shape: Shape) -> None:
    """The job asked with ``Prefer: wait=30``: its answer, the job's final
    response sent inline by the submission, equals the synchronous call;
    a job that leaves no response is answered ``202`` instead."""
    transport = Transport(env, shape)
    problems: list[str] = []
    expected = synchronous(transport, shape, problems)
    trigger = {**FLAG, "Prefer": "wait=30"}
    answer = transport.send(shape.method, shape.path, **request_kwargs(shape, trigger))
    if shape.result == "no_result" or shape.final in ("cancelled", "timed_out"):
        if answer.status != 202:
            problems.append(f"a job without a response answered {answer.status} inline")
    else:
        assert expected is not None
        problems += differences(transport.app, expected, answer,
                                ALWAYS_MAY_DIFFER | shape.may_differ)
    if shape.check is not None:
        problems += shape.check(transport.app)
    assert not problems, f"{shape.name} inline on {env.name}:\n  " + "\n  ".join(problems)


def run_shape(env: Env, shape: Shape, trigger: dict[str, str], *,
              long_poll_result: bool = False) -> None:
    transport = Transport(env, shape)
    app = transport.app
    problems: list[str] = []
    expected = synchronous(transport, shape, problems)

    accepted = transport.send(shape.method, shape.path, **request_kwargs(shape, trigger))
    assert accepted.status == 202, f"submission answered {accepted.status}: {accepted.body!r}"
    if trigger == PREFER:
        assert ("Preference-Applied", "respond-async") in accepted.headers
    # From the header: a 202 to HEAD has no body.
    job_id = next(value for name, value in accepted.headers if name.lower() == "x-job-id")
    owner = owner_headers(shape)
    fetch = "HEAD" if shape.method == "HEAD" else "GET"
    waited = (result_long_poll(transport, fetch, job_id, owner, env.within)
              if long_poll_result else None)
    record = wait_final(transport, job_id, owner, env.within)

    if record["status"] not in FINAL:
        problems.append(f"final status: still {record['status']} after {env.within} s"
                        f" (progress {record['progress']})")
    elif record["status"] != shape.final:
        problems.append(f"final status: {record['status']} (error {record['error']}),"
                        f" not {shape.final}")
    error_type = (record.get("error") or {}).get("type")
    if (shape.error_type is not None and record["status"] in FINAL
            and error_type != shape.error_type):
        problems.append(f"error type: {error_type!r}, not {shape.error_type!r}")
    if shape.final == "succeeded" and record["error"] is not None:
        problems.append(f"error: {record['error']}")
    if shape.progress is not None and record["progress"] != dict(shape.progress):
        problems.append(f"progress: {record['progress']}, not {dict(shape.progress)}")

    result = waited or transport.send(fetch, f"/jobs/{job_id}/result", headers=owner)
    if shape.result == "no_result":
        body = json.loads(result.body) if result.body.startswith(b"{") else None
        if result.status != 409 or not (isinstance(body, dict) and body.get("error", {}).get(
                "code") == "no_result" and isinstance(body["error"].get("message"), str)):
            problems.append(f"result: {result.status} {result.body[:200]!r},"
                            " not 409 no_result")
    elif record["status"] not in FINAL:
        problems.append(f"result: {result.status} {result.body[:120]!r}")
    else:
        assert expected is not None
        ignore = ALWAYS_MAY_DIFFER | shape.may_differ
        problems += differences(app, expected, result, ignore)
        if record["httpStatus"] != result.status:
            problems.append(f"record httpStatus {record['httpStatus']}, result {result.status}")
        if shape.cookies == "dropped":
            cookies = [v for n, v in result.headers if n.lower() == "set-cookie"]
            if cookies:
                problems.append(f"Set-Cookie replayed for a job without owner: {cookies}")
            if not any(n.lower() == "set-cookie" for n, _ in expected.headers):
                problems.append("the synchronous answer set no cookie: nothing was checked")
        if fetch == "HEAD" and result.body:
            problems.append(f"HEAD result has a body of {len(result.body)} bytes")
    if shape.check is not None:
        problems += shape.check(app)
    if env.worker_log is not None and f"[{job_id}." not in env.worker_log.read_text(
            errors="replace"):
        problems.append("the job's task is not in the Celery worker's log: it ran elsewhere")
    assert not problems, f"{shape.name} on {env.name}:\n  " + "\n  ".join(problems)


# -- tests --------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_job_equals_the_synchronous_call(thread_env: Env, shape: Shape) -> None:
    run_shape(thread_env, shape, FLAG)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_long_polled_result_equals_the_synchronous_call(thread_env: Env, shape: Shape) -> None:
    run_shape(thread_env, shape, FLAG, long_poll_result=True)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_inline_answer_equals_the_synchronous_call(thread_env: Env, shape: Shape) -> None:
    run_inline(thread_env, shape)


@pytest.mark.parametrize("shape", PREFER_SHAPES, ids=str)
def test_prefer_respond_async_gives_the_same_job(thread_env: Env, shape: Shape) -> None:
    run_shape(thread_env, shape, PREFER)


@pytest.mark.parametrize("shape", CELERY_SHAPES, ids=str)
def test_job_on_celery_equals_the_synchronous_call(celery_env: Env, shape: Shape) -> None:
    run_shape(celery_env, shape, FLAG)


def test_the_corpus() -> None:
    assert len(SHAPES) >= 40
    assert len(BY_NAME) == len(SHAPES), "shape names must be unique"
    assert len(CELERY_SHAPES) >= 10
    for shape in CELERY_SHAPES:
        assert shape.transport == "client" and shape.app == "main", shape.name
    for shape in SHAPES:
        assert shape.final in FINAL, shape.name
        assert shape.may_differ.isdisjoint(ALWAYS_MAY_DIFFER), shape.name
