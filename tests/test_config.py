"""Config keys: coerced and checked once at ``init_app``, warnings for keys
that have no effect, ``JOBIFY_ALL_VIEWS`` behind a view's own guards, and
one store per app."""
from __future__ import annotations

import dataclasses
import functools
import typing as t
import warnings

import pytest
from flask import Flask, abort, request
from flask.views import MethodView
from flask_login import LoginManager, UserMixin, current_user, login_required
from helpers import finish

from flask_jobify import ConfigError, ConfigWarning, Jobify
from flask_jobify.config import KEYS, PREFIX, Settings
from flask_jobify.options import looks_decorated
from flask_jobify.stores import MemoryStore

FLAG = {"X-Job-Flag": "ON"}


#: Reading the config does not depend on the store: memory.
pytestmark = pytest.mark.stores("memory")


def create_app(store: str, **config: t.Any) -> Flask:
    """A bare app with Jobify, on ``store`` unless ``config`` names one."""
    app = Flask(__name__)
    app.config.update({"JOBIFY_STORE": store, **config})
    Jobify(app)
    return app


@pytest.fixture
def make_app(apps: t.Any) -> t.Callable[..., Flask]:
    """Build an app with Jobify and extra config; shut it down afterwards."""
    return functools.partial(apps, create_app)


def settings_of(app: Flask) -> Settings:
    return app.extensions["jobify"].settings


# -- every key is declared once, with a rule ----------------------------------
def test_config_every_key_is_a_settings_field_and_back():
    fields = {field.name for field in dataclasses.fields(Settings)} - {"read", "unknown"}
    assert fields == {name.lower() for name in KEYS}


@pytest.mark.parametrize("name", sorted(KEYS))
def test_config_default_passes_its_rule(name):
    key = KEYS[name]
    assert key.read(PREFIX + name, key.default) == key.default


