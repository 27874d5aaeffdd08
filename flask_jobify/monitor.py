"""One background thread per app that fires job deadlines and sweeps
expired jobs."""
from __future__ import annotations

import heapq
import logging
import threading
import time
import typing as t

logger = logging.getLogger("flask_jobify")


class Monitor:
    """Calls ``on_deadline(job_id)`` when a job's deadline passes, and
    ``sweep()`` every ``sweep_interval`` seconds.

    Thread-safe: :meth:`add_deadline` and :meth:`discard` may be called
    from any thread. The thread is a daemon, started on first use and again
    in a forked child.
    """

    def __init__(
        self,
        on_deadline: t.Callable[[str], None],
        sweep: t.Callable[[], None],
        sweep_interval: float,
    ) -> None:
        self._on_deadline = on_deadline
        self._sweep = sweep
        self._sweep_interval = sweep_interval
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, str]] = []
        # The live deadline of each job; heap entries not matching are stale.
        self._deadlines: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._stopped = False

    def add_deadline(self, job_id: str, when: float) -> None:
        """Call ``on_deadline(job_id)`` at ``when`` (``time.monotonic()``)."""
        with self._lock:
            self._deadlines[job_id] = when
            heapq.heappush(self._heap, (when, job_id))
            self._ensure_thread()
            self._wake.notify()

    def discard(self, job_id: str) -> None:
        """Forget a job's deadline (it ended in time)."""
        with self._lock:
            self._deadlines.pop(job_id, None)
            if len(self._heap) > 64 and len(self._heap) > 2 * len(self._deadlines):
                self._heap = [(w, j) for j, w in self._deadlines.items()]
                heapq.heapify(self._heap)

    def start(self) -> None:
        """Make sure the thread runs (cheap when it does)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            self._ensure_thread()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._wake.notify()

    def _ensure_thread(self) -> None:
        if self._stopped or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._run, name="jobify-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_sweep = time.monotonic() + self._sweep_interval
        while True:
            due: list[str] = []
            with self._lock:
                if self._stopped:
                    return
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    when, job_id = heapq.heappop(self._heap)
                    if self._deadlines.get(job_id) == when:
                        del self._deadlines[job_id]
                        due.append(job_id)
                if not due and now < next_sweep:
                    wake_at = min(next_sweep, self._heap[0][0] if self._heap else next_sweep)
                    self._wake.wait(wake_at - now)
                    continue
            for job_id in due:
                self._guard(self._on_deadline, job_id)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self._sweep_interval
                self._guard(self._sweep)

    @staticmethod
    def _guard(func: t.Callable[..., None], *args: t.Any) -> None:
        try:
            func(*args)
        except Exception:  # the monitor must outlive any one failure
            logger.exception("Flask-Jobify monitor task failed")
