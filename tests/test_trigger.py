"""Reading X-Job-Flag and Prefer: ASCII per their RFCs, never a 500."""
from __future__ import annotations

import typing as t

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from flask_jobify.errors import InvalidJobFlag
from flask_jobify.trigger import (
    MAX_DELTA_SECONDS,
    JobTrigger,
    parse_prefer,
    parse_trigger,
)

# Werkzeug (and every WSGI server) decodes header bytes as Latin-1, so byte
# 0xB2 arrives as "\u00b2", which str.isdigit() calls a digit.
#: The header parsing does not depend on the store: the core app on memory.
pytestmark = pytest.mark.stores("memory")

NOT_ASCII_DIGITS = ["\u00b2", "\u00b9\u00b2", "\u00bd", "1\u00b2", "\u0661"]


@pytest.mark.parametrize("value", [*NOT_ASCII_DIGITS, "1.5", "-1", "+3", "1_0", "0x10",
                                   "1e3", "", " ", "\x00", "5\x7f"])
def test_trigger_wait_that_is_not_ascii_digits_is_ignored(value: str) -> None:
    headers = Headers([("Prefer", f"respond-async, wait={value}")])
    assert parse_trigger(headers) == JobTrigger("prefer", None)


def test_trigger_wait_is_delta_seconds_capped_as_rfc_9111_says() -> None:
    assert parse_trigger(Headers([("Prefer", "respond-async, wait=5")])).wait == 5
    for huge in ("2147483649", "9" * 5000):  # int() refuses 5000 digits
        trigger = parse_trigger(Headers([("Prefer", f"respond-async, wait={huge}")]))
        assert trigger is not None and trigger.wait == MAX_DELTA_SECONDS


@pytest.mark.parametrize("header", ["respond-async\u00b2", "resp\x00ond-async", "respond async",
                                    "\u00e9respond-async", "respond-async=\u00e9"])
def test_trigger_preferences_that_are_not_tokens_are_ignored(header: str) -> None:
    assert parse_trigger(Headers([("Prefer", header)])) is None


def test_trigger_first_preference_wins_across_repeated_fields() -> None:
    assert parse_prefer(["wait=3", "respond-async, wait=9"]) == {"wait": "3", "respond-async": ""}
    assert parse_prefer(["wait=\u00b2, wait=4"]) == {"wait": "4"}


@pytest.mark.parametrize("flags", [["ON\u00b2"], ["\u00f6n"], ["O\x00N"], ["ON", "ON"],
                                   ["ON", "OFF"], [""], ["ON" * 5000]])
def test_trigger_flag_other_than_one_ascii_on_or_off_is_invalid(flags: list[str]) -> None:
    with pytest.raises(InvalidJobFlag):
        parse_trigger(Headers([("X-Job-Flag", flag) for flag in flags]))


@pytest.mark.parametrize("headers", [
    {"Prefer": "wait=\u00b2"},  # the example of issue 13: a 500 on a request asking no job
    {"Prefer": "respond-async; wait=\u00b2"},
    {"Prefer": "\u00ff\u00fe=\u00fd"},
])
def test_trigger_unreadable_prefer_answers_as_the_view_would(client: t.Any, headers) -> None:
    response = client.get("/text", headers=headers)
    if "respond-async" in headers["Prefer"]:
        assert response.status_code == 202
    else:
        assert response.status_code == 201 and response.data == b"plain text"


def test_trigger_unreadable_flag_is_400_json(client: t.Any) -> None:
    response = client.get("/text", headers=[("X-Job-Flag", "ON"), ("X-Job-Flag", "ON\u00b2")])
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_job_flag"


#: What a server can hand over: any byte as Latin-1 but CR and LF.
LATIN1 = st.text(st.characters(min_codepoint=0, max_codepoint=255, exclude_characters="\r\n"),
                 max_size=60)


@settings(max_examples=400, deadline=None)
@given(prefer=st.lists(LATIN1, max_size=3), flag=st.one_of(st.none(), LATIN1))
def test_trigger_any_latin1_headers_parse_or_raise_invalid_job_flag(
    prefer: list[str], flag: str | None
) -> None:
    """Whatever bytes a server hands over (Latin-1), the answer is a trigger,
    ``None`` or InvalidJobFlag: never another exception."""
    headers = Headers([("Prefer", value) for value in prefer])
    if flag is not None:
        headers.add("X-Job-Flag", flag)
    try:
        trigger = parse_trigger(headers)
    except InvalidJobFlag:
        assert flag is not None
        return
    if trigger is not None and trigger.wait is not None:
        assert 0 <= trigger.wait <= MAX_DELTA_SECONDS