#: For each key (without the prefix): values it refuses, and a fragment of
#: the expected part of the message.
BAD_VALUES: dict[str, tuple[list[t.Any], str]] = {
    "STORE": (["postgres://db/jobs", "jobs.db", 42, "memory: //"],
              "a URL starting with memory:// or sqlite:// or redis://"),
    "REDIS_PREFIX": (["", None, 3], "a non-empty string"),
    "MAX_WORKERS": ([0, -1, True, 2.5, "2.5", "many", None, "1" * 5000], "an integer >= 1"),
    "MAX_QUEUED": ([0, False, "0", "1e3"], "an integer >= 1"),
    "MAX_RUNNING_PER_OWNER": ([0, -1, True, "many"], "an integer >= 1, or None"),
    "MAX_WAIT": ([-1, "-0.5", True, "soon", float("nan"), float("inf"), None],
                 "a number of seconds >= 0 and <= 3.1536e+08 (ten years)"),
    "BLOCKING_MAX_WAIT": ([-1, "-0.5", True, "soon", None],
                          "a number of seconds >= 0 and <= 3.1536e+08 (ten years)"),
    "RESULT_TTL": ([1e12, float("inf"), -1, 0, "0", False, "1h"],
                   "a number of seconds > 0 and <= 3.1536e+08 (ten years)"),
    "DEFAULT_TIMEOUT": ([0, -5, "never", True],
                        "a number of seconds > 0 and <= 3.1536e+08 (ten years), or None"),
    "RETRY_AFTER": ([-1, 1.5, True, "1.5"], "an integer >= 0"),
    "ALL_VIEWS": ([1, 0, "maybe", None, "y"], "True or False"),
    "URL_PREFIX": (["jobs", "", "//evil.example/jobs", "/jobs?x=1", "/my jobs", None,
                    "/", "/<int:x>", "/j<obs"],
                   "a path starting with '/'"),
    "SHUTDOWN_GRACE": ([-0.1, "ten"], "a number of seconds >= 0 and <= 3.1536e+08 (ten years)"),
    "CLEANUP_INTERVAL": ([0, -1, "0"], "a number of seconds > 0 and <= 3.1536e+08 (ten years)"),
    "CANCEL_CHECK_INTERVAL": ([-0.25, True],
                              "a number of seconds >= 0 and <= 3.1536e+08 (ten years)"),
    "EXPOSE_ERRORS": ([1, "sometimes"], "True or False (or the string true/false"),
    "DROP_HEADERS": ([b"cookie", {"cookie": 1}, ["cookie", 3], ["bad header"], "cookie:", 7, None],
                     "a tuple of header names"),
    "EXECUTOR": (["processes", "", None, 1], "one of 'thread', 'celery'"),
    "LEASE_SECONDS": ([0, -30, "0"], "a number of seconds > 0 and <= 3.1536e+08 (ten years)"),
    "RETRY_MAX_BACKOFF": ([-1, "forever"],
                          "a number of seconds >= 0 and <= 3.1536e+08 (ten years)"),
    "SWAGGER_UI": ([1, "sure"], "True or False"),
    "SEE_OTHER": ([1, "sure"], "True or False"),
    "AUTO_REGISTER_API": ([0, "maybe"], "True or False"),
    "SWAGGER_UI_URL": (["cdn.example.com/swagger", "ftp://example.com/", "//cdn.example.com/",
                        None], "a URL starting with https:// or http://, or a path"),
    "WEBHOOK_SECRET": ([123, b"bytes"], "a non-empty string, or None"),
    "WEBHOOK_MAX_ATTEMPTS": ([0, "0", True], "an integer >= 1"),
    "WEBHOOK_BACKOFF": ([-1, "x"], "a number of seconds >= 0 and <= 3.1536e+08 (ten years)"),
    "WEBHOOK_MAX_BACKOFF": ([-1, "x"], "a number of seconds >= 0 and <= 3.1536e+08 (ten years)"),
    "WEBHOOK_TIMEOUT": ([0, "0", -1], "a number of seconds > 0 and <= 3.1536e+08 (ten years)"),
    "WEBHOOK_WORKERS": ([0, "none", 1.0], "an integer >= 1"),
    "WEBHOOK_ALLOWED_HOSTS": ([["ok.example", 1], "http://x/", {"a": 1}, None,
                               "127.0.0.1:8080"],
                              "a tuple of host names or IP addresses"),
    "RESULT_COOKIES": (["sometimes", True, None], "one of 'owner', 'always', 'never'"),
    "STORE_RETRY_SECONDS": ([-1, "soon"], "a number of seconds >= 0 and <= 3.1536e+08 (ten years)"),
    "SPOOL_THRESHOLD": ([-1, "big", True, 1.5], "an integer >= 0"),
    "MAX_SAVED_BODY": ([-1, "10MB", False], "an integer >= 0"),
    "KEEP_FAILED_REQUESTS": ([1, "sometimes"], "True or False"),
    "METRICS": ([1, "sure"], "True or False"),
    "SSE_MAX_STREAMS": ([-1, "lots", True, 2.5], "an integer >= 0"),
    "SSE_KEEPALIVE": ([0, -1, "often"], "a number of seconds > 0 and <= 3.1536e+08 (ten years)"),
    "SSE_MAX_SECONDS": ([0, "long"], "a number of seconds > 0 and <= 3.1536e+08 (ten years)"),
    "SSE_FEED_INTERVAL": ([0, "-1"], "a number of seconds > 0 and <= 3.1536e+08 (ten years)"),
    "DASHBOARD": ([1, "please", None], "True or False"),
}


def test_config_bad_values_table_covers_every_key():
    assert set(BAD_VALUES) == set(KEYS)


@pytest.mark.parametrize("name, value, expected", [
    (name, value, expected)
    for name, (values, expected) in BAD_VALUES.items() for value in values
])
def test_config_bad_value_is_refused_at_init_app_naming_key_and_rule(name, value, expected):
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://")
    app.config[PREFIX + name] = value
    with pytest.raises(ConfigError) as caught:
        Jobify(app)
    message = str(caught.value)
    assert message.startswith(f"{PREFIX}{name} must be ")
    assert expected in message
    assert isinstance(caught.value, ValueError)
    assert caught.value.key == PREFIX + name
    assert "jobify" not in app.extensions  # nothing half-registered


def test_config_secret_is_never_shown_in_the_error():
    app = Flask(__name__)
    app.config["JOBIFY_WEBHOOK_SECRET"] = b"hunter2-bytes"
    with pytest.raises(ConfigError, match="not a bytes") as caught:
        Jobify(app)
    assert "hunter2" not in str(caught.value)


