"""Webhooks: signed deliveries to a real receiver, retries, SSRF refusals."""
from __future__ import annotations

import functools
import json
import socket
import threading
import typing as t

import pytest
from flask import Flask, request
from servers import serve_app

from flask_jobify import Jobify, WebhookSignatureError
from flask_jobify.webhooks import SIGNATURE_HEADER, sign, verify

SECRET = "whsec-test"
FLAG = {"X-Job-Flag": "ON"}


class Receiver:
    """A second Flask app that checks signatures and answers with the
    statuses it is given, in order (then 200)."""

    def __init__(self, statuses: t.Sequence[int] = (), *, redirect_to: str | None = None,
                 secret: str = SECRET) -> None:
        self.secret = secret
        self.statuses = list(statuses)
        self.redirect_to = redirect_to
        self.calls: list[dict[str, t.Any]] = []
        self.done = threading.Event()
        self.app = Flask("receiver")
        self.app.add_url_rule("/hook", "hook", self.hook, methods=["POST"])

    def hook(self) -> t.Any:
        body = request.get_data()
        try:
            verify(body, request.headers.get(SIGNATURE_HEADER, ""), self.secret)
            valid = True
        except WebhookSignatureError:
            valid = False
        self.calls.append({"body": json.loads(body), "valid": valid})
        if self.redirect_to:
            self.done.set()
            return "", 302, {"Location": self.redirect_to}
        status = self.statuses.pop(0) if self.statuses else 200
        if status < 300:
            self.done.set()
        return "", status


#: Deliveries do not depend on the store: the app runs on memory.
pytestmark = pytest.mark.stores("memory")


def create_app(store: str, **config: t.Any) -> tuple[Flask, Jobify]:
    app = Flask(__name__)
    app.config.update({
        "JOBIFY_STORE": store,
        "JOBIFY_WEBHOOK_SECRET": SECRET,
        "JOBIFY_WEBHOOK_ALLOWED_HOSTS": ("127.0.0.1",),
        "JOBIFY_WEBHOOK_BACKOFF": 0.01,
        "JOBIFY_WEBHOOK_MAX_BACKOFF": 0.02,
        "JOBIFY_WEBHOOK_TIMEOUT": 5.0,
        **config,
    })
    jobify = Jobify(app)

    @app.post("/work")
    @jobify.job
    def work() -> t.Any:
        if request.args.get("fail"):
            return {"error": "nope"}, 500
        return {"answer": 42}

    return app, jobify


@pytest.fixture
def make_app(apps: t.Any) -> t.Callable[..., tuple[Flask, Jobify]]:
    """Builds the webhook app with extra config; stopped afterwards."""
    return functools.partial(apps, create_app)


def wait_for_webhook(
    app: Flask, job_id: str, attempts: int = 1, timeout: float = 10.0
) -> dict[str, t.Any]:
    """Wait, woken by the store on every change, until the job's webhook
    was delivered or tried ``attempts`` times; return GET /jobs/<id>."""
    store = app.extensions["jobify"].store
    expired = threading.Event()
    deadline = threading.Timer(timeout, expired.set)
    deadline.start()
    try:
        job = store.get(job_id)
        while job is not None and not expired.is_set():
            hook = job.meta.get("webhook", {})
            if hook.get("delivered") or hook.get("attempts", 0) >= attempts:
                break
            job = store.wait(job_id, job.version, 0.5)
    finally:
        deadline.cancel()
    with app.test_client() as client:
        return client.get(f"/jobs/{job_id}").get_json()


def submit(app: Flask, callback: str | None, path: str = "/work") -> t.Any:
    headers = dict(FLAG)
    if callback is not None:
        headers["X-Job-Callback"] = callback
    return app.test_client().post(path, headers=headers)


def test_webhooks_deliver_signed_job_record_to_real_receiver(make_app) -> None:
    receiver = Receiver()
    app, _ = make_app()
    with serve_app(receiver.app) as url:
        response = submit(app, url + "/hook")
        assert response.status_code == 202
        job_id = response.get_json()["jobId"]
        assert receiver.done.wait(10)
        record = wait_for_webhook(app, job_id)
    [call] = receiver.calls
    assert call["valid"]
    body = call["body"]
    assert body["id"] == job_id and body["status"] == "succeeded"
    assert body["resultUrl"] == f"http://localhost/jobs/{job_id}/result"
    assert "webhook" not in body
    assert record["status"] == "succeeded"
    assert record["webhook"] == {
        "url": url + "/hook", "attempts": 1, "lastStatus": 200, "lastError": None,
        "delivered": True,
    }


