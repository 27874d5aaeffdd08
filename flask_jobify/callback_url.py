"""Callback URLs: which ones a webhook may be sent to (SSRF checks).

A callback URL is an RFC 3986 URI: printable ASCII, ``http`` or ``https``,
a host, no credentials. Everything the standard library cannot parse or
encode (an empty or overlong DNS label, ``http://a..b/``, a port out of
range) is refused with ``400 invalid_callback`` rather than raised later.

Its host must resolve to public addresses only. An IPv6 address that
carries an IPv4 address (IPv4-mapped ``::ffff:0:0/96``, IPv4-translated
``::ffff:0:0:0/96``, IPv4-compatible ``::/96``, NAT64 ``64:ff9b::/96``,
6to4 ``2002::/16``, Teredo ``2001::/32``, ISATAP interface identifiers)
is judged by that IPv4 address too, so ``[2002:a9fe:a9fe::]`` is the cloud
metadata service ``169.254.169.254``. The local-use NAT64 prefix
``64:ff9b:1::/48`` (RFC 8215) is never public. IPv4 hosts written in
decimal, octal or hex (``2130706433``, ``0x7f.1``) are resolved by the
system as it would connect, and judged by the address they resolve to.
"""
from __future__ import annotations

import ipaddress
import socket
import typing as t
from urllib.parse import urlsplit

from .errors import InvalidCallback

#: Longest callback URL accepted.
MAX_URL_LENGTH = 2048
#: Longest host name DNS can carry (RFC 1035, without the root dot).
MAX_HOST_LENGTH = 253

IPAddress: t.TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"

_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
#: IPv6 forms that only stand for their IPv4 address: judged by it alone.
_STANDS_FOR_IPV4 = (_IPV4_MAPPED, _IPV4_TRANSLATED, _NAT64_WELL_KNOWN)


def split_callback(url: str) -> tuple[str, int]:
    """Check the shape of a callback URL; return its ``(host, port)``.

    :returns: the host, lower-case, one trailing dot removed, IPv6
        literals without brackets; the port, 80 or 443 by default.
    :raises InvalidCallback: for a URL that is too long, not printable
        ASCII, not ``http(s)``, without a host, with credentials, or
        whose port or host cannot be parsed or IDNA-encoded.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidCallback(f"The callback URL is longer than {MAX_URL_LENGTH} characters.")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise InvalidCallback(
            "The callback URL must be printable ASCII without spaces (RFC 3986):"
            " percent-encode the path and write international host names in punycode."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise InvalidCallback("The callback URL cannot be parsed.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise InvalidCallback("The callback must be an http:// or https:// URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise InvalidCallback(
            "The callback URL must not carry credentials; it is stored in the job.")
    host = host.lower().removesuffix(".")
    if not _is_ip_literal(host):
        try:
            encoded = host.encode("idna")  # what socket.getaddrinfo will do
        except UnicodeError:
            encoded = b""
        if not encoded or len(encoded) > MAX_HOST_LENGTH:
            raise InvalidCallback(
                f"The callback host {host[:80]!r} is not a valid host name: labels of 1"
                f" to 63 characters, {MAX_HOST_LENGTH} in all, separated by single dots."
            )
    return host, port or (443 if scheme == "https" else 80)


def resolve_public(host: str, port: int, allowed_hosts: t.Collection[str]) -> list[str]:
    """Resolve ``host`` and return its addresses, if all of them are public.

    :param host: as :func:`split_callback` returns it.
    :param allowed_hosts: hosts exempt from the check (lower-case).
    :raises InvalidCallback: if one of them is not public (see
        :func:`is_public`) and ``host`` is not in ``allowed_hosts``.
    :raises OSError: if ``host`` does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (UnicodeError, ValueError):
        raise InvalidCallback(f"The callback host {host[:80]!r} cannot be encoded.") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if host not in allowed_hosts and not is_public(ipaddress.ip_address(address)):
            raise InvalidCallback(
                f"The callback host {host!r} resolves to {address}, which is not a public"
                " address; the server operator can allow it in JOBIFY_WEBHOOK_ALLOWED_HOSTS."
            )
        addresses.append(address)
    if not addresses:
        raise OSError(f"{host} has no address")
    return addresses


def is_public(ip: IPAddress) -> bool:
    """Whether a webhook may be sent to ``ip``.

    Not loopback, private, link-local (the cloud metadata service),
    multicast, reserved or unspecified; for an IPv6 address, neither are
    the IPv4 addresses it embeds (:func:`embedded_ipv4`).
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL_USE:
            return False
        embedded = embedded_ipv4(ip)
        if not all(_is_public_address(inner) for inner in embedded):
            return False
        if embedded and any(ip in network for network in _STANDS_FOR_IPV4):
            return True  # Python calls these reserved; only the IPv4 address counts
    return _is_public_address(ip)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, by the transition
    mechanism its prefix or interface identifier names.

    :returns: ``[]`` for a plain IPv6 address; two addresses (server and
        client) for Teredo; else one.
    """
    value = int(ip)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip.teredo is not None:
        return list(ip.teredo)
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if any(ip in network for network in (*_STANDS_FOR_IPV4, _IPV4_COMPATIBLE)):
        return [] if value <= 1 else [low32]  # :: and ::1 are IPv6's own
    if (value >> 32) & 0xFDFFFFFF == 0x5EFE:  # ISATAP: ::0:5efe:a.b.c.d or ::200:5efe:...
        return [low32]
    return []


def _is_public_address(ip: IPAddress) -> bool:
    return ip.is_global and not (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified
    )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


__all__ = [
    "MAX_HOST_LENGTH",
    "MAX_URL_LENGTH",
    "IPAddress",
    "embedded_ipv4",
    "is_public",
    "resolve_public",
    "split_callback",
]
