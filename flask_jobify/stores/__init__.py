"""Job stores, chosen by URL with :func:`store_from_url`."""
from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import StoreError
from .base import NO_OWNER, JobStore
from .memory import MemoryStore


def store_from_url(url: str, *, redis_prefix: str | None = None) -> JobStore:
    """Build a store from a URL.

    - ``memory://``: :class:`~flask_jobify.stores.memory.MemoryStore`.
    - ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``:
      :class:`~flask_jobify.stores.sqlite.SQLiteStore`.
    - ``redis://host:port/db`` (and ``rediss://``):
      :class:`~flask_jobify.stores.redis.RedisStore`, with the ``redis`` extra.
      Its keys start with the URL's ``?prefix=``, else ``redis_prefix``,
      else ``jobify``.

    :raises StoreError: for a scheme no store serves.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisStore

        return RedisStore.from_url(url, prefix=redis_prefix)
    raise StoreError(
        f"No job store for {url!r}: use memory://, sqlite:///path/to/jobs.db"
        " or redis://host:port/db."
    )


__all__ = ["NO_OWNER", "JobStore", "MemoryStore", "store_from_url"]
