"""Blinker signals sent through a job's life. Each sends the app as sender
and the :class:`~flask_jobify.models.Job` as ``job``.

Flask-Jobify sends them with :func:`send`: each receiver on its own, and
one that raises is logged, never let through. A job's life does not
depend on its watchers: a receiver raising in the run's thread would
otherwise leave the job ``running`` for good, and one raising at
acceptance would answer ``500`` for a job already queued.
"""
from __future__ import annotations

import logging
import typing as t

from blinker import NamedSignal, Namespace

logger = logging.getLogger("flask_jobify")

_signals = Namespace()

#: A flagged request was accepted as a job (sent in the request's thread).
job_accepted = _signals.signal("job-accepted")
#: A job started to run (sent in the thread that runs it).
job_started = _signals.signal("job-started")
#: A job reached a final status (sent by whoever ended it).
job_finished = _signals.signal("job-finished")
#: A failed run will run again after a backoff (sent in the run's thread);
#: ``job`` is the record back to ``pending``.
job_retried = _signals.signal("job-retried")
#: A job whose process died (its lease expired) was queued again or failed
#: with error type ``lost`` (sent by the process that noticed); ``job`` is
#: the record as it was found, ``requeued`` tells which. A job handed over
#: on purpose (by a stopping process, or ``flask jobs rerun``) is queued
#: the same way: its ``lease_until`` is then ``0``.
job_lost = _signals.signal("job-lost")
#: One attempt to deliver a job's webhook ended (sent in the webhook
#: thread); ``job`` is the finished job, ``delivered`` whether the
#: receiver took it, ``status`` its HTTP status (``None``: no answer).
webhook_delivered = _signals.signal("webhook-delivered")



def send(signal: NamedSignal, sender: t.Any, **kwargs: t.Any) -> None:
    """Call every receiver of ``signal`` for ``sender`` with ``kwargs``, each
    on its own: one that raises is logged (logger ``flask_jobify``, with the
    traceback) and the next ones still run. Thread-safe as blinker is."""
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:
            logger.exception("A receiver of the Flask-Jobify signal %r raised; ignored",
                             signal.name)


__all__ = [
    "job_accepted", "job_finished", "job_lost", "job_retried", "job_started", "send",
    "webhook_delivered",
]
