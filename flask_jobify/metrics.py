"""Prometheus metrics of an app's jobs, with :mod:`prometheus_client`
(``pip install 'Flask-Jobify[metrics]'``).

Counted where they happen, from the signals of :mod:`flask_jobify.signals`
(so in the process that accepts, runs or ends a job: a web worker or a
Celery worker):

- ``jobify_jobs_accepted_total{app, operation}``
- ``jobify_jobs_finished_total{app, operation, status}``: final statuses
- ``jobify_job_retries_total{app, operation}``: failed runs that run again
- ``jobify_jobs_lost_total{app, operation, outcome}``: jobs whose process
  died, ``requeued`` or ``failed``
- ``jobify_webhook_deliveries_total{app, outcome}``: attempts,
  ``delivered`` or ``failed``
- ``jobify_job_queue_wait_seconds{app, operation}`` (histogram): from
  accepted to the first run's start
- ``jobify_job_run_seconds{app, operation}`` (histogram): the last run,
  from start to end

Read from the store at each scrape (a collector), so that every process
gives the same answer and none has to add up what others did:

- ``jobify_jobs{app, status}``: ``pending`` and ``running`` jobs now
  (counted up to :data:`COUNT_CAP` each)
- ``jobify_store_up{app}`` and ``jobify_store_roundtrip_seconds{app}``:
  one read of the store, timed

Several processes (gunicorn workers, a Celery prefork pool): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before they start, as
prometheus_client documents; each process writes its counts there and a
scrape of any of them adds them all up.

Serve them at ``{JOBIFY_URL_PREFIX}/metrics`` with ``JOBIFY_METRICS =
True`` (closed unless :meth:`Jobify.dashboard_access
<flask_jobify.Jobify.dashboard_access>` lets the caller in), or add them to
a registry of the app's own with :func:`register_metrics`.

.. versionadded:: 0.2
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
import typing as t

from flask import Blueprint, Flask, Response, current_app

from .errors import ConfigError, MetricsUnavailable, StoreError
from .models import Job, JobStatus, new_job_id
from .overview import iter_jobs
from .signals import (
    job_accepted,
    job_finished,
    job_lost,
    job_retried,
    job_started,
    webhook_delivered,
)

if t.TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from .state import JobifyState

__all__ = [
    "BUCKETS",
    "COUNT_CAP",
    "EXTENSION_KEY",
    "JobifyMetrics",
    "StoreCollector",
    "check_multiprocess_dir",
    "init_metrics",
    "metrics_blueprint",
    "metrics_registry",
    "multiprocess_dir",
    "register_metrics",
]

logger = logging.getLogger(__name__)

#: Where each app's :class:`JobifyMetrics` lives.
EXTENSION_KEY = "jobify_metrics"
#: Most jobs of one status a scrape counts (``jobify_jobs``): past it, the
#: gauge says this many, and the scrape reads no further.
COUNT_CAP = 10_000
#: Histogram buckets, in seconds: from a quick view to a long report.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           120.0, 300.0, 600.0, 1800.0, 3600.0, float("inf"))


def multiprocess_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, if it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def check_multiprocess_dir() -> None:
    """Check that the multiprocess folder, if one is set, is a folder this
    process can write in: else prometheus_client fails at the first count.

    :raises ConfigError: if it is not.
    """
    folder = multiprocess_dir()
    if folder is None:
        return
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError("PROMETHEUS_MULTIPROC_DIR", "a folder this process can write in"
                          f" ({exc.strerror})", folder) from None


_Handler = t.TypeVar("_Handler", bound=t.Callable[..., None])


def _never_raises(handler: _Handler) -> _Handler:
    """Have a signal handler log what it raises instead: a count that fails
    (the multiprocess folder was removed, a full disk) must not fail the
    request that accepts a job, nor leave a run ``running``."""
    @functools.wraps(handler)
    def guarded(*args: t.Any, **kwargs: t.Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:
            logger.exception("Flask-Jobify could not count a job in its metrics")
    return t.cast(_Handler, guarded)


class JobifyMetrics:
    """The metrics of one app in one process, fed by the signals.

    Thread-safe (prometheus_client's metrics are). In multiprocess mode the
    counters and histograms belong to no registry: their values go to
    ``PROMETHEUS_MULTIPROC_DIR`` and :meth:`registry_to_expose` reads them
    all back.

    :param registry: where the metrics are registered (a new registry of
        their own by default).
    """

    def __init__(self, state: JobifyState, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.state = state
        self.registry = registry if registry is not None else CollectorRegistry()
        shared = multiprocess_dir() is not None
        into = None if shared else self.registry
        self.accepted = Counter("jobify_jobs_accepted", "Jobs accepted.",
                                ["app", "operation"], registry=into)
        self.finished = Counter("jobify_jobs_finished", "Jobs that reached a final status.",
                                ["app", "operation", "status"], registry=into)
        self.retries = Counter("jobify_job_retries", "Failed runs that will run again.",
                               ["app", "operation"], registry=into)
        self.lost = Counter("jobify_jobs_lost", "Jobs whose process died, requeued or failed.",
                            ["app", "operation", "outcome"], registry=into)
        self.webhooks = Counter("jobify_webhook_deliveries", "Webhook delivery attempts.",
                                ["app", "outcome"], registry=into)
        self.queue_wait = Histogram("jobify_job_queue_wait_seconds",
                                    "Seconds from accepted to the first run's start.",
                                    ["app", "operation"], buckets=BUCKETS, registry=into)
        self.run_time = Histogram("jobify_job_run_seconds",
                                  "Seconds of a job's last run, start to end.",
                                  ["app", "operation"], buckets=BUCKETS, registry=into)
        self.store_collector = StoreCollector(state)
        if not shared:
            self.registry.register(self.store_collector)
        app = state.app
        job_accepted.connect(self._accepted, sender=app)
        job_started.connect(self._started, sender=app)
        job_finished.connect(self._finished, sender=app)
        job_retried.connect(self._retried, sender=app)
        job_lost.connect(self._lost, sender=app)
        webhook_delivered.connect(self._delivered, sender=app)

    @property
    def name(self) -> str:
        return self.state.name

    @_never_raises
    def _accepted(self, sender: Flask, job: Job, **kwargs: t.Any) -> None:
        self.accepted.labels(self.name, job.operation).inc()

    @_never_raises
    def _started(self, sender: Flask, job: Job, **kwargs: t.Any) -> None:
        if job.attempts == 1 and job.started_at is not None:
            self.queue_wait.labels(self.name, job.operation).observe(
                max(0.0, job.started_at - job.created_at))

    @_never_raises
    def _finished(self, sender: Flask, job: Job, **kwargs: t.Any) -> None:
        self.finished.labels(self.name, job.operation, job.status.value).inc()
        if job.started_at is not None and job.finished_at is not None:
            self.run_time.labels(self.name, job.operation).observe(
                max(0.0, job.finished_at - job.started_at))

    @_never_raises
    def _retried(self, sender: Flask, job: Job, **kwargs: t.Any) -> None:
        self.retries.labels(self.name, job.operation).inc()

    @_never_raises
    def _lost(self, sender: Flask, job: Job, requeued: bool = False, **kwargs: t.Any) -> None:
        if job.lease_until == 0.0:
            return  # handed over on purpose (a stopping process, a re-run), not lost
        self.lost.labels(self.name, job.operation, "requeued" if requeued else "failed").inc()

    @_never_raises
    def _delivered(self, sender: Flask, job: Job, delivered: bool = False,
                   **kwargs: t.Any) -> None:
        self.webhooks.labels(self.name, "delivered" if delivered else "failed").inc()

    def registry_to_expose(self) -> CollectorRegistry:
        """What a scrape should read: this process's registry or, in
        multiprocess mode, a new one that adds up every process's files,
        with the store's gauges."""
        if multiprocess_dir() is None:
            return self.registry
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        try:
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        except ValueError as exc:  # the folder is gone
            raise MetricsUnavailable(f"The metrics cannot be read: {exc}.") from None
        registry.register(self.store_collector)
        return registry


class StoreCollector:
    """Gauges read from the store at each scrape: active jobs by status,
    whether the store answers, and how long one read took."""

    def __init__(self, state: JobifyState) -> None:
        self.state = state

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: the store is read at scrape time

    def collect(self) -> t.Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        state = self.state
        jobs = GaugeMetricFamily("jobify_jobs", "Active jobs now, by status (from the store).",
                                 labels=["app", "status"])
        up = GaugeMetricFamily("jobify_store_up", "Whether the job store answered the scrape.",
                               labels=["app"])
        took = GaugeMetricFamily("jobify_store_roundtrip_seconds",
                                 "Seconds one read of the job store took at the scrape.",
                                 labels=["app"])
        began = time.perf_counter()
        try:
            state.store.get(new_job_id())
            took.add_metric([state.name], time.perf_counter() - began)
            for status in (JobStatus.PENDING, JobStatus.RUNNING):
                count = sum(1 for _ in iter_jobs(state.store, app=state.name, status=status,
                                                 limit=COUNT_CAP))
                jobs.add_metric([state.name, status.value], count)
        except StoreError:
            up.add_metric([state.name], 0)
            yield up
            return
        up.add_metric([state.name], 1)
        yield from (jobs, up, took)


def register_metrics(app: Flask, registry: CollectorRegistry | None = None) -> JobifyMetrics:
    """Count ``app``'s jobs into ``registry`` (a new one by default), and
    return the :class:`JobifyMetrics`; once per app (a second call returns
    the first one). ``JOBIFY_METRICS = True`` calls it at ``init_app``.

    :raises RuntimeError: if Flask-Jobify is not registered with ``app``.
    :raises ImportError: if ``prometheus_client`` is not installed.
    :raises ConfigError: if ``PROMETHEUS_MULTIPROC_DIR`` is set but is not a
        folder this process can write in.
    """
    existing = app.extensions.get(EXTENSION_KEY)
    if existing is not None:
        return t.cast(JobifyMetrics, existing)
    state = app.extensions.get("jobify")
    if state is None:
        raise RuntimeError("Flask-Jobify is not registered with this app: call init_app first.")
    check_multiprocess_dir()
    metrics = JobifyMetrics(state, registry)
    app.extensions[EXTENSION_KEY] = metrics
    return metrics


def metrics_registry(app: Flask) -> CollectorRegistry:
    """The registry to expose for ``app`` (for a Celery worker's
    ``prometheus_client.start_http_server(port, registry=...)``)."""
    return register_metrics(app).registry_to_expose()


def metrics_blueprint(url_prefix: str) -> Blueprint:
    """``GET {url_prefix}/metrics``: the exposition format, to the callers
    the dashboard's access rule lets in (else ``403 access_denied``);
    ``503 metrics_unavailable`` if the multiprocess folder is gone."""
    bp = Blueprint("jobify_metrics", __name__, url_prefix=url_prefix)

    @bp.get("/metrics")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        state: JobifyState = current_app.extensions["jobify"]
        state.require_admin()
        registry = register_metrics(current_app).registry_to_expose()
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return bp


def init_metrics(app: Flask, url_prefix: str) -> None:
    """What ``JOBIFY_METRICS = True`` does at ``init_app``: count, and serve."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise RuntimeError("JOBIFY_METRICS needs prometheus_client:"
                           " pip install 'Flask-Jobify[metrics]'.") from None
    register_metrics(app)
    app.register_blueprint(metrics_blueprint(url_prefix))
