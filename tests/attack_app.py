"""An app for the browser attack tests: its jobs carry markup in every
field the dashboard shows (operation, path, query, progress message, error,
webhook), and a ``/mode/<name>`` switch makes its job status answers
misbehave as a broken proxy would (``html``: a 200 HTML page; ``forbidden``:
a 403), for ``jobifyFetch``."""
from __future__ import annotations

import threading
import typing as t

from flask import Flask, Response, current_app, request

from flask_jobify import Jobify, JobProgress, current_job

#: Markup that sets ``window.__xss`` if it is ever parsed as HTML.
PAYLOAD = ('"\'></textarea></title><img src=x onerror="window.__xss=1">'
           '<script>window.__xss=1</script><svg onload="window.__xss=1">')
#: The operation (endpoint) name: no dots, as Flask wants.
OPERATION = '<img src=x onerror="window.__xss=1">op'


def create_app(store: str) -> Flask:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=store, JOBIFY_DASHBOARD=True, SECRET_KEY="attack-test",
                      JOBIFY_EXPOSE_ERRORS=True, JOBIFY_SSE_KEEPALIVE=1.0,
                      JOBIFY_SSE_FEED_INTERVAL=0.1)
    jobify = Jobify(app)
    release = threading.Event()
    mode = {"now": "normal"}
    app.extensions["attack"] = {"release": release, "mode": mode}

    @jobify.dashboard_access
    def everyone() -> bool:
        return True

    def echo(rest: str) -> dict[str, str]:
        """Set the progress message ``?m=``; fail with ``?e=``, else run
        until cancelled."""
        current_job.progress(50, request.args.get("m", ""))
        if request.args.get("e"):
            raise RuntimeError(request.args["e"])
        while not current_job.cancelled and not release.wait(0.05):
            pass
        return {"rest": rest}

    app.add_url_rule("/echo/<path:rest>", OPERATION, jobify.job(echo), methods=["POST"])

    @app.post("/plant/<job_id>")
    def plant(job_id: str) -> dict[str, t.Any]:
        """Set a job's progress message and webhook record to the payload."""
        store = current_app.extensions["jobify"].store
        job = store.get(job_id)
        assert job is not None
        webhook = {"url": f"https://example.com/{PAYLOAD}", "attempts": 1,
                   "lastStatus": 500, "lastError": PAYLOAD, "delivered": False}
        changed = store.update(job_id, {"meta": {**job.meta, "webhook": webhook},
                                        "progress": JobProgress(75, PAYLOAD)})
        return {"version": None if changed is None else changed.version}

    @app.post("/mode/<name>")
    def set_mode(name: str) -> dict[str, str]:
        mode["now"] = name
        return {"mode": name}

    @app.before_request
    def misbehave() -> Response | None:
        polled = (request.method == "GET" and request.path.startswith("/jobs/")
                  and "wait" in request.args)
        if polled and mode["now"] == "html":
            return Response("<html><body>Proxy says hello</body></html>", 200,
                            mimetype="text/html")
        if polled and mode["now"] == "forbidden":
            return Response('{"error": {"code": "forbidden", "message": "no"}}', 403,
                            mimetype="application/json")
        return None

    return app
