"""A job store in Redis, shared by every process and machine that reaches it.

:class:`RedisStore` is the store; its modules each hold one part of it:
:mod:`.store` (records, indexes, expiry), :mod:`.scripts` (the Lua
scripts), :mod:`.writes` (the writes of an update and the records last
written) and :mod:`.listener` (the pub/sub thread that wakes waiters).
"""
from __future__ import annotations

from .store import RedisStore

__all__ = ["RedisStore"]
