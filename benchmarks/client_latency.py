"""End-to-end latency of a trivial job through :class:`JobAdapter`, against
the same view called synchronously, on the same server in the same run.

Prints, for each server:

- the latency of the plain synchronous call (p50, p99), the baseline;
- the latency of the same call through the adapter as a job (submit,
  long-poll, fetch the result), as a ratio of the baseline;
- the delay between the job finishing on the server (its record's
  ``finishedAt``) and the adapter returning the response (target: p50 under
  20 ms; the seed articles' fixed 5 s poll averages 2.5 s).

::

    python benchmarks/client_latency.py                 # werkzeug and gunicorn
    python benchmarks/client_latency.py --server werkzeug -n 500
    python benchmarks/client_latency.py --polling-runs 10   # also long-poll off

The werkzeug server runs in a thread of this process (client and server
share one interpreter); gunicorn runs as a subprocess (gthread workers,
SQLite store). Both share the machine's clock, so ``finishedAt`` can be
compared with the client's ``time.time()``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import typing as t
from datetime import datetime

import requests
from flask import Flask, request

from flask_jobify import Jobify
from flask_jobify.client import JobAdapter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from servers import run_gunicorn, serve_app  # the tests' real servers


def create_app(**config: t.Any) -> Flask:
    """One trivial jobifiable view; gunicorn runs ``client_latency:create_app()``."""
    app = Flask(__name__)
    app.config.update({
        "JOBIFY_STORE": os.environ.get("JOBIFY_STORE", "memory://"),
        "JOBIFY_MAX_WAIT": float(os.environ.get("JOBIFY_MAX_WAIT", "30")),
        **config,
    })
    jobify = Jobify(app)

    @app.post("/ping")
    @jobify.job
    def ping() -> t.Any:
        """Answer at once, or after ``?ms=`` milliseconds of "work"."""
        work = float(request.args.get("ms", 0)) / 1000
        if work:
            time.sleep(work)
        return {"pong": True}

    return app


def werkzeug_server(**config: t.Any) -> t.ContextManager[str]:
    return serve_app(create_app(**config))


def gunicorn_server(workers: int, **env: str) -> t.ContextManager[str]:
    env["PYTHONPATH"] = os.pathsep.join([HERE, ROOT, os.environ.get("PYTHONPATH", "")])
    return run_gunicorn("client_latency:create_app()", workers=workers, threads=16, env=env,
                        extra_args=["--log-level", "warning"])


def parse_iso(value: str) -> float:
    # Python < 3.11 does not read "Z".
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()  # noqa: FURB162


def percentile(values: t.Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(url: str, runs: int, warmup: int, work_ms: float = 0) -> dict[str, list[float]]:
    """Alternate a synchronous call and a job, ``runs`` times each."""
    params = {"ms": work_ms} if work_ms else {}
    plain = requests.Session()
    jobs = requests.Session()
    jobs.mount(url, JobAdapter())
    sync: list[float] = []
    job: list[float] = []
    delay: list[float] = []
    for n in range(warmup + runs):
        started = time.perf_counter()
        answer = plain.post(url + "/ping", params=params, timeout=30)
        took_sync = time.perf_counter() - started
        assert answer.json() == {"pong": True} and not answer.history

        started = time.perf_counter()
        answer = jobs.post(url + "/ping", params=params, timeout=30)
        took_job = time.perf_counter() - started
        returned = time.time()
        assert answer.json() == {"pong": True} and answer.history[0].status_code == 202
        finished = parse_iso(answer.history[-1].json()["finishedAt"])
        if n >= warmup:
            sync.append(took_sync)
            job.append(took_job)
            delay.append(returned - finished)
    return {"sync": sync, "job": job, "delay": delay}


def report(name: str, figures: dict[str, list[float]]) -> None:
    sync, job, delay = figures["sync"], figures["job"], figures["delay"]
    s50, s99 = percentile(sync, 50), percentile(sync, 99)
    j50, j99 = percentile(job, 50), percentile(job, 99)
    d50, d99 = percentile(delay, 50), percentile(delay, 99)
    ms = 1000
    print(f"\n{name} ({len(sync)} calls of each)")
    print(f"  sync call          p50 {s50 * ms:7.2f} ms   p99 {s99 * ms:7.2f} ms   (1.00x)")
    print(f"  job via adapter    p50 {j50 * ms:7.2f} ms   p99 {j99 * ms:7.2f} ms   "
          f"({j50 / s50:.2f}x p50, {j99 / s99:.2f}x p99, mean {statistics.mean(job) * ms:.2f} ms)")
    print(f"  finish -> return   p50 {d50 * ms:7.2f} ms   p99 {d99 * ms:7.2f} ms   "
          f"({d50 / s50:.2f}x sync p50; target p50 < 20 ms: {'met' if d50 < 0.020 else 'MISSED'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=["werkzeug", "gunicorn", "both"], default="both")
    parser.add_argument("-n", "--runs", type=int, default=300, help="calls of each kind")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--polling-runs", type=int, default=0,
                        help="also time a 50 ms job with long-poll on and off, this many calls")
    args = parser.parse_args(argv)

    print(f"Python {sys.version.split()[0]}, requests {requests.__version__}")
    if args.server in ("werkzeug", "both"):
        with werkzeug_server() as url:
            report("werkzeug (threaded, in-process), memory store, long-poll",
                   measure(url, args.runs, args.warmup))
    if args.server in ("gunicorn", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            store = f"sqlite:///{tmp}/jobs.db"
            with gunicorn_server(args.workers, JOBIFY_STORE=store) as url:
                report(f"gunicorn gthread x{args.workers} workers, sqlite store, long-poll",
                       measure(url, args.runs, args.warmup))
    if args.polling_runs:
        with werkzeug_server() as url:
            report("werkzeug, a 50 ms job, long-poll",
                   measure(url, args.polling_runs, 2, work_ms=50))
        with werkzeug_server(JOBIFY_MAX_WAIT=0) as url:
            report("werkzeug, a 50 ms job, long-poll off (the client polls; Retry-After: 1)",
                   measure(url, args.polling_runs, 2, work_ms=50))
    return 0


if __name__ == "__main__":
    sys.exit(main())
