"""The app the core tests drive: one view per response shape and behaviour."""
from __future__ import annotations

import io
import threading
import typing as t

from flask import Flask, abort, g, redirect, request, send_file

from flask_jobify import Jobify, current_job


class Gates:
    """Events a test uses to hold a job at a known point, and see it there."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.saw_cancel = threading.Event()
        self.ran: list[str] = []


def create_app(store: str = "memory://", **config: t.Any) -> Flask:
    """The core app on the store URL ``store``, with extra ``config``."""
    app = Flask(__name__)
    app.config.update(
        JOBIFY_STORE=store,
        JOBIFY_SHUTDOWN_GRACE=0.5,
        **config,
    )
    jobify = Jobify(app)
    gates = Gates()
    app.extensions["gates"] = gates

    @app.errorhandler(KeyError)
    def key_error(exc: KeyError) -> t.Any:
        return {"handled": str(exc)}, 418

    @app.post("/json")
    @jobify.job
    def json_view() -> t.Any:
        current_job.progress(50, "half")
        return {"echo": request.get_json(), "query": request.args.get("q"),
                "header": request.headers.get("X-Custom"), "g": getattr(g, "mark", None)}

    @app.get("/text")
    @jobify.job
    def text_view() -> t.Any:
        return "plain text", 201, {"Content-Type": "text/plain; charset=utf-8", "X-Extra": "1"}

    @app.get("/binary")
    @jobify.job
    def binary_view() -> t.Any:
        return send_file(io.BytesIO(bytes(range(256)) * 40), mimetype="application/octet-stream",
                         download_name="blob.bin")

    @app.get("/redirect")
    @jobify.job
    def redirect_view() -> t.Any:
        return redirect("/text", code=303)

    @app.get("/missing")
    @jobify.job
    def missing_view() -> t.Any:
        abort(404)

    @app.get("/handled")
    @jobify.job
    def handled_view() -> t.Any:
        raise KeyError("nope")

    @app.get("/crash")
    @jobify.job
    def crash_view() -> t.Any:
        raise ValueError("secret detail")

    @app.post("/upload")
    @jobify.job
    def upload_view() -> t.Any:
        upload = request.files["file"]
        return {"name": upload.filename, "content": upload.read().decode(),
                "field": request.form.get("field")}

    @app.post("/blocking")
    @jobify.job(timeout=30)
    def blocking_view() -> t.Any:
        gates.ran.append(request.args.get("n", ""))
        gates.started.set()
        while not gates.release.wait(0.02):
            if current_job.cancelled:
                gates.saw_cancel.set()
                current_job.progress(None, "stopping")  # raises JobCancelled
        return {"released": True}

    @app.post("/slow")
    @jobify.job(timeout=0.2)
    def slow_view() -> t.Any:
        gates.started.set()
        gates.release.wait(30)  # ignores cancellation on purpose
        return {"late": True}

    @app.post("/short-lived")
    @jobify.job(result_ttl=0.05)
    def short_lived_view() -> t.Any:
        return {"ok": True}

    @app.get("/plain")
    def plain_view() -> t.Any:
        return {"plain": True}

    return app
