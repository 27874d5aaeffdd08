"""Capturing a request: a body the server cannot read is a 400, not a 500."""
from __future__ import annotations

import io
import typing as t

import pytest
from flask import Request
from werkzeug.test import EnvironBuilder

from flask_jobify.capture import capture_request
from flask_jobify.errors import UnreadableBody


class ParseException(Exception):
    """Like gunicorn's ``InvalidChunkSize``: not an ``OSError``."""


class BrokenChunks(io.RawIOBase):
    """A WSGI input as gunicorn's for a broken chunked body: reading raises
    ``NoMoreData`` (an ``OSError``) or ``InvalidChunkSize``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        raise self.error


@pytest.mark.parametrize("error", [OSError("No more data"), ParseException("Invalid chunk size")])
@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; boundary=x"])
def test_capture_unreadable_body_is_unreadable_body(content_type: str, error: Exception) -> None:
    environ = EnvironBuilder(method="POST", path="/json", content_type=content_type).get_environ()
    environ.update({"wsgi.input": BrokenChunks(error), "CONTENT_LENGTH": "",
                    "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True})
    with pytest.raises(UnreadableBody) as raised:
        capture_request(Request(environ))
    assert raised.value.code == 400


def test_capture_keeps_a_readable_body() -> None:
    environ = EnvironBuilder(method="POST", path="/json", data=b'{"a": 1}',
                             content_type="application/json").get_environ()
    assert capture_request(Request(environ)).body.getvalue() == b'{"a": 1}'
