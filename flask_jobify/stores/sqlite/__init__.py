"""A job store in one SQLite file, shared by every process on a machine.

:class:`SQLiteStore` is the store; its modules each hold one part of it:
:mod:`.store` (the queries), :mod:`.connections` (a connection per thread
and process, the WAL's upkeep) and :mod:`.schema` (the tables and their
migrations). The tuning constants are read where they are defined: set
them on those modules, not here.
"""
from __future__ import annotations

from .connections import CHECKPOINT_PATIENCE, VACUUM_STEP, WAL_BURST_LIMIT, WAL_SIZE_LIMIT
from .schema import SCHEMA_VERSION, VACUUM_ON_OPEN_LIMIT
from .store import PURGE_BATCH, SQLiteStore

__all__ = [
    "CHECKPOINT_PATIENCE",
    "PURGE_BATCH",
    "SCHEMA_VERSION",
    "VACUUM_ON_OPEN_LIMIT",
    "VACUUM_STEP",
    "WAL_BURST_LIMIT",
    "WAL_SIZE_LIMIT",
    "SQLiteStore",
]
