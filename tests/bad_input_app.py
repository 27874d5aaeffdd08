"""A small API app for the bad-input test: every error it answers is JSON,
so whatever is not JSON came from gunicorn itself."""
from __future__ import annotations

import io
import typing as t

from flask import Flask, request, send_file
from werkzeug.exceptions import HTTPException

from flask_jobify import Jobify
from flask_jobify.errors import http_exception_response


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bad-input-test-secret",
        JOBIFY_STORE="memory://",  # one gunicorn worker
        JOBIFY_WEBHOOK_SECRET="whsec-bad-input",
        JOBIFY_MAX_WAIT=5.0,
        JOBIFY_SHUTDOWN_GRACE=0.5,
    )
    jobify = Jobify(app)
    app.register_error_handler(HTTPException, http_exception_response)

    @app.post("/json")
    @jobify.job
    def json_view() -> t.Any:
        return {"echo": request.get_json()}

    @app.post("/upload")
    @jobify.job
    def upload_view() -> t.Any:
        upload = request.files["file"]
        return {"name": upload.filename, "size": len(upload.read())}

    @app.get("/text")
    @jobify.job
    def text_view() -> t.Any:
        return "plain text", 201, {"Content-Type": "text/plain; charset=utf-8"}

    @app.get("/binary")
    @jobify.job
    def binary_view() -> t.Any:
        return send_file(io.BytesIO(bytes(range(256)) * 4), mimetype="application/octet-stream")

    return app
