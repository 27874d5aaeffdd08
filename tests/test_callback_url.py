"""Callback URLs: what the standard library cannot parse is a 400, and
IPv6 addresses that carry an IPv4 address are judged by it (SSRF)."""
from __future__ import annotations

import functools
import ipaddress
import typing as t

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_webhooks import create_app, submit

from flask_jobify.callback_url import (
    embedded_ipv4,
    is_public,
    resolve_public,
    split_callback,
)
from flask_jobify.errors import InvalidCallback

#: The webhook app runs on memory (see test_webhooks).
pytestmark = pytest.mark.stores("memory")


@pytest.fixture
def make_app(apps: t.Any) -> t.Callable[..., t.Any]:
    """Builds test_webhooks' app with extra config; stopped afterwards."""
    return functools.partial(apps, create_app)


#: Each wraps a non-public IPv4 address in an IPv6 transition form.
EMBEDDING_NON_PUBLIC = {
    "2002:a9fe:a9fe::": "6to4 of 169.254.169.254 (cloud metadata)",
    "2002:7f00:1::1": "6to4 of 127.0.0.1",
    "2002:a00:1::": "6to4 of 10.0.0.1",
    "::ffff:169.254.169.254": "IPv4-mapped",
    "::ffff:0:7f00:1": "IPv4-translated (SIIT) of 127.0.0.1",
    "::a9fe:a9fe": "IPv4-compatible",
    "64:ff9b::a9fe:a9fe": "NAT64 well-known prefix",
    "64:ff9b::7f00:1": "NAT64 of 127.0.0.1",
    "64:ff9b:1::808:808": "NAT64 local-use prefix (RFC 8215), never public",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
    "2001:0:a9fe:a9fe::1": "Teredo whose server is 169.254.169.254",
    "2600::5efe:a9fe:a9fe": "ISATAP identifier in a global prefix",
    "2600::200:5efe:7f00:1": "ISATAP identifier, universal bit set",
}
#: Each carries a public IPv4 address, or none, in a global form.
PUBLIC = ["2002:808:808::", "64:ff9b::808:808", "::ffff:8.8.8.8", "2600::5efe:808:808",
          "2606:4700::1111", "8.8.8.8", "1.1.1.1"]


@pytest.mark.parametrize("address", EMBEDDING_NON_PUBLIC)
def test_callback_url_embedded_ipv4_is_judged(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address)), EMBEDDING_NON_PUBLIC[address]


@pytest.mark.parametrize("address", PUBLIC)
def test_callback_url_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_callback_url_embedded_ipv4_extraction() -> None:
    def ipv4(address: str) -> list[str]:
        return [str(ip) for ip in embedded_ipv4(ipaddress.IPv6Address(address))]

    assert ipv4("2002:a9fe:a9fe::") == ["169.254.169.254"]
    assert ipv4("64:ff9b::a9fe:a9fe") == ["169.254.169.254"]
    assert ipv4("fe80::5efe:a00:1") == ["10.0.0.1"]
    assert ipv4("2001:0:4136:e378:8000:63bf:3fff:fdd2") == ["65.54.227.120", "192.0.2.45"]
    assert ipv4("::1") == ipv4("::") == ipv4("2606:4700::1111") == []


@pytest.mark.parametrize("callback", [
    *(f"http://[{address}]/hook" for address in EMBEDDING_NON_PUBLIC),
    # IPv4 hosts in decimal, octal, hex and short forms, as inet_aton reads them
    "http://2130706433/", "http://0x7f.1/", "http://017700000001/", "http://0x7f000001/",
    "http://127.1/", "http://0177.0.0.1/", "http://2852039166/", "http://0xa9.0xfe.0xa9.0xfe/",
    # trailing dots
    "http://localhost./", "http://127.0.0.1./", "http://LOCALHOST./hook",
])
def test_callback_url_refused_at_submission(make_app, callback: str) -> None:
    app, _ = make_app(JOBIFY_WEBHOOK_ALLOWED_HOSTS=())
    response = submit(app, callback)
    assert response.status_code == 400, callback
    assert response.get_json()["error"]["code"] == "invalid_callback"
    assert app.extensions["jobify"].store.list() == []


@pytest.mark.parametrize("callback", [
    "http://a..b/",  # the example of issue 13: an IDNA error, a 500
    "http://" + "a" * 64 + ".example/", "http://" + ("a" * 60 + ".") * 5 + "example/",
    "http://.example/", "http://a.\u3002b/", "http://ex\u00e4mple.com/", "http://\u00b2/",
    "http://a\x00b/", "http://a\tb/", "http://a b/", "http://example.com/\x7f",
    "http://[::1/", "http://[zz::1]/", "http://a:99999/", "http://a:-1/", "http://a:x/",
    "http://./", "http://../", "https://:443/", "ftp://example.com/", "//example.com/",
])
def test_callback_url_that_cannot_be_parsed_is_400(make_app, callback: str) -> None:
    app, _ = make_app(JOBIFY_WEBHOOK_ALLOWED_HOSTS=())
    response = submit(app, callback)
    assert response.status_code == 400, callback
    assert response.get_json()["error"]["code"] == "invalid_callback"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80).map(lambda rest: "http://" + rest))
def test_callback_url_split_raises_only_invalid_callback(url: str) -> None:
    """Whatever the text, a refusal or a host that IDNA-encodes (no DNS here)."""
    try:
        host, port = split_callback(url)
    except InvalidCallback:
        return
    assert 0 <= port <= 65535
    if host.replace(":", "").isalnum() and ":" in host:
        ipaddress.ip_address(host)
    else:
        host.encode("idna")


def test_callback_url_allowed_hosts_skip_the_check() -> None:
    assert resolve_public("127.0.0.1", 80, {"127.0.0.1"}) == ["127.0.0.1"]
    with pytest.raises(InvalidCallback):
        resolve_public("127.0.0.1", 80, set())
    with pytest.raises(InvalidCallback):  # the allowance is for a name, not an address
        resolve_public("2130706433", 80, {"127.0.0.1"})
