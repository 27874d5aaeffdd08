"""The one exponential backoff of the server side: between the runs of a
retried job, and between the tries of a webhook delivery. (The client's
retries use urllib3's :class:`~urllib3.util.Retry`, whose backoff has the
same shape.)"""
from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(first: float, attempt: int, longest: float) -> float:
    """Seconds to wait after try number ``attempt`` (from 1) failed:
    ``first * 2 ** (attempt - 1)``, capped at ``longest``, then a random
    point in its upper half, so that what failed together does not try
    again together ("equal jitter", in Marc Brooker's *Exponential Backoff
    and Jitter*, AWS Architecture Blog, 2015).

    Thread-safe (:mod:`random`'s module functions are).
    """
    delay = min(longest, first * 2 ** (attempt - 1))
    return random.uniform(delay / 2, delay)
