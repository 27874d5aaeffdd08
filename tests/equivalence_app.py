"""The app the differential test (``test_equivalence.py``) drives: one view
per response shape, under the hooks, handlers and extensions a real app has.

Every view is deterministic (same request, same response, wherever and
whenever it runs), so that its synchronous answer and its job's replayed
result can be compared byte for byte.

Two variants, built by :func:`create_app`:

``main``
    An owner loader (Flask-Login's ``current_user``, loaded from
    ``Authorization: Token <name>`` by a ``request_loader``), so that jobs
    submitted with that header have an owner and their ``Set-Cookie``
    headers are replayed.
``noowner``
    No owner loader, and the common ``session.permanent = True``
    ``before_request`` idiom: every response saves the session. A replay
    must carry no ``Set-Cookie`` at all: not the job's (no owner), not the
    fetching request's own session.

Both have, app-wide: a ``before_request`` that counts its runs in ``g``, an
``after_request`` that *adds* ``X-After-Request: app`` to every response
(so a hook that ran twice shows), ``ProxyFix``, a 500 handler, a handler for
a custom exception, a blueprint with its own handler, Flask-Login and
Flask-SQLAlchemy (an SQLite file).

The Celery worker builds the same app from the environment: run
``celery -A equivalence_app:celery_app worker`` with ``EQUIV_STORE``,
``EQUIV_BROKER``, ``EQUIV_QUEUE``, ``EQUIV_DATA_DIR`` and ``EQUIV_DB_PATH``.
"""
from __future__ import annotations

import asyncio
import datetime
import hashlib
import io
import os
import threading
import typing as t

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    after_this_request,
    copy_current_request_context,
    g,
    make_response,
    redirect,
    request,
    send_file,
    session,
    stream_with_context,
    url_for,
)
from flask.views import MethodView
from flask_login import LoginManager, UserMixin, current_user, login_required
from flask_sqlalchemy import SQLAlchemy
from werkzeug.exceptions import InternalServerError
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_jobify import Jobify, current_job
from flask_jobify.errors import JobCancelled

SECRET_KEY = "equivalence-test-secret"
#: The file ``send_file`` serves from a path: fixed content, name, mtime and
#: ETag, so that every process (the test's, a Celery worker) serves the same.
FILE_NAME = "report.txt"
FILE_ETAG = "report-v1"
FILE_MTIME = 1_700_000_000
LARGE_SIZE = 1 << 20
#: ``Authorization`` value that names the user (and job owner) ``alice``.
ALICE = {"Authorization": "Token alice"}

db = SQLAlchemy()


class Note(db.Model):  # type: ignore[name-defined,misc]
    key = db.Column(db.String(64), primary_key=True)
    text = db.Column(db.String(200), nullable=False)


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


class OutOfStock(Exception):
    """Handled by an app-level error handler (422)."""


class WidgetBroken(Exception):
    """Handled by the ``shop`` blueprint's error handler (418)."""


class AfterHookError(Exception):
    """Raised by an ``after_request`` hook."""


class TeardownError(Exception):
    """Raised by a ``teardown_request`` function."""


class NoteRejected(Exception):
    """Raised by a view after it wrote to the database (not handled: 500)."""


def file_content() -> bytes:
    return b"".join(f"line {n:04d}: the quick brown fox\n".encode() for n in range(150))


