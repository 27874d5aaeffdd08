"""How a :class:`~flask_jobify.stores.redis.RedisStore` reaches Redis: a
client built from a URL, and Redis failures reported as
:class:`~flask_jobify.errors.StoreError`. Pure functions: thread-safe.
"""
from __future__ import annotations

import functools
import typing as t
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from ...errors import StoreError, redact_url

_F = t.TypeVar("_F", bound=t.Callable[..., t.Any])


def client_from_url(
    url: str, prefix: str | None = None, **kwargs: t.Any
) -> tuple[redis.Redis, str]:
    """Build a client from ``redis://host:port/db``, ``rediss://`` or
    ``unix:///path``; return it and the key prefix.

    The ``prefix`` query parameter starts every key, else ``prefix``,
    else ``jobify``; other query parameters and ``kwargs`` go to
    :meth:`redis.Redis.from_url`, except ``decode_responses``, always off.
    ``socket_connect_timeout`` defaults to 2 seconds (redis-py's is
    none: an unreachable host would hold a request for minutes).

    :raises StoreError: if ``url`` is not a Redis URL.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = dict(query).get("prefix", prefix or "jobify")
    rest = [(k, v) for k, v in query if k not in ("prefix", "decode_responses")]
    kwargs["decode_responses"] = False
    if "socket_connect_timeout" not in dict(query):
        kwargs.setdefault("socket_connect_timeout", 2.0)
    try:
        own_url = urlunsplit(parts._replace(query=urlencode(rest)))
        client = redis.Redis.from_url(own_url, **kwargs)
    except ValueError as exc:
        raise StoreError(f"Not a Redis URL: {redact_url(url)!r} ({exc})") from exc
    return client, prefix


def reported(method: _F) -> _F:
    """Raise :class:`~flask_jobify.errors.StoreError` for a Redis failure in
    ``method`` (of a store with a ``prefix``), as the other stores do."""

    @functools.wraps(method)
    def wrapper(self: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as exc:
            raise StoreError(f"Redis job store {self.prefix!r}: {exc}") from exc

    return t.cast(_F, wrapper)


__all__ = ["client_from_url", "reported"]
