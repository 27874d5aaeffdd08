"""List cursors: signed, typed, checked before any store sees them."""
from __future__ import annotations

import base64
import typing as t
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from flask_jobify.cursor import CURSOR_SALT, PUBLIC_KEY, decode_cursor, encode_cursor
from flask_jobify.errors import InvalidArgument
from flask_jobify.models import Job, new_job_id

KEYS = ["app-secret"]


def forge(payload: t.Any, key: str | bytes = KEYS[0]) -> str:
    """A cursor carrying ``payload``, signed as the app would sign it."""
    return URLSafeSerializer(key, salt=CURSOR_SALT).dumps(payload)


def forge_raw(raw: bytes, key: str | bytes = KEYS[0]) -> str:
    """A signed cursor whose payload is the JSON text ``raw`` (zlib-compressed,
    as itsdangerous does for long payloads), for what ``json.dumps`` cannot write."""
    serializer = URLSafeSerializer(key, salt=CURSOR_SALT)
    payload = b"." + base64.urlsafe_b64encode(zlib.compress(raw)).rstrip(b"=")
    return serializer.make_signer().sign(payload).decode()


def nested(depth: int) -> str:
    """A validly signed cursor of ``depth`` nested lists."""
    return forge_raw(b"[" * depth + b"]" * depth)


def test_cursor_round_trip_and_rotation() -> None:
    job = Job(id=new_job_id(), operation="op", method="GET", path="/")
    cursor = encode_cursor(job, KEYS)
    assert decode_cursor(cursor, KEYS) == (job.created_at, job.id)
    assert decode_cursor(cursor, ["new-secret", *KEYS]) == (job.created_at, job.id)
    assert cursor.isascii() and len(cursor) < 100


def test_cursor_without_a_secret_uses_the_public_key() -> None:
    job = Job(id=new_job_id(), operation="op", method="GET", path="/")
    assert decode_cursor(encode_cursor(job, []), []) == (job.created_at, job.id)
    assert decode_cursor(forge([1.5, job.id], PUBLIC_KEY), []) == (1.5, job.id)


@pytest.mark.parametrize("cursor", [
    forge([1.0, new_job_id()], "another-app"),  # signed by someone else
    forge([1.0, new_job_id()]) + "x",  # tampered
    forge([1.0, new_job_id()])[:-5],  # truncated
    forge([float("nan"), new_job_id()]), forge([float("inf"), new_job_id()]),
    forge([True, new_job_id()]), forge(["1.0", new_job_id()]), forge([None, new_job_id()]),
    forge([1.0, "x"]), forge([1.0, new_job_id() + "\n"]), forge([1.0, 7]), forge([1.0, [1]]),
    forge([1.0]), forge([1.0, new_job_id(), 3]), forge({"a": 1}), forge(5), forge("text"),
    nested(100_000),  # a RecursionError in json, before
    "\u00e9" * 10, "A" * 600, "", ".", "..",
])
def test_cursor_anything_else_is_invalid_argument(cursor: str) -> None:
    with pytest.raises(InvalidArgument):
        decode_cursor(cursor, KEYS)


@pytest.mark.parametrize("raw", [b'[NaN, "aaaaaaaaaaaaaaaaaaaaaa"]', b'[1e999, "x"]',
                                 # OverflowError:
                                 b"[1" + b"0" * 309 + b', "aaaaaaaaaaaaaaaaaaaaaa"]',
                                 b'[1.0, "' + b"\\ud800" * 22 + b'"]',
                                 b'[[[[1]]], "aaaaaaaaaaaaaaaaaaaaaa"]', b"[" * 5000])
def test_cursor_forged_without_secret_is_422_on_every_store(app: t.Any, raw: bytes) -> None:
    """NaN was a 503 on Redis and a lone surrogate a 500 on SQLite: with no
    SECRET_KEY anyone can sign a cursor, so its contents are checked."""
    cursor = forge_raw(raw, PUBLIC_KEY)
    response = app.test_client().get("/jobs", query_string={"cursor": cursor})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_argument"


@pytest.mark.stores("memory")
def test_cursor_pages_are_signed_with_the_app_secret(make_app: t.Any) -> None:
    app = make_app(SECRET_KEY="one")
    client = app.test_client()
    for _ in range(3):
        client.get("/text", headers={"X-Job-Flag": "ON"})
    cursor = client.get("/jobs?limit=1").get_json()["nextCursor"]
    assert client.get("/jobs", query_string={"limit": 1, "cursor": cursor}).status_code == 200
    other = make_app(SECRET_KEY="two")
    assert other.test_client().get("/jobs", query_string={"cursor": cursor}).status_code == 422


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.binary(max_size=60).map(
    lambda raw: forge_raw(raw, PUBLIC_KEY))))
def test_cursor_fuzz_decodes_or_is_invalid_argument(cursor: str) -> None:
    """Arbitrary text, and arbitrary bytes signed with the public key (what
    anyone can forge when the app has no SECRET_KEY)."""
    try:
        created_at, job_id = decode_cursor(cursor, [])
    except InvalidArgument:
        return
    assert isinstance(created_at, float) and isinstance(job_id, str)
