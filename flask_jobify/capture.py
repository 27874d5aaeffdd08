"""Snapshots of requests, so a job can run after its request has ended.

Flask's request object dies with its request: its body stream is closed
and its uploaded files are deleted. A job therefore takes a copy of what
it needs (the WSGI environ's plain values and the whole body) and runs the
view in a new request context built from that copy. Form fields and
uploads are parsed again from the copied body, so ``request.form``,
``request.files`` and ``request.get_json()`` work inside the job as they
do in the view. ``g`` is not copied: the job's request starts with a
fresh ``g`` and runs the app's ``before_request`` hooks again.

A body larger than ``JOBIFY_SPOOL_THRESHOLD`` bytes is kept in an anonymous
temporary file (:class:`tempfile.SpooledTemporaryFile`), not in memory,
until the job no longer needs it. Reading it honours Flask's
``MAX_CONTENT_LENGTH``.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import logging
import sys
import tempfile
import threading
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


#: Bytes read from a request's stream at a time while it is captured.
_CHUNK = 64 * 1024


class CapturedBody:
    """A request's body, kept for a job: in memory up to a threshold, then
    in an anonymous temporary file that the OS deletes when it is closed
    or garbage-collected (when the job no longer needs it).

    Thread-safe: each :meth:`reader` reads from its own position, so a run
    and a thread hashing or sending the body never disturb each other.
    """

    def __init__(self, file: t.IO[bytes], size: int) -> None:
        self._file = file
        self._lock = threading.Lock()
        #: Length in bytes.
        self.size = size

    @classmethod
    def from_bytes(cls, data: bytes) -> CapturedBody:
        return cls(io.BytesIO(data), len(data))

    @classmethod
    def spool(cls, stream: t.IO[bytes], threshold: int) -> CapturedBody:
        """Read ``stream`` to its end, keeping at most ``threshold`` bytes in
        memory.

        :raises werkzeug.exceptions.RequestEntityTooLarge: if the stream is
            longer than Flask's ``MAX_CONTENT_LENGTH`` (werkzeug's
            :func:`~werkzeug.wsgi.get_input_stream` enforces it).
        """
        # The file outlives this call: the body closes it (or the collector does).
        # max_size=0 would mean "never roll over": a threshold of 0 is a file.
        file: t.Any = (
            tempfile.SpooledTemporaryFile(max_size=threshold, prefix="jobify-body-")  # noqa: SIM115
            if threshold > 0 else tempfile.TemporaryFile(prefix="jobify-body-"))  # noqa: SIM115
        size = 0
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            file.write(chunk)
            size += len(chunk)
        return cls(t.cast(t.IO[bytes], file), size)

    @property
    def in_memory(self) -> bool:
        """Whether the body is held in memory (else in a temporary file)."""
        rolled = getattr(self._file, "_rolled", None)
        return not rolled if rolled is not None else isinstance(self._file, io.BytesIO)

    def reader(self) -> t.BinaryIO:
        """A new stream over the whole body, from its first byte."""
        return t.cast(t.BinaryIO, io.BufferedReader(_Reader(self)))

    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes (fewer at the end) from ``offset``."""
        with self._lock:
            self._file.seek(offset)
            return self._file.read(size)

    def getvalue(self) -> bytes:
        """The whole body in memory: only for bodies that leave the process
        (a broker message, a saved request), which are bounded."""
        return self.read_at(0, self.size)

    def sha256(self) -> t.Any:
        """A SHA-256 hash object of the body, read a chunk at a time."""
        digest = hashlib.sha256()
        for offset in range(0, self.size, _CHUNK):
            digest.update(self.read_at(offset, _CHUNK))
        return digest

    def close(self) -> None:
        self._file.close()

    def __eq__(self, other: object) -> bool:
        """Equal bodies have the same bytes, wherever they are kept."""
        if not isinstance(other, CapturedBody):
            return NotImplemented
        return self.size == other.size and all(
            self.read_at(offset, _CHUNK) == other.read_at(offset, _CHUNK)
            for offset in range(0, self.size, _CHUNK))

    __hash__ = None  # type: ignore[assignment]  # mutable, like the file it holds

    def __repr__(self) -> str:
        where = "memory" if self.in_memory else "a temporary file"
        return f"<CapturedBody {self.size} bytes in {where}>"


class _Reader(io.RawIOBase):
    """An independent read position over a :class:`CapturedBody`."""

    def __init__(self, body: CapturedBody) -> None:
        self._body = body
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        data = self._body.read_at(self._offset, len(buffer))
        buffer[: len(data)] = data
        self._offset += len(data)
        return len(data)


@dataclasses.dataclass(frozen=True)
class CapturedRequest:
    """The parts of a request a job needs, with nothing tied to the socket.

    :param environ: the WSGI environ's plain values (CGI variables, headers).
    :param body: the body: a :class:`CapturedBody`, or ``bytes``, which
        become one.
    """

    environ: dict[str, str]
    body: CapturedBody

    def __post_init__(self) -> None:
        if isinstance(self.body, (bytes, bytearray)):
            object.__setattr__(self, "body", CapturedBody.from_bytes(bytes(self.body)))

    def to_environ(self) -> dict[str, t.Any]:
        """Build a fresh WSGI environ that replays the captured request."""
        environ: dict[str, t.Any] = dict(self.environ)
        environ.update(
            {
                "wsgi.input": self.body.reader(),
                "wsgi.errors": sys.stderr,
                "wsgi.version": (1, 0),
                "wsgi.multithread": True,
                "wsgi.multiprocess": True,
                "wsgi.run_once": False,
                "CONTENT_LENGTH": str(self.body.size),
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
        return {"environ": self.environ,
                "body": base64.b64encode(self.body.getvalue()).decode()}

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> CapturedRequest:
        body = CapturedBody.from_bytes(base64.b64decode(data["body"]))
        return cls(dict(data["environ"]), body)


def capture_request(request: Request, *, spool_threshold: int = 1024 * 1024) -> CapturedRequest:
    """Snapshot ``request``: plain environ values and the whole body.

    If something (an authentication hook, say) already parsed the form, the
    body stream has been consumed; the form fields and files are then
    encoded again into an equivalent body. A body read here past
    ``spool_threshold`` bytes goes to a temporary file.

    :raises werkzeug.exceptions.RequestEntityTooLarge: for a body longer
        than Flask's ``MAX_CONTENT_LENGTH``.
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
    cached: bytes | None = getattr(request, "_cached_data", None)
    if _form_was_parsed(request):
        data, content_type = _encode_parsed_form(request)
        if content_type:
            environ["CONTENT_TYPE"] = content_type
        body = CapturedBody.from_bytes(data)
    elif cached is not None:
        body = CapturedBody.from_bytes(cached)
    else:
        try:
            body = CapturedBody.spool(request.stream, spool_threshold)
        except HTTPException:  # MAX_CONTENT_LENGTH, werkzeug's ClientDisconnected
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


__all__ = [
    "CapturedBody", "CapturedRequest", "capture_request",
]
