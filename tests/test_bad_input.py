"""Malformed requests over raw sockets to a real gunicorn: every answer the
app gives is a 4xx JSON error (or, where an RFC says to ignore what cannot
be read, the normal answer), never a 500 or a 503, and the server log
shows no traceback.

Requests are written byte by byte (no HTTP client would send most of
them). Some never reach the app: gunicorn itself refuses, with its own
``400 Bad Request`` (or ``431``) and an HTML body, a request line with
bytes outside ASCII or with control characters, header values with
control characters other than tab, header names that are not tokens,
obsolete line folding, lower-case methods, unknown HTTP versions, and
header fields over 8190 bytes. Those cases are marked ``GUNICORN`` in the
table and checked to be gunicorn's own answer, so that a change in where
the line is drawn shows up here.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import typing as t

from servers import run_gunicorn

HERE = os.path.dirname(os.path.abspath(__file__))
APP = "APP"
GUNICORN = "GUNICORN"
UNKNOWN = b"a" * 22  # shaped like a job id, no such job
CRLF = b"\r\n"


@dataclasses.dataclass(frozen=True)
class Case:
    """One malformed request and the answer it must get."""

    name: str
    raw: bytes
    status: int
    by: str = APP
    #: the ``error.code`` expected in a JSON error, when it is worth pinning
    code: str | None = None


def request(method: str, target: bytes, headers: t.Sequence[tuple[bytes, bytes]] = (),
            body: bytes = b"") -> bytes:
    """HTTP/1.1 request bytes, as written, with ``Content-Length`` for a body
    unless the headers frame it themselves."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1",
             b"Connection: close", *(name + b": " + value for name, value in headers)]
    framed = {name.lower() for name, _ in headers} & {b"content-length", b"transfer-encoding"}
    if body and not framed:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return CRLF.join(lines) + CRLF + CRLF + body


def flagged(target: bytes, *headers: tuple[bytes, bytes], method: str = "GET",
            body: bytes = b"") -> bytes:
    return request(method, target, [(b"X-Job-Flag", b"ON"), *headers], body)


def callback(url: bytes) -> bytes:
    return flagged(b"/text", (b"X-Job-Callback", url))


JSON = (b"Content-Type", b"application/json")
CHUNKED = (b"Transfer-Encoding", b"chunked")
MULTIPART = (b"Content-Type", b"multipart/form-data; boundary=xyz")
PART = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc'