def test_webhooks_retry_until_delivered_without_changing_status(make_app) -> None:
    receiver = Receiver([503, 503])
    app, _ = make_app()
    with serve_app(receiver.app) as url:
        job_id = submit(app, url + "/hook").get_json()["jobId"]
        assert receiver.done.wait(10)
        record = wait_for_webhook(app, job_id, attempts=3)
    assert len(receiver.calls) == 3 and all(call["valid"] for call in receiver.calls)
    assert record["webhook"]["attempts"] == 3
    assert record["webhook"]["delivered"] is True
    assert record["webhook"]["lastStatus"] == 200
    assert record["status"] == "succeeded"


def test_webhooks_give_up_after_max_attempts_and_keep_status(make_app) -> None:
    receiver = Receiver([500] * 10)
    app, _ = make_app(JOBIFY_WEBHOOK_MAX_ATTEMPTS=2)
    with serve_app(receiver.app) as url:
        response = app.test_client().post(
            "/work?fail=1", headers={**FLAG, "X-Job-Callback": url + "/hook"}
        )
        record = wait_for_webhook(app, response.get_json()["jobId"], attempts=2)
    assert len(receiver.calls) == 2
    assert receiver.calls[0]["body"]["status"] == "failed"
    assert record["status"] == "failed"
    assert record["webhook"]["attempts"] == 2
    assert record["webhook"]["delivered"] is False
    assert record["webhook"]["lastStatus"] == 500


def test_webhooks_do_not_follow_redirects(make_app) -> None:
    elsewhere = Receiver()
    app, _ = make_app()
    with serve_app(elsewhere.app) as other:
        receiver = Receiver(redirect_to=other + "/hook")
        with serve_app(receiver.app) as url:
            job_id = submit(app, url + "/hook").get_json()["jobId"]
            record = wait_for_webhook(app, job_id)
    assert record["webhook"]["attempts"] == 1
    assert record["webhook"]["lastStatus"] == 302
    assert record["webhook"]["delivered"] is False
    assert elsewhere.calls == []


def test_webhooks_operation_default_callback(make_app) -> None:
    receiver = Receiver()
    with serve_app(receiver.app) as url:
        app, jobify = make_app()

        @app.post("/hooked")
        @jobify.job(callback=url + "/hook")
        def hooked() -> t.Any:
            return {"ok": True}

        job_id = submit(app, None, "/hooked").get_json()["jobId"]
        assert receiver.done.wait(10)
        record = wait_for_webhook(app, job_id)
    assert record["webhook"]["delivered"] is True
    assert receiver.calls[0]["body"]["operation"] == "hooked"


@pytest.mark.parametrize(
    "callback",
    [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "gopher://example.com/",
        "http://user:pw@example.com/hook",
        "http://",
    ],
)
def test_webhooks_refuse_non_public_callbacks_at_submission(make_app, callback: str) -> None:
    app, _ = make_app(JOBIFY_WEBHOOK_ALLOWED_HOSTS=())
    response = submit(app, callback)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_callback"
    assert app.extensions["jobify"].store.list() == []


def test_webhooks_refused_without_secret(make_app) -> None:
    app, _ = make_app(JOBIFY_WEBHOOK_SECRET=None)
    response = submit(app, "https://example.com/hook")
    assert response.status_code == 400
    assert "JOBIFY_WEBHOOK_SECRET" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("rebound", ["127.0.0.1", "2002:a9fe:a9fe::", "::ffff:127.0.0.1",
                                     "64:ff9b::a00:1"])
def test_webhooks_recheck_address_at_delivery(
    make_app, monkeypatch: pytest.MonkeyPatch, rebound: str
) -> None:
    """DNS rebinding: public at submission, not public at delivery (also
    wrapped in IPv6): refused. Only DNS is faked, not the check."""
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34", rebound])

    def fake(host: str, *args: t.Any, **kwargs: t.Any) -> t.Any:
        if host == "rebind.example":
            address = next(answers)
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    app, _ = make_app(JOBIFY_WEBHOOK_ALLOWED_HOSTS=())
    response = submit(app, "http://rebind.example/hook")
    assert response.status_code == 202
    record = wait_for_webhook(app, response.get_json()["jobId"])
    assert record["status"] == "succeeded"
    assert record["webhook"]["attempts"] == 1
    assert record["webhook"]["delivered"] is False
    assert "not a public address" in record["webhook"]["lastError"]


def test_webhooks_verify_accepts_a_valid_signature() -> None:
    body = b'{"id":"x"}'
    assert verify(body, sign(body, SECRET, 1_000), SECRET, now=1_010) == 1_000


def test_webhooks_verify_rejects_tampered_body() -> None:
    header = sign(b'{"status":"failed"}', SECRET)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify(b'{"status":"succeeded"}', header, SECRET)


def test_webhooks_verify_rejects_wrong_secret() -> None:
    with pytest.raises(WebhookSignatureError):
        verify(b"{}", sign(b"{}", "other"), SECRET)


def test_webhooks_verify_rejects_stale_timestamp() -> None:
    header = sign(b"{}", SECRET, timestamp=1_000)
    with pytest.raises(WebhookSignatureError, match="replay"):
        verify(b"{}", header, SECRET, tolerance=300, now=1_000 + 301)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=soon,v1=abc", "t=1000"])
