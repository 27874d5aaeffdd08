"""Sending a job's stored response again, as the view gave it.

The replay is the stored status, headers and body, untouched by the request
that fetches it: its ``after_request`` hooks and its session saving run (Flask
always runs them) but cannot change what is sent, so a replay never carries
the fetcher's ``Set-Cookie`` or a header added twice. What the fetching
request may legitimately change is what HTTP lets a client ask of any
stored representation (RFC 9110, sections 13 and 14), handled as werkzeug
handles it for the synchronous view:

- ``If-None-Match`` / ``If-Modified-Since`` against the stored ``ETag`` and
  ``Last-Modified``: ``304 Not Modified``;
- ``Range`` when the stored response advertises ``Accept-Ranges: bytes``:
  ``206 Partial Content`` (``416`` for a range that cannot be satisfied);
- ``HEAD``: the same status and headers, no body.

Only a stored ``200`` is made conditional. The stored response of a ``HEAD``
job has no body: fetched with ``HEAD`` it is sent as stored (its
``Content-Length`` included); fetched with ``GET`` its ``Content-Length``
becomes ``0``, the length of what is sent.
"""
from __future__ import annotations

import functools
import typing as t

from flask import Response
from werkzeug.datastructures import Headers

from .errors import PreconditionFailed
from .models import StoredResponse
from .runner import freeze_response

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def replay_response(
    stored: StoredResponse,
    environ: WSGIEnvironment,
    *,
    response_class: type[Response] = Response,
    head_only: bool = False,
) -> Response:
    """The response that sends ``stored`` to the client of ``environ``.

    :param response_class: the app's ``response_class``, so that Flask keeps
        the object it is given.
    :param head_only: ``stored`` answers a ``HEAD`` request (it has no body).
    :raises werkzeug.exceptions.RequestedRangeNotSatisfiable: for a
        ``Range`` the stored body cannot satisfy.
    :raises PreconditionFailed: (412) for an ``If-Match`` or
        ``If-Unmodified-Since`` the stored response fails (RFC 9110, 13.1).
    """
    headers = Headers(stored.headers)
    if head_only and environ.get("REQUEST_METHOD") != "HEAD":
        headers["Content-Length"] = "0"
    source = Response(stored.body, status=stored.status_line)
    source.headers = headers  # as stored: no Content-Length or Content-Type of its own
    source.automatically_set_content_length = False  # keep the stored framing
    if stored.status == 200:
        accept_ranges = headers.get("Accept-Ranges", "").strip().lower() == "bytes"
        source.make_conditional(environ, accept_ranges=accept_ranges,
                                complete_length=len(stored.body))
        if "date" not in {name.lower() for name, _ in stored.headers}:
            del source.headers["Date"]  # added by make_conditional, not sent by the view
        if source.status_code == 412:  # If-Match / If-Unmodified-Since failed
            raise PreconditionFailed(
                "The stored response does not match If-Match or If-Unmodified-Since.")
    sent = freeze_response(source, environ)
    return _frozen_class(response_class)(sent)


class _Frozen(Response):
    """A response that sends what it was built with, whatever is done to
    it afterwards (``after_request`` hooks, ``session`` saving)."""

    def __init__(self, sent: StoredResponse) -> None:
        super().__init__(sent.body, status=sent.status_line)
        self.headers = Headers(sent.headers)
        self._sent = sent
        self._status_line = sent.status_line

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> t.Iterable[bytes]:
        sent = self._sent
        start_response(self._status_line, list(sent.headers))
        return [sent.body] if sent.body else []


def _frozen_class(response_class: type[Response]) -> type[_Frozen]:
    """:class:`_Frozen` as a subclass of the app's ``response_class``
    (Flask converts any other class, which would lose the freeze)."""
    if issubclass(_Frozen, response_class):
        return _Frozen
    return _frozen_subclass(t.cast(t.Hashable, response_class))


@functools.cache
def _frozen_subclass(response_class: t.Any) -> type[_Frozen]:
    return t.cast(type[_Frozen], type("FrozenResponse", (_Frozen, response_class), {}))


__all__ = [
    "replay_response",
]