CASES = [
    # -- Prefer (RFC 7240: what cannot be read is ignored) -----------------
    Case("prefer-wait-superscript-no-job", request("GET", b"/text", [(b"Prefer", b"wait=\xb2")]), 201),
    Case("prefer-wait-superscript", request("GET", b"/text", [(b"Prefer", b"respond-async, wait=\xb2")]), 202),
    Case("prefer-wait-arabic-digit", request("GET", b"/text", [(b"Prefer", b"respond-async, wait=\xd9\xa1")]), 202),
    Case("prefer-token-latin1", request("GET", b"/text", [(b"Prefer", b"respond-async\xff")]), 201),
    Case("prefer-only-high-bytes", request("GET", b"/text", [(b"Prefer", b"\xff\xfe=\xfd")]), 201),
    Case("prefer-wait-5000-digits", request("GET", b"/text", [(b"Prefer", b"respond-async, wait=" + b"9" * 5000)]), 201),
    Case("prefer-repeated", request("GET", b"/text", [(b"Prefer", b"wait=\xb2"), (b"Prefer", b"respond-async")]), 202),
    Case("prefer-control-char", request("GET", b"/text", [(b"Prefer", b"respond-async\x01")]), 400, GUNICORN),
    Case("prefer-del", request("GET", b"/text", [(b"Prefer", b"respond-async\x7f")]), 400, GUNICORN),
    # -- X-Job-Flag --------------------------------------------------------
    Case("flag-high-byte", request("GET", b"/text", [(b"X-Job-Flag", b"ON\xb2")]), 400, code="invalid_job_flag"),
    Case("flag-latin1-o", request("GET", b"/text", [(b"X-Job-Flag", b"\xd6N")]), 400, code="invalid_job_flag"),
    Case("flag-repeated-conflict", request("GET", b"/text", [(b"X-Job-Flag", b"ON"), (b"X-Job-Flag", b"OFF")]), 400, code="invalid_job_flag"),
    Case("flag-repeated-same", request("GET", b"/text", [(b"X-Job-Flag", b"ON"), (b"X-Job-Flag", b"ON")]), 400, code="invalid_job_flag"),
    Case("flag-empty", request("GET", b"/text", [(b"X-Job-Flag", b"")]), 400, code="invalid_job_flag"),
    Case("flag-tab-inside", request("GET", b"/text", [(b"X-Job-Flag", b"O\tN")]), 400, code="invalid_job_flag"),
    Case("flag-6000-bytes", request("GET", b"/text", [(b"X-Job-Flag", b"ON" * 3000)]), 400, code="invalid_job_flag"),
    Case("flag-nul", request("GET", b"/text", [(b"X-Job-Flag", b"O\x00N")]), 400, GUNICORN),
    Case("flag-9000-bytes", request("GET", b"/text", [(b"X-Job-Flag", b"A" * 9000)]), 431, GUNICORN),
    Case("flag-obs-fold", request("GET", b"/text", [(b"X-Job-Flag", b"O\r\n N")]), 400, GUNICORN),
    Case("header-name-high-byte", request("GET", b"/text", [(b"X-Job\xffFlag", b"ON")]), 400, GUNICORN),
    # -- Idempotency-Key ---------------------------------------------------
    Case("key-latin1", flagged(b"/text", (b"Idempotency-Key", b"caf\xe9")), 400, code="invalid_idempotency_key"),
    Case("key-repeated", flagged(b"/text", (b"Idempotency-Key", b"k1"), (b"Idempotency-Key", b"k2")), 400, code="invalid_idempotency_key"),
    Case("key-300-chars", flagged(b"/text", (b"Idempotency-Key", b"k" * 300)), 400, code="invalid_idempotency_key"),
    Case("key-empty", flagged(b"/text", (b"Idempotency-Key", b"")), 400, code="invalid_idempotency_key"),
    Case("key-control-char", flagged(b"/text", (b"Idempotency-Key", b"a\x01b")), 400, GUNICORN),
    # -- X-Job-Callback ----------------------------------------------------
    Case("callback-empty-label", callback(b"http://a..b/"), 400, code="invalid_callback"),
    Case("callback-64-char-label", callback(b"http://" + b"a" * 64 + b".example/"), 400, code="invalid_callback"),
    Case("callback-latin1-host", callback(b"http://ex\xe4mple.com/"), 400, code="invalid_callback"),
    Case("callback-3000-chars", callback(b"http://example.com/" + b"p" * 3000), 400, code="invalid_callback"),
    Case("callback-6to4-metadata", callback(b"http://[2002:a9fe:a9fe::]/"), 400, code="invalid_callback"),
    Case("callback-ipv4-mapped", callback(b"http://[::ffff:169.254.169.254]/"), 400, code="invalid_callback"),
    Case("callback-nat64-loopback", callback(b"http://[64:ff9b::7f00:1]/"), 400, code="invalid_callback"),
    Case("callback-teredo", callback(b"http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/"), 400, code="invalid_callback"),
    Case("callback-decimal-ipv4", callback(b"http://2130706433/"), 400, code="invalid_callback"),
    Case("callback-hex-ipv4", callback(b"http://0x7f.1/"), 400, code="invalid_callback"),
    Case("callback-octal-ipv4", callback(b"http://017700000001/"), 400, code="invalid_callback"),
    Case("callback-trailing-dot", callback(b"http://localhost./"), 400, code="invalid_callback"),
    Case("callback-port-99999", callback(b"http://example.com:99999/"), 400, code="invalid_callback"),
    Case("callback-bad-ipv6", callback(b"http://[::1/"), 400, code="invalid_callback"),
    Case("callback-file-scheme", callback(b"file:///etc/passwd"), 400, code="invalid_callback"),
    Case("callback-repeated", flagged(b"/text", (b"X-Job-Callback", b"http://127.0.0.1/"),
                                      (b"X-Job-Callback", b"http://10.0.0.1/")), 400, code="invalid_callback"),
    # -- job ids in the path -------------------------------------------------
    Case("id-trailing-newline", request("GET", b"/jobs/" + UNKNOWN + b"%0A"), 400, code="invalid_job_id"),
    Case("id-trailing-newline-result", request("GET", b"/jobs/" + UNKNOWN + b"%0A/result"), 400, code="invalid_job_id"),
    Case("id-trailing-newline-delete", request("DELETE", b"/jobs/" + UNKNOWN + b"%0A"), 400, code="invalid_job_id"),
    Case("id-leading-newline", request("GET", b"/jobs/%0A" + b"a" * 21), 400, code="invalid_job_id"),
    Case("id-dot-dot", request("GET", b"/jobs/.."), 400, code="invalid_job_id"),
    Case("id-23-chars", request("GET", b"/jobs/" + b"a" * 23), 400, code="invalid_job_id"),
    Case("id-21-chars", request("GET", b"/jobs/" + b"a" * 21), 400, code="invalid_job_id"),
    Case("id-nul", request("GET", b"/jobs/" + b"a" * 21 + b"%00"), 400, code="invalid_job_id"),
    Case("id-unicode", request("GET", b"/jobs/" + b"a" * 21 + b"%C3%A9"), 400, code="invalid_job_id"),
    Case("id-bad-percent", request("GET", b"/jobs/%ZZ" + b"a" * 19), 400, code="invalid_job_id"),
    Case("id-absolute-form", request("GET", b"http://127.0.0.1/jobs/" + UNKNOWN + b"%0A"), 400, code="invalid_job_id"),
    Case("id-unknown", request("GET", b"/jobs/" + UNKNOWN), 404, code="job_not_found"),
    Case("result-trailing-newline", request("GET", b"/jobs/" + UNKNOWN + b"/result%0A"), 404, code="not_found"),
    Case("id-raw-utf8", request("GET", b"/jobs/\xc3\xa9" + b"a" * 20), 400, GUNICORN),
    Case("id-raw-control", request("GET", b"/jobs/a\x01" + b"a" * 20), 400, GUNICORN),
    # -- query values ----------------------------------------------------------
    *(Case(f"wait-{label}", request("GET", b"/jobs/" + UNKNOWN + b"?wait=" + value), 422, code="invalid_argument")
      for label, value in [("nan", b"nan"), ("inf", b"inf"), ("1e400", b"1e400"), ("negative", b"-1"),
                           ("superscript", b"%C2%B2"), ("400-digits", b"9" * 400), ("bad-percent", b"%ZZ")]),
    *(Case(f"version-{label}", request("GET", b"/jobs/" + UNKNOWN + b"?version=" + value), 422, code="invalid_argument")
      for label, value in [("2^63", b"9223372036854775808"), ("negative", b"-5"), ("arabic", b"%D9%A1"),
                           ("3000-digits", b"9" * 3000), ("float", b"1.0")]),
    *(Case(f"limit-{label}", request("GET", b"/jobs?limit=" + value), 422, code="invalid_argument")
      for label, value in [("nan", b"nan"), ("arabic", b"%D9%A1"), ("huge", b"9" * 30), ("negative", b"-3"),
                           ("space", b"%205"), ("underscore", b"5_0")]),
    Case("status-high-byte", request("GET", b"/jobs?status=%FF"), 422, code="invalid_argument"),
    Case("status-nul", request("GET", b"/jobs?status=pending%00"), 422, code="invalid_argument"),
    Case("operation-201-chars", request("GET", b"/jobs?operation=" + b"o" * 201), 422, code="invalid_argument"),
    Case("cursor-nested", request("GET", b"/jobs?cursor=" + b"W1tb" * 750), 422, code="invalid_argument"),
    Case("cursor-unsigned-nan", request("GET", b"/jobs?cursor=W05hTiwiYWFhYWFhYWFhYWFhYWFhYWFhYWFhYSJd"), 422, code="invalid_argument"),
    Case("cursor-bad-percent", request("GET", b"/jobs?cursor=%ZZ"), 422, code="invalid_argument"),
    Case("cursor-600-chars", request("GET", b"/jobs?cursor=" + b"A" * 600), 422, code="invalid_argument"),
    Case("query-raw-high-byte", request("GET", b"/jobs?limit=\xff"), 400, GUNICORN),
    # -- bodies ------------------------------------------------------------------
    Case("json-invalid", request("POST", b"/json", [JSON], b"{nope"), 400, code="bad_request"),
    Case("json-invalid-utf8", request("POST", b"/json", [JSON], b'"\xff"'), 400, code="bad_request"),
    Case("json-wrong-content-type", request("POST", b"/json", [(b"Content-Type", b"text/plain")], b"{}"), 415),
    Case("json-invalid-flagged", flagged(b"/json", JSON, method="POST", body=b"{nope"), 202),
    Case("json-chunked-bad-size-flagged", flagged(b"/json", JSON, CHUNKED, method="POST",
                                                  body=b"zz\r\n{}\r\n0\r\n\r\n"), 400, code="unreadable_body"),
    Case("json-chunked-cut-short-flagged", flagged(b"/json", JSON, CHUNKED, method="POST",
                                                   body=b"5\r\n{}"), 400, code="unreadable_body"),
    Case("multipart-truncated", request("POST", b"/upload", [MULTIPART], PART), 400, code="bad_request"),
    Case("multipart-no-boundary", request("POST", b"/upload", [(b"Content-Type", b"multipart/form-data")], b"abc"), 400),
    Case("multipart-truncated-flagged", flagged(b"/upload", MULTIPART, method="POST", body=PART), 202),
    Case("form-bad-percent-flagged", flagged(b"/json", (b"Content-Type", b"application/x-www-form-urlencoded"),
                                             method="POST", body=b"a=%ZZ&b=\xff"), 202),
    Case("content-length-abc", request("POST", b"/json", [JSON, (b"Content-Length", b"abc")], b"{}"), 400, GUNICORN),
    Case("content-length-negative", request("POST", b"/json", [JSON, (b"Content-Length", b"-1")], b"{}"), 400, GUNICORN),
    # -- the stored response of a finished job ({job}: a /binary job) ----------
    Case("result-range-huge", request("GET", b"/jobs/{job}/result", [(b"Range", b"bytes=99999999999999999999-")]), 416),
    # werkzeug answers a Range it cannot parse with 416, as for the view itself
    Case("result-range-latin1", request("GET", b"/jobs/{job}/result", [(b"Range", b"bytes=\xb2-5")]), 416),
    Case("result-if-none-match-latin1", request("GET", b"/jobs/{job}/result", [(b"If-None-Match", b'"\xff"')]), 200),
    Case("result-if-modified-since-garbage", request("GET", b"/jobs/{job}/result", [(b"If-Modified-Since", b"\xb2\xb2")]), 200),
    # -- request lines gunicorn refuses -------------------------------------------
    Case("method-lower-case", request("get", b"/text"), 400, GUNICORN),
    Case("http-version-9.9", b"GET /jobs HTTP/9.9\r\nHost: x\r\n\r\n", 400, GUNICORN),
    Case("target-with-space", request("GET", b"/jobs/a a"), 400, GUNICORN),
]


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``, read the answer to the end: status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(CRLF + CRLF)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def finished_binary_job(url: str) -> str:
    port = int(url.rsplit(":", 1)[1])
    status, _, body = exchange(port, flagged(b"/binary"))
    assert status == 202
    job_id = json.loads(body)["jobId"]
    for _ in range(100):
        _, _, record = exchange(port, request("GET", f"/jobs/{job_id}?wait=5".encode()))
        if json.loads(record)["status"] == "succeeded":
            return job_id
    raise AssertionError("the /binary job did not finish")