#: (key, value as given, value in Settings): strings from environment
#: variables or ``from_mapping``, and other accepted shapes.
COERCIONS: list[tuple[str, t.Any, t.Any]] = [
    ("MAX_WORKERS", "8", 8),
    ("MAX_WORKERS", " 3 ", 3),
    ("MAX_QUEUED", "+20", 20),
    ("MAX_WAIT", "30", 30.0),
    ("MAX_WAIT", 0, 0.0),
    ("RESULT_TTL", "2.5", 2.5),
    ("RESULT_TTL", 60, 60.0),
    ("DEFAULT_TIMEOUT", "600", 600.0),
    ("DEFAULT_TIMEOUT", "none", None),
    ("DEFAULT_TIMEOUT", "", None),
    ("DEFAULT_TIMEOUT", "null", None),
    ("RETRY_AFTER", "0", 0),
    ("ALL_VIEWS", "true", True),
    ("ALL_VIEWS", "ON", True),
    ("ALL_VIEWS", "1", True),
    ("ALL_VIEWS", "no", False),
    ("ALL_VIEWS", "False", False),
    ("EXPOSE_ERRORS", "yes", True),
    ("EXPOSE_ERRORS", "off", False),
    ("SWAGGER_UI", "0", False),
    ("DROP_HEADERS", "authorization", ("authorization",)),
    ("DROP_HEADERS", "Authorization, Cookie", ("authorization", "cookie")),
    ("DROP_HEADERS", "authorization cookie,x-api-key", ("authorization", "cookie", "x-api-key")),
    ("DROP_HEADERS", ["Cookie", "cookie"], ("cookie",)),
    ("DROP_HEADERS", "", ()),
    ("WEBHOOK_ALLOWED_HOSTS", "Hooks.Example., 127.0.0.1 ::1",
     ("hooks.example", "127.0.0.1", "::1")),
    ("WEBHOOK_ALLOWED_HOSTS", ["[::1]"], ("::1",)),
    ("EXECUTOR", " Thread ", "thread"),
    ("RESULT_COOKIES", "NEVER", "never"),
    ("WEBHOOK_SECRET", "", None),
    ("WEBHOOK_SECRET", "s3cret", "s3cret"),
    ("URL_PREFIX", "/api/jobs", "/api/jobs"),
    ("SWAGGER_UI_URL", "/static/swagger/", "/static/swagger/"),
    ("STORE", "sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ("LEASE_SECONDS", "1e1", 10.0),
]


@pytest.mark.parametrize("name, given, expected", COERCIONS)
def test_config_strings_and_other_shapes_are_coerced(make_app, name, given, expected):
    config = {PREFIX + name: given}
    if name == "STORE":
        config = {"JOBIFY_STORE": "memory://"}  # coerced below, without opening a file
        assert KEYS["STORE"].read("JOBIFY_STORE", given) == expected
    app = make_app(**config)
    if name != "STORE":
        assert getattr(settings_of(app), name.lower()) == expected
        assert app.config[PREFIX + name] == expected  # written back, coerced


def test_config_drop_headers_string_drops_the_whole_header():
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://", JOBIFY_DROP_HEADERS="authorization")
    jobify = Jobify(app)

    @app.get("/whoami")
    @jobify.job
    def whoami() -> t.Any:
        return {"auth": request.headers.get("Authorization"), "a": request.headers.get("A")}

    client = app.test_client()
    try:
        accepted = client.get("/whoami", headers={**FLAG, "Authorization": "Bearer x", "A": "1"})
        assert finish(client, accepted.get_json()["jobId"])["status"] == "succeeded"
        result = client.get(f"/jobs/{accepted.get_json()['jobId']}/result").get_json()
        assert result == {"auth": None, "a": "1"}
    finally:
        jobify.shutdown(app, grace=1)


def test_config_none_defaults_are_worked_out(make_app, tmp_path):
    app = Flask(__name__, instance_path=str(tmp_path))
    app.debug = True
    Jobify(app)
    try:
        settings = settings_of(app)
        assert settings.store == "sqlite:///" + str(tmp_path / "jobify.sqlite3")
        assert settings.expose_errors is True
        assert app.config["JOBIFY_STORE"] is None  # the config keeps what was given
    finally:
        app.extensions["jobify"].shutdown(grace=1)


# -- warnings: keys with no effect ---------------------------------------------
def test_config_unknown_key_warns_with_the_closest_key(make_app):
    with pytest.warns(ConfigWarning, match="JOBIFY_MAX_WORKER is not a Flask-Jobify config key"
                      r".*Did you mean JOBIFY_MAX_WORKERS\?") as record:
        make_app(JOBIFY_MAX_WORKER=8)
    assert record[0].filename == __file__  # points at the app's Jobify(app) line


def test_config_unknown_key_far_from_any_gets_no_suggestion(make_app):
    with pytest.warns(ConfigWarning) as record:
        make_app(JOBIFY_ZZZ=1)
    assert "Did you mean" not in str(record[0].message)


def test_config_known_keys_do_not_warn(make_app):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        app = make_app(JOBIFY_MAX_WORKERS="2", JOBIFY_DROP_HEADERS="cookie")
        app.test_client().get("/jobs")  # the first request compares again


def test_config_key_changed_after_init_app_warns_at_first_request(make_app):
    app = make_app()
    app.config["JOBIFY_DROP_HEADERS"] = ("authorization",)
    app.config["JOBIFY_MAX_WORKERS"] = "4"  # the same value as read: no warning
    app.config["JOBIFY_RESULT_TTL"] = -1  # invalid now: changed
    del app.config["JOBIFY_URL_PREFIX"]
    app.config["JOBIFY_RETRY_AFTR"] = 3  # a typo added later
    with pytest.warns(ConfigWarning) as record:
        app.test_client().get("/jobs")
    messages = [str(warning.message) for warning in record]
    changed = sorted(m.split()[0] for m in messages if "changed after" in m)
    assert changed == ["JOBIFY_DROP_HEADERS", "JOBIFY_RESULT_TTL", "JOBIFY_URL_PREFIX"]
    assert any("JOBIFY_RETRY_AFTR" in m and "JOBIFY_RETRY_AFTER" in m for m in messages)
    assert settings_of(app).drop_headers == ()  # ignored, as the warning says
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        app.test_client().get("/jobs")  # once per process, not on every request


def test_config_unknown_key_warned_at_init_is_not_warned_again(make_app):
    with pytest.warns(ConfigWarning):
        app = make_app(JOBIFY_MAX_WORKER=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        app.test_client().get("/jobs")


# -- JOBIFY_ALL_VIEWS never accepts a job before a view's own guards ----------
class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def login_app() -> tuple[Flask, Jobify]:
    """ALL_VIEWS, Flask-Login (``Authorization: user``), views of each shape."""
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://", JOBIFY_ALL_VIEWS=True, SECRET_KEY="k")
    jobify = Jobify(app)
    login = LoginManager(app)

    @login.request_loader
    def from_header(req: t.Any) -> User | None:
        name = req.headers.get("Authorization")
        return User(name) if name else None

    @app.post("/secret")
    @login_required
    def secret() -> t.Any:
        return {"user": current_user.id}

    def homemade_guard(view: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        def guarded(*args: t.Any, **kwargs: t.Any) -> t.Any:  # no functools.wraps
            if not current_user.is_authenticated:
                abort(403)
            return view(*args, **kwargs)
        return guarded

    @app.post("/homemade", endpoint="homemade")
    @homemade_guard
    def homemade() -> t.Any:
        return {"ok": True}

    @app.post("/marked")
    @login_required
    @jobify.job
    def marked() -> t.Any:
        return {"user": current_user.id}

    @app.post("/open")
    def open_() -> t.Any:
        return {"open": True}

    class Things(MethodView):
        def post(self) -> t.Any:
            return {"thing": True}

    app.add_url_rule("/things", view_func=Things.as_view("things"))
    return app, jobify


def test_config_all_views_login_required_answers_401_and_stores_no_job():
    app, jobify = login_app()
    client = app.test_client()
    try:
        with pytest.warns(ConfigWarning, match="homemade, secret"):
            response = client.post("/secret", headers=FLAG)
        assert response.status_code == 401  # Flask-Login's answer, not a 202
        assert client.post("/homemade", headers=FLAG).status_code == 403
        assert jobify.get_state(app).store.list() == []
        # Authenticated: the view runs, synchronously (it was left alone).
        response = client.post("/secret", headers={**FLAG, "Authorization": "ann"})
        assert response.status_code == 200 and response.get_json() == {"user": "ann"}
        assert jobify.get_state(app).store.list() == []
    finally:
        jobify.shutdown(app, grace=1)


def test_config_all_views_still_jobifies_plain_and_marked_views():
    app, jobify = login_app()
    client = app.test_client()
    try:
        with pytest.warns(ConfigWarning):
            assert client.post("/open", headers=FLAG).status_code == 202
        assert client.post("/things", headers=FLAG).status_code == 202  # as_view()
        assert client.post("/marked", headers=FLAG).status_code == 401
        accepted = client.post("/marked", headers={**FLAG, "Authorization": "bob"})
        assert accepted.status_code == 202
        job_id = accepted.get_json()["jobId"]
        assert finish(client, job_id)["status"] == "succeeded"
        assert client.get(f"/jobs/{job_id}/result").get_json() == {"user": "bob"}
    finally:
        jobify.shutdown(app, grace=1)


def test_config_looks_decorated():
    def plain() -> None: ...

    def helper() -> None: ...

    def closes_over_helper() -> None:
        helper()

    def guard_in_a_default(*args: t.Any, _view: t.Any = plain, **kwargs: t.Any) -> t.Any:
        return _view(*args, **kwargs)

    box = [plain]

    def guard_with_a_box(*args: t.Any, **kwargs: t.Any) -> t.Any:
        return box[0](*args, **kwargs)

    # The mutable default is the subject: a guard hidden in one.
    def guard_with_a_dict(*args: t.Any, _views: t.Any = {"v": (plain,)}, **kw: t.Any) -> t.Any:  # noqa: B006
        return _views["v"][0]()

    assert not looks_decorated(plain)
    assert looks_decorated(functools.wraps(plain)(lambda: None))
    assert looks_decorated(closes_over_helper)  # taken for a decorator: left alone
    assert looks_decorated(functools.partial(plain))
    assert looks_decorated(guard_in_a_default)  # found by a break-it review
    assert looks_decorated(guard_with_a_box)
    assert looks_decorated(guard_with_a_dict)


# -- a store instance serves one app --------------------------------------------
def test_config_constructor_store_serves_one_app_and_a_second_is_refused():
    store = MemoryStore()
    jobify = Jobify(store=store)
    first, second = Flask("first"), Flask("second")
    jobify.init_app(first)
    try:
        assert jobify.get_state(first).store is store
        with pytest.raises(RuntimeError,
                           match=r"already serves app 'first'.*init_app\(app, store="):
            jobify.init_app(second)
        assert "jobify" not in second.extensions
    finally:
        jobify.shutdown(first, grace=1)


def test_config_each_app_gets_its_own_store_with_init_app():
    jobify = Jobify(store=MemoryStore())
    apps = [Flask("a"), Flask("b"), Flask("c")]
    jobify.init_app(apps[0])
    jobify.init_app(apps[1], store=MemoryStore())
    apps[2].config["JOBIFY_STORE"] = "memory://"  # its own URL: a new store
    jobify.init_app(apps[2])
    try:
        stores = [jobify.get_state(app).store for app in apps]
        assert len({id(store) for store in stores}) == 3
        assert all(isinstance(store, MemoryStore) for store in stores)
        for app in apps:

            @app.post("/work")
            @jobify.job
            def work() -> t.Any:
                return {}

        job_id = apps[1].test_client().post("/work", headers=FLAG).get_json()["jobId"]
        assert apps[0].test_client().get(f"/jobs/{job_id}").status_code == 404
        assert apps[1].test_client().get(f"/jobs/{job_id}").status_code == 200
    finally:
        for app in apps:
            jobify.shutdown(app, grace=1)


def test_config_a_store_instance_given_to_two_apps_is_refused():
    store = MemoryStore()
    first, second = Flask("first"), Flask("second")
    Jobify(first, store=store)
    with pytest.raises(RuntimeError, match="already serves app 'first'"):
        Jobify().init_app(second, store=store)
    with pytest.raises(RuntimeError, match="already serves app 'first'"):
        Jobify(second, store=store)
    first.extensions["jobify"].shutdown(grace=1)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/x.db",
                                 "redis://:hunter2@127.0.0.1:notaport/0", "unix://",
                                 "sqlite:////proc/nope/x.db"])
def test_config_a_store_that_cannot_be_opened_is_a_config_error(url):
    app = Flask("x")
    app.config["JOBIFY_STORE"] = url
    with pytest.raises(ConfigError, match="JOBIFY_STORE") as raised:
        Jobify(app)
    assert "hunter2" not in str(raised.value)


def test_config_bad_config_does_not_take_the_constructor_store():
    jobify = Jobify(store=MemoryStore())
    bad, good = Flask("bad"), Flask("good")
    bad.config["JOBIFY_MAX_WORKERS"] = 0
    with pytest.raises(ConfigError):
        jobify.init_app(bad)
    jobify.init_app(good)  # the store is still free
    jobify.shutdown(good, grace=1)
