"""Small helpers shared by the test modules."""
from __future__ import annotations

import time
import typing as t


def finish(client: t.Any, job_id: str) -> dict[str, t.Any]:
    """Long-poll until the job ends; return its record."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = client.get(f"/jobs/{job_id}?wait=10").get_json()
        if record["status"] not in ("pending", "running"):
            return record
    raise AssertionError(f"job {job_id} did not finish")
