"""Snapshots of requests, so a job can run after its request has ended.

Flask's request object dies with its request: its body stream is closed
and its uploaded files are deleted. A job therefore takes a copy of what
it needs (the WSGI environ's plain values and the whole body) and runs the
view in a new request context built from that copy. Form fields and
uploads are parsed again from the copied body, so ``request.form``,
``request.files`` and ``request.get_json()`` work inside the job as they
do in the view. ``g`` is not copied: the job's request starts with a
fresh ``g`` and runs the app's ``before_request`` hooks again.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import logging
import sys
import typing as t
from urllib.parse import urlencode

from flask import Request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.test import encode_multipart

from .errors import UnreadableBody

logger = logging.getLogger("flask_jobify")

#: Environ keys kept besides CGI variables (upper-case keys).
_KEEP_KEYS = frozenset({"wsgi.url_scheme"})
#: Environ keys dropped even though they are plain strings: the body's
#: framing is recomputed from the copied body.
_DROP_KEYS = frozenset({"HTTP_TRANSFER_ENCODING", "CONTENT_LENGTH"})


@dataclasses.dataclass(frozen=True)
class CapturedRequest:
    """The parts of a request a job needs, with nothing tied to the socket."""

    environ: dict[str, str]
    body: bytes

    def to_environ(self) -> dict[str, t.Any]:
        """Build a fresh WSGI environ that replays the captured request."""
        environ: dict[str, t.Any] = dict(self.environ)
        environ.update(
            {
                "wsgi.input": io.BytesIO(self.body),
                "wsgi.errors": sys.stderr,
                "wsgi.version": (1, 0),
                "wsgi.multithread": True,
                "wsgi.multiprocess": True,
                "wsgi.run_once": False,
                "CONTENT_LENGTH": str(len(self.body)),
            }
        )
        return environ

    def without_headers(self, names: t.Iterable[str]) -> CapturedRequest:
        """Return a copy without the headers ``names`` (case-insensitive)."""
        drop = {"HTTP_" + name.upper().replace("-", "_") for name in names}
        environ = {k: v for k, v in self.environ.items() if k not in drop}
        return dataclasses.replace(self, environ=environ)

    def with_headers(self, **headers: str | None) -> CapturedRequest:
        """Return a copy with headers set, or removed where the value is
        ``None``. Underscores in names become dashes:
        ``with_headers(Authorization="Bearer ...", X_Api_Key=None)``."""
        environ = dict(self.environ)
        for name, value in headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                key = key[5:]
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        return dataclasses.replace(self, environ=environ)

    def to_dict(self) -> dict[str, t.Any]:
        """A JSON-compatible form, for handing the request to another process."""
        return {"environ": self.environ, "body": base64.b64encode(self.body).decode()}

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> CapturedRequest:
        return cls(dict(data["environ"]), base64.b64decode(data["body"]))


def capture_request(request: Request) -> CapturedRequest:
    """Snapshot ``request``: plain environ values and the whole body.

    If something (an authentication hook, say) already parsed the form, the
    body stream has been consumed; the form fields and files are then
    encoded again into an equivalent body.

    :raises UnreadableBody: (400) if the server cannot read the body in
        full. Servers raise their own exceptions for a broken chunked
        encoding or a body cut short: gunicorn ``NoMoreData`` (an
        ``OSError``) and ``InvalidChunkSize`` (a plain ``Exception``), so
        any exception but an ``HTTPException`` counts.
    """
    environ = {
        key: value
        for key, value in request.environ.items()
        if isinstance(value, str)
        and (key.isupper() or key in _KEEP_KEYS)
        and key not in _DROP_KEYS
    }
    if _form_was_parsed(request):
        body, content_type = _encode_parsed_form(request)
        if content_type:
            environ["CONTENT_TYPE"] = content_type
    else:
        try:
            body = request.get_data(cache=True)
        except HTTPException:  # werkzeug's ClientDisconnected: already a 400
            raise
        except Exception as exc:  # noqa: BLE001 - the server's own; gunicorn's are not all OSError
            logger.warning("Could not read the body of a request to run as a job: %s: %s",
                           type(exc).__name__, exc)
            raise UnreadableBody() from None
    return CapturedRequest(environ, body)


def _form_was_parsed(request: Request) -> bool:
    # ``form`` and ``files`` are cached properties: parsed once, then kept in
    # the instance's __dict__. Parsing reads the stream unless the raw data
    # was cached first, in which case get_data() still has it.
    parsed = "form" in request.__dict__ or "files" in request.__dict__
    return parsed and getattr(request, "_cached_data", None) is None and bool(
        request.form or request.files
    )


def _encode_parsed_form(request: Request) -> tuple[bytes, str | None]:
    if request.mimetype == "multipart/form-data":
        values: MultiDict[str, t.Any] = MultiDict(request.form.items(multi=True))
        for name, upload in request.files.items(multi=True):
            upload.stream.seek(0)
            values.add(name, upload)
        boundary, body = encode_multipart(values)
        for upload in request.files.values():
            upload.stream.seek(0)
        return body, f"multipart/form-data; boundary={boundary}"
    body = urlencode(list(request.form.items(multi=True))).encode()
    return body, "application/x-www-form-urlencoded"
