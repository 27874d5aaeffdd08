"""Keeping many finished jobs in a process's memory cheaply (issue 20):
what :class:`~flask_jobify.stores.memory.MemoryStore` does to the records
and responses it holds, and how it gives memory back after a purge.

:class:`Compactor` is thread-safe (its one table is only read and added to
under a lock of its own).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import typing as t

from ..models import Job, JobProgress, StoredResponse

#: Distinct header lines (name and value), and lists of them, a
#: :class:`Compactor` shares between stored responses; past it, new ones
#: are kept as they come.
SHARED_HEADERS = 4096
#: Jobs a purge must have deleted for :func:`give_back_memory` to run.
GIVE_BACK_AFTER = 1000

#: A response as a store keeps it: status, headers, body, reason phrase.
Packed = tuple[int, tuple[tuple[str, str], ...], bytes, t.Optional[str]]
_T = t.TypeVar("_T", bound=t.Hashable)


class Compactor:
    """Makes stored records share what they have in common: the empty
    progress and ``meta``, the names of operations, methods, paths and apps,
    and the header lines of responses (at most :data:`SHARED_HEADERS`).
    A record compacted here must only ever be copied out, never handed out
    (its ``meta`` may be shared)."""

    def __init__(self) -> None:
        self.no_progress = JobProgress()
        self.no_meta: dict[str, t.Any] = {}  # never changed: records are copied out
        #: Header lines and tuples of them, each to the first seen equal to it.
        self._table: dict[t.Any, t.Any] = {}
        self._lock = threading.Lock()

    def job(self, job: Job) -> Job:
        """Compact ``job`` in place and return it."""
        if job.progress == self.no_progress:
            job.progress = self.no_progress
        if not job.meta:
            job.meta = self.no_meta
        job.operation, job.method = sys.intern(job.operation), sys.intern(job.method)
        job.path = sys.intern(job.path)
        if job.app is not None:
            job.app = sys.intern(job.app)
        return job

    def pack(self, response: StoredResponse) -> Packed:
        """``response`` as a tuple whose header lines, and whole list of
        headers, are shared with earlier responses'."""
        headers = tuple(self._shared((line[0], line[1])) for line in response.headers)
        return response.status, self._shared(headers), response.body, response.reason

    def _shared(self, value: _T) -> _T:
        """The value equal to ``value`` seen first (while the table has room)."""
        table = t.cast(dict[_T, _T], self._table)
        shared = table.get(value)
        if shared is not None:
            return shared
        if len(table) >= SHARED_HEADERS:
            return value
        with self._lock:
            return table.setdefault(value, value)

    @staticmethod
    def unpack(packed: Packed) -> StoredResponse:
        """The :class:`~flask_jobify.models.StoredResponse` of :meth:`pack`."""
        status, headers, body, reason = packed
        return StoredResponse(status, list(headers), body, reason)


def give_back_memory() -> bool:
    """Ask the C library to return the free memory at the top of its heaps
    to the system (glibc's ``malloc_trim``); ``False`` where there is none.
    A purge of many jobs frees memory the allocator would otherwise keep."""
    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or name is None:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has none)
        return False
    trim(0)
    return True


__all__ = ["GIVE_BACK_AFTER", "SHARED_HEADERS", "Compactor", "Packed", "give_back_memory"]