def test_bad_input_table_is_large_and_named_once() -> None:
    assert len(CASES) >= 60
    assert len({case.name for case in CASES}) == len(CASES)


def test_bad_input_never_a_5xx_over_raw_sockets(tmp_path: t.Any) -> None:
    log = tmp_path / "gunicorn.log"
    started = time.monotonic()
    with run_gunicorn("bad_input_app:create_app()", workers=1, threads=4,
                      extra_args=["--pythonpath", HERE, "--error-logfile", str(log),
                                  "--capture-output", "--log-level", "warning"]) as url:
        port = int(url.rsplit(":", 1)[1])
        job_id = finished_binary_job(url).encode()
        failures: list[str] = []
        for case in CASES:
            status, headers, body = exchange(port, case.raw.replace(b"{job}", job_id))
            problem = check(case, status, headers, body)
            if problem:
                failures.append(f"{case.name}: {problem} (got {status} {body[:120]!r})")
    text = log.read_text()
    assert not failures, "\n".join(failures)
    assert "Traceback" not in text and "ERROR in app" not in text, text[-3000:]
    refused = sum(case.by == GUNICORN for case in CASES)
    assert text.count("Invalid request from ip=") >= refused
    assert time.monotonic() - started < 60


def check(case: Case, status: int, headers: dict[str, str], body: bytes) -> str | None:
    """What is wrong with this answer to ``case``, or ``None``."""
    if status != case.status:
        return f"expected {case.status}"
    if b"Traceback" in body:
        return "a traceback in the body"
    content_type = headers.get("content-type", "")
    if case.by == GUNICORN:
        # gunicorn's own refusal: an HTML page titled with its reason phrase
        if not (content_type.startswith("text/html") and body.lstrip().startswith(b"<html>")):
            return "expected gunicorn's own HTML error page"
        return None
    if status < 400:
        return None
    if content_type != "application/json":
        return f"expected a JSON error, not {content_type!r}"
    error = json.loads(body).get("error")
    if not isinstance(error, dict) or not {"code", "message"} <= set(error):
        return "expected {'error': {'code', 'message'}}"
    if case.code is not None and error["code"] != case.code:
        return f"expected error code {case.code!r}, not {error['code']!r}"
    return None