def test_webhooks_verify_rejects_malformed_header(header: str) -> None:
    with pytest.raises(WebhookSignatureError):
        verify(b"{}", header, SECRET)


def test_webhooks_sent_for_timed_out_jobs(make_app) -> None:
    receiver = Receiver()
    gate = threading.Event()
    with serve_app(receiver.app) as url:
        app, jobify = make_app()

        @app.post("/slow")
        @jobify.job(timeout=0.05)
        def slow() -> t.Any:
            gate.wait(10)
            return {"late": True}

        try:
            job_id = submit(app, url + "/hook", "/slow").get_json()["jobId"]
            assert receiver.done.wait(10)
            record = wait_for_webhook(app, job_id)
        finally:
            gate.set()
    assert receiver.calls[0]["body"]["status"] == "timed_out"
    assert record["status"] == "timed_out"
    assert record["webhook"]["delivered"] is True


def test_webhooks_allowed_hosts_may_be_a_string(make_app) -> None:
    app, _ = make_app(JOBIFY_WEBHOOK_ALLOWED_HOSTS="Hooks.Example, 127.0.0.1")
    settings = app.extensions["jobify"].settings
    assert settings.webhook_allowed_hosts == ("hooks.example", "127.0.0.1")


def test_webhooks_sent_even_when_the_job_expires_at_once(make_app) -> None:
    receiver = Receiver()
    with serve_app(receiver.app) as url:
        app, jobify = make_app()

        @app.post("/ephemeral")
        @jobify.job(result_ttl=0, callback=url + "/hook")
        def ephemeral() -> t.Any:
            return {"ok": True}

        job_id = submit(app, None, "/ephemeral").get_json()["jobId"]
        assert receiver.done.wait(10)
    [call] = receiver.calls
    assert call["valid"] and call["body"]["id"] == job_id
    assert call["body"]["status"] == "succeeded"


def test_webhooks_operation_secret_signs_its_own_callback_only(make_app) -> None:
    """callback_secret signs deliveries to the operation's URL; a URL the
    request names gets JOBIFY_WEBHOOK_SECRET, so it never holds a delivery
    it could replay to the operation's receiver."""
    own, other = Receiver(secret="op-secret"), Receiver(secret="op-secret")
    with serve_app(own.app) as own_url, serve_app(other.app) as other_url:
        app, jobify = make_app()

        @app.post("/hooked")
        @jobify.job(callback=own_url + "/hook", callback_secret="op-secret")
        def hooked() -> t.Any:
            return {"ok": True}

        submit(app, None, "/hooked")
        submit(app, other_url + "/hook", "/hooked")
        assert own.done.wait(10) and other.done.wait(10)
    assert own.calls[0]["valid"] is True
    assert other.calls[0]["valid"] is False  # signed with the global secret instead
    options = app.view_functions["hooked"]._jobify_options
    assert "callback_secret" not in options.to_dict() and "op-secret" not in repr(options)


def test_webhooks_callback_secret_loader_per_receiver(make_app) -> None:
    first, second = Receiver(secret="first-secret"), Receiver(secret="second-secret")
    with serve_app(first.app) as first_url, serve_app(second.app) as second_url:
        app, jobify = make_app(JOBIFY_WEBHOOK_SECRET=None)
        secrets = {first_url + "/hook": "first-secret", second_url + "/hook": b"second-secret"}
        seen: list[tuple[str, str]] = []

        @jobify.callback_secret_loader
        def receiver_secret(url: str, job: t.Any) -> t.Any:
            seen.append((url, job.operation))
            return secrets.get(url)

        assert submit(app, first_url + "/hook").status_code == 202
        assert submit(app, second_url + "/hook").status_code == 202
        refused = submit(app, "https://unknown.example/hook")  # no secret: refused first
        assert first.done.wait(10) and second.done.wait(10)
    assert first.calls[0]["valid"] and second.calls[0]["valid"]
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "invalid_callback"
    assert "secret" in refused.get_json()["error"]["message"]
    assert (first_url + "/hook", "work") in seen


@pytest.mark.parametrize("header", [
    "t=\u0661\u0662,v1=" + "0" * 64, "t=1000,v1=\u00e9" + "0" * 63, "t=1000,v1=" + "\u00b2" * 64,
    "t=1_000,v1=" + "0" * 64, "t= 1000,v1=" + "0" * 64, "t=" + "9" * 5000 + ",v1=" + "0" * 64,
    "\x00", "t=1000,v1=" + "g" * 64,
])
def test_webhooks_verify_reads_the_header_as_ascii(header: str) -> None:
    """compare_digest raised TypeError on non-ASCII text, int() read Arabic digits."""
    with pytest.raises(WebhookSignatureError):
        verify(b"{}", header, SECRET, now=1_000)