def large_content() -> bytes:
    block = hashlib.sha256(b"large").digest() * 32  # 1 KiB, not compressible to nothing
    return (block * (LARGE_SIZE // len(block)))[:LARGE_SIZE]


def ensure_data_file(data_dir: str) -> str:
    """Write the served file once (atomically), with its fixed mtime."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, FILE_NAME)
    content = file_content()
    try:
        with open(path, "rb") as f:
            same = f.read() == content
    except FileNotFoundError:
        same = False
    if not same:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    os.utime(path, (FILE_MTIME, FILE_MTIME))
    return path


def create_app(
    *,
    store: str,
    data_dir: str,
    db_path: str,
    variant: str = "main",
    **config: t.Any,
) -> Flask:
    """Build the app. ``config`` adds or overrides config keys
    (``JOBIFY_EXECUTOR="celery"``...)."""
    if variant not in ("main", "noowner"):
        raise ValueError(variant)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=SECRET_KEY,
        JOBIFY_STORE=store,
        JOBIFY_SHUTDOWN_GRACE=1.0,
        JOBIFY_CANCEL_CHECK_INTERVAL=0.05,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_path}",
        **config,
    )
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)  # type: ignore[method-assign]
    jobify = Jobify(app)
    app.extensions["equivalence_jobify"] = jobify
    file_path = ensure_data_file(data_dir)

    db.init_app(app)
    with app.app_context():
        db.create_all()

    login = LoginManager(app)

    @login.request_loader
    def load_user_from_request(req: t.Any) -> User | None:
        scheme, _, name = req.headers.get("Authorization", "").partition(" ")
        return User(name) if scheme == "Token" and name else None

    if variant == "main":
        @jobify.owner_loader
        def job_owner() -> str | None:
            return current_user.get_id() if current_user.is_authenticated else None
    else:
        @app.before_request
        def permanent_session() -> None:
            session.permanent = True

    # -- app-wide hooks and handlers ------------------------------------------
    @app.before_request
    def count_before_runs() -> None:
        g.before_runs = g.get("before_runs", 0) + 1
        g.seen_path = request.path

    @app.after_request
    def add_app_header(response: Response) -> Response:
        response.headers.add("X-After-Request", "app")  # add, not set: twice shows twice
        return response

    # Both fail on what the view did (never on a 202: the view did not run).
    @app.after_request
    def raise_after(response: Response) -> Response:
        if "X-Poison" in response.headers:
            raise AfterHookError("an after_request hook failed")
        return response

    @app.teardown_request
    def raise_teardown(exc: BaseException | None) -> None:
        if g.get("poison_teardown"):
            raise TeardownError("a teardown_request function failed")

    @app.errorhandler(InternalServerError)
    def internal_error(exc: InternalServerError) -> t.Any:
        original = exc.original_exception
        body = {"error": "internal",
                "exception": None if original is None else type(original).__name__}
        return body, 500, {"X-Error-Handler": "app"}

    @app.errorhandler(OutOfStock)
    def out_of_stock(exc: OutOfStock) -> t.Any:
        return {"error": "out_of_stock", "sku": exc.args[0]}, 422, {"X-Handled-By": "app"}

    # -- bodies ------------------------------------------------------------------
    @app.post("/json")
    @jobify.job
    def json_view() -> t.Any:
        return {"echo": request.get_json(), "query": request.args.get("q"),
                "header": request.headers.get("X-Custom"), "is_json": request.is_json}

    @app.post("/queued")
    @jobify.job(queue="equivalence", concurrency=1)
    def queued_view() -> t.Any:
        """In an execution queue of one: waits for its slot, then runs as any view."""
        return {"echo": request.get_json(), "query": request.args.get("q"),
                "header": request.headers.get("X-Custom")}, 201, {"X-Queued": "yes"}

    @app.get("/json-list")
    @jobify.job
    def json_list_view() -> t.Any:
        return [{"id": n, "square": n * n} for n in range(5)] + ["end", None, True]

    @app.get("/text")
    @jobify.job
    def text_view() -> t.Any:
        return "plain text", 201, {"Content-Type": "text/plain; charset=utf-8", "X-Extra": "1"}

    @app.get("/unicode-text")
    @jobify.job
    def unicode_text_view() -> t.Any:
        return Response("Grüße aus Zürich — 世界 ✓ naïve café\n",
                        content_type="text/plain; charset=utf-8")

    @app.get("/binary")
    @jobify.job
    def binary_view() -> t.Any:
        return Response(bytes(range(256)) * 16 + b"\x00\xff\r\n",
                        mimetype="application/octet-stream")

    @app.get("/large")
    @jobify.job
    def large_view() -> t.Any:
        return Response(large_content(), mimetype="application/octet-stream",
                        headers={"X-Size": str(LARGE_SIZE)})

    @app.delete("/empty")
    @jobify.job
    def empty_view() -> t.Any:
        return "", 204, {"X-Deleted": "yes"}

    @app.post("/form")
    @jobify.job
    def form_view() -> t.Any:
        return {"form": {k: request.form.getlist(k) for k in sorted(request.form)}}

    # -- files -----------------------------------------------------------------
    @app.get("/file")
    @jobify.job
    def file_view() -> t.Any:
        return send_file(file_path, mimetype="text/plain", etag=FILE_ETAG, max_age=60)

    @app.get("/file-bytes")
    @jobify.job
    def file_bytes_view() -> t.Any:
        data = io.BytesIO(b"id,name\n1,caf\xc3\xa9\n2,na\xc3\xafve\n")
        return send_file(data, mimetype="text/csv", as_attachment=True,
                         download_name="rapport été.csv")

    # -- streams ---------------------------------------------------------------
    @app.get("/stream")
    @jobify.job
    def stream_view() -> t.Any:
        def chunks() -> t.Iterator[str]:
            for n in range(5):
                yield f"chunk {n}\n"
        return Response(chunks(), mimetype="text/plain", headers={"X-Streamed": "yes"})

    @app.get("/stream-fail")
    @jobify.job
    def stream_fail_view() -> t.Any:
        def chunks() -> t.Iterator[str]:
            yield "first chunk\n"
            raise RuntimeError("the stream broke")
        return Response(chunks(), mimetype="text/plain")

    @app.get("/stream-cancel")
    @jobify.job
    def stream_cancel_view() -> t.Any:
        def chunks() -> t.Iterator[str]:
            yield "first chunk\n"
            raise JobCancelled("stop streaming")
        return Response(chunks(), mimetype="text/plain")

    @app.get("/stream-context")
    @jobify.job
    def stream_context_view() -> t.Any:
        @stream_with_context
        def chunks() -> t.Iterator[str]:
            for word in request.args.getlist("word"):
                yield word.upper() + "\n"
            yield f"{request.path} before_runs={g.before_runs}\n"
        return Response(chunks(), mimetype="text/plain")

    # -- redirects and errors ---------------------------------------------------
    @app.route("/redirect/<int:code>", methods=["GET", "POST"])
    @jobify.job
    def redirect_view(code: int) -> t.Any:
        return redirect(url_for("text_view", came_from=code), code=code)

    @app.route("/abort/<int:code>", methods=["GET", "POST"])
    @jobify.job
    def abort_view(code: int) -> t.Any:
        if code == 503:
            abort(503, retry_after=120)
        abort(code)

    @app.get("/out-of-stock")
    @jobify.job
    def out_of_stock_view() -> t.Any:
        raise OutOfStock("SKU-42")

    @app.get("/crash")
    @jobify.job
    def crash_view() -> t.Any:
        raise RuntimeError("a secret detail")

    # -- hooks -----------------------------------------------------------------
    @app.get("/hooks/after-header")
    @jobify.job
    def after_header() -> t.Any:
        @after_this_request
        def add_one(response: Response) -> Response:
            response.headers.add("X-After-This", "yes")
            return response
        return {"hooked": True}

    @app.get("/hooks/after-raise")
    @jobify.job
    def after_raise() -> t.Any:
        return {"never sent": True}, 200, {"X-Poison": "1"}

    @app.get("/hooks/teardown")
    @jobify.job
    def teardown_raise() -> t.Any:
        g.poison_teardown = True
        return {"computed": True}

    @app.get("/g")
    @jobify.job
    def g_view() -> t.Any:
        return {"before_runs": g.before_runs, "seen_path": g.seen_path,
                "g": sorted(name for name in g if not name.startswith("_"))}

    # -- session and cookies ------------------------------------------------------
    @app.post("/session")
    @jobify.job
    def session_view() -> t.Any:
        session["cart"] = request.get_json()["items"]
        session["visits"] = session.get("visits", 0) + 1
        return {"stored": session["cart"]}

    @app.get("/cookies")
    @jobify.job
    def cookies_view() -> t.Any:
        response = make_response({"cookies": "set"}, 200)
        response.set_cookie("flavour", "oatmeal raisin", httponly=True, samesite="Lax",
                            expires=datetime.datetime(2031, 1, 1, tzinfo=datetime.timezone.utc))
        response.set_cookie("theme", "dark", path="/cookies", secure=True)
        response.delete_cookie("old")
        return response

    # -- methods -----------------------------------------------------------------
    @app.route("/options", methods=["GET", "OPTIONS"])
    @jobify.job
    def options_view() -> t.Any:
        if request.method == "OPTIONS":
            return "", 200, {"Allow": "GET, OPTIONS", "X-Options": "custom"}
        return {"get": True}

    @app.get("/async")
    @jobify.job
    async def async_view() -> t.Any:
        await asyncio.sleep(0.01)
        n = int(request.args.get("n", "1"))
        return {"async": True, "doubled": [2 * i for i in range(n)]}

    class ItemAPI(MethodView):
        decorators = [jobify.job]  # noqa: RUF012 - Flask's MethodView API
        init_every_request = False

        def get(self, item_id: int) -> t.Any:
            return {"item": item_id, "method": "GET"}

        def post(self, item_id: int) -> t.Any:
            return {"item": item_id, "created": request.get_json()}, 201, {
                "Location": url_for("items", item_id=item_id)}

        def put(self, item_id: int) -> t.Any:
            return {"item": item_id, "replaced": request.get_json()}

        def delete(self, item_id: int) -> t.Any:
            return {"deleted": item_id}, 200, {"X-Deleted": str(item_id)}

    app.add_url_rule("/items/<int:item_id>", view_func=ItemAPI.as_view("items"))

    shop = Blueprint("shop", __name__, url_prefix="/api/v1")

    @shop.errorhandler(WidgetBroken)
    def widget_broken(exc: WidgetBroken) -> t.Any:
        return {"error": "widget_broken", "widget": exc.args[0]}, 418

    @shop.get("/widgets/<int:widget_id>")
    @jobify.job
    def widget(widget_id: int) -> t.Any:
        return {"widget": widget_id, "url": url_for("shop.widget", widget_id=widget_id),
                "blueprint": request.blueprint}

    @shop.get("/widgets/<int:widget_id>/broken")
    @jobify.job
    def broken_widget(widget_id: int) -> t.Any:
        raise WidgetBroken(widget_id)

    app.register_blueprint(shop)

    # -- request shapes ------------------------------------------------------------
    @app.get("/whoami")
    @jobify.job
    def whoami() -> t.Any:
        return {"url": request.url, "remote_addr": request.remote_addr,
                "scheme": request.scheme, "host": request.host, "secure": request.is_secure,
                "script_root": request.script_root,
                "external": url_for("whoami", _external=True)}

    @app.post("/upload")
    @jobify.job
    def upload_view() -> t.Any:
        upload = request.files["file"]
        content = upload.read()
        return {"name": upload.filename, "mimetype": upload.mimetype, "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(), "field": request.form.get("field")}

    @app.post("/upload-raw")
    @jobify.job
    def upload_raw_view() -> t.Any:
        data = request.get_data()
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "head": data[:16].decode("latin-1"), "type": request.mimetype}

    @app.get("/query")
    @jobify.job
    def query_view() -> t.Any:
        return {"tags": request.args.getlist("tag"),
                "items": list(request.args.items(multi=True)),
                "raw": request.query_string.decode("latin-1")}

    @app.get("/unicode/<segment>")
    @jobify.job
    def unicode_path_view(segment: str) -> t.Any:
        return {"segment": segment, "path": request.path, "url": request.url,
                "built": url_for("unicode_path_view", segment=segment)}

    # -- extensions ----------------------------------------------------------------
    @app.get("/me")
    @login_required
    @jobify.job
    def me() -> t.Any:
        return {"user": current_user.get_id(), "authenticated": current_user.is_authenticated}

    @app.post("/notes/<key>")
    @jobify.job
    def save_note(key: str) -> t.Any:
        db.session.merge(Note(key=key, text=request.get_json()["text"]))
        db.session.commit()
        note = db.session.get(Note, key)
        return {"key": note.key, "text": note.text,
                "count": db.session.query(Note).filter_by(key=key).count()}

    @app.post("/notes/<key>/reject")
    @jobify.job
    def reject_note(key: str) -> t.Any:
        db.session.add(Note(key=key, text="never committed"))
        db.session.flush()
        raise NoteRejected(key)

    @app.get("/thread")
    @jobify.job
    def thread_view() -> t.Any:
        out: dict[str, t.Any] = {}

        @copy_current_request_context
        def work() -> None:
            n = int(request.args.get("n", "3"))
            current_job.progress(50, "from thread")
            out["squares"] = [i * i for i in range(n)]

        worker = threading.Thread(target=work)
        worker.start()
        worker.join(10)
        return {"squares": out.get("squares")}

    return app


def create_celery_pair(
    *, store: str, broker: str, queue: str, data_dir: str, db_path: str
) -> tuple[Flask, t.Any]:
    """The main app on the Celery executor, and its Celery app: built the
    same way by the test process (which submits) and the worker (which runs)."""
    from celery import Celery

    flask_app = create_app(store=store, data_dir=data_dir, db_path=db_path,
                           JOBIFY_EXECUTOR="celery")
    celery_app = Celery("equivalence_app", broker=broker)
    celery_app.conf.update(
        broker_connection_retry_on_startup=True,
        task_default_queue=queue,  # its own queue: no other worker eats our tasks
        worker_prefetch_multiplier=1,
        worker_send_task_events=False,
    )
    flask_app.extensions["equivalence_jobify"].init_celery(celery_app, flask_app)
    return flask_app, celery_app


if os.environ.get("EQUIV_STORE"):  # the Celery worker's side
    flask_app, celery_app = create_celery_pair(
        store=os.environ["EQUIV_STORE"],
        broker=os.environ["EQUIV_BROKER"],
        queue=os.environ["EQUIV_QUEUE"],
        data_dir=os.environ["EQUIV_DATA_DIR"],
        db_path=os.environ["EQUIV_DB_PATH"],
    )
