"""Redis store and Celery executor against plain Celery and the thread
executor, in one run, with every figure also a ratio to a plain Flask request
measured in the same run.

(a) a plain Flask request on gunicorn (gthread, 2 workers x 8 threads);
(b) Flask-Jobify, thread executor, Redis store (same gunicorn);
(c) Flask-Jobify, Celery executor, Redis store, Redis broker: the same
    gunicorn, plus a Celery worker subprocess;
(d) plain Celery, ``task.delay()`` then ``AsyncResult.get()``, Redis broker and
    Redis result backend, from this process's threads (no Flask), on a worker
    with the same settings as (c).

For each: submissions per second from ``--threads`` threads (``--jobs`` of
them; the time until every job had finished gives completed/s), and the
latency of a trivial job, submit to result in hand, at concurrency 1 and at
``--threads`` (Flask-Jobify: ``flask_jobify.client.JobSession``, which
long-polls; plain Celery: ``delay().get()``). Redis traffic is counted on
the client side in every process (redis-py's connection is wrapped, see
``scale_app.install_counter``): commands and round trips per job, per
process role and per Redis DB (broker, result backend, job store), during the
concurrency-1 phase, minus the idle traffic measured just before it. The
server's ``INFO commandstats`` delta over the same window is printed too (it
counts every client of the server, and the commands Lua scripts run).

    python benchmarks/bench_scale.py [--jobs 800] [--threads 16]

Server, worker, Redis and this load generator share the machine's cores:
compare ratios, not absolute numbers.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from datetime import datetime

import redis
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, ROOT)

import scale_app  # noqa: E402 - after the path above

from flask_jobify.client import JobAdapter, JobSession  # noqa: E402

ROLE_ORDER = ["web", "worker", "client"]
#: The job store's key prefix (in the store URL: it wins over JOBIFY_REDIS_PREFIX).
PREFIX = "scale"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- subprocesses -------------------------------------------------------------------
class Proc:
    """A subprocess in its own process group, killed with its children."""

    live: t.ClassVar[list[Proc]] = []

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: str) -> None:
        self.name = name
        self.log_path = log
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            args, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=ROOT,
        )
        Proc.live.append(self)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self) -> str:
        with open(self.log_path, "rb") as log:
            return log.read()[-3000:].decode(errors="replace")

    def stop(self) -> None:
        if self in Proc.live:
            Proc.live.remove(self)
        pgid = self.process.pid  # the group leader: start_new_session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # stragglers: prefork children
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.log.close()

    @classmethod
    def stop_all(cls) -> None:
        for proc in list(cls.live):
            proc.stop()


def start_gunicorn(env: dict[str, str], workers: int, threads: int, tmp: str) -> tuple[Proc, str]:
    url = f"http://127.0.0.1:{free_port()}"
    proc = Proc("gunicorn", [
        sys.executable, "-m", "gunicorn", "-b", url[7:], "-w", str(workers),
        "--threads", str(threads), "-k", "gthread", "--pythonpath", f"{HERE},{ROOT}",
        "--graceful-timeout", "5", "--log-level", "warning", "scale_app:create_app()",
    ], {**env, "SCALE_ROLE": "web"}, os.path.join(tmp, f"gunicorn-{time.time_ns()}.log"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"gunicorn exited:\n{proc.tail()}")
        try:
            requests.get(url + "/plain", timeout=2)
            return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not start:\n{proc.tail()}")


def celery_worker(env: dict[str, str], pool: str, concurrency: int, tmp: str) -> Proc:
    return Proc("celery", [
        sys.executable, "-m", "celery", "-A", "scale_app:celery_app", "worker",
        "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "warning",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
    ], {**env, "SCALE_ROLE": "worker",
        "PYTHONPATH": os.pathsep.join([HERE, ROOT, os.environ.get("PYTHONPATH", "")])},
        os.path.join(tmp, f"celery-{time.time_ns()}.log"))


# -- load ---------------------------------------------------------------------------
def percentile(values: t.Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def spread(count: int, threads: int, make: t.Callable[[], t.Any],
           one: t.Callable[[t.Any], None]) -> tuple[float, list[float]]:
    """Run ``one(session)`` ``count`` times from ``threads`` threads (one
    ``make()`` each); return the wall time and each call's latency."""
    left = [count]
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def loop() -> None:
        session = make()
        mine = []
        start.wait()
        try:
            while True:
                with lock:
                    if left[0] <= 0:
                        break
                    left[0] -= 1
                began = time.perf_counter()
                one(session)
                mine.append(time.perf_counter() - began)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            with lock:
                latencies.extend(mine)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    took = time.perf_counter() - began
    if errors:
        raise errors[0]
    return took, latencies


def latency_figures(took: float, latencies: list[float]) -> dict[str, float]:
    return {"rate": len(latencies) / took, "p50": statistics.median(latencies) * 1000,
            "p95": percentile(latencies, 95) * 1000}


def plain_post(url: str) -> t.Callable[[requests.Session], None]:
    def one(session: requests.Session) -> None:
        response = session.post(url + "/plain")
        assert response.status_code == 200, response.text
    return one


def job_submit(url: str) -> t.Callable[[requests.Session], None]:
    def one(session: requests.Session) -> None:
        response = session.post(url + "/trivial", headers={"X-Job-Flag": "ON"})
        assert response.status_code == 202, response.text
    return one


def iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class CountingAdapter(JobAdapter):
    """A JobAdapter that counts the HTTP requests it sends (one thread each)."""

    sent = 0

    def send_plain(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        self.sent += 1
        return super().send_plain(request, **kwargs)


def counting_session() -> JobSession:
    return JobSession(adapter=CountingAdapter())


def job_round_trip(
    url: str, stages: list[tuple[float, ...]] | None = None
) -> t.Callable[[JobSession], None]:
    """One job through JobSession: submit, long-poll, result. With ``stages``,
    also where the time went, from the job record's timestamps (ms precision):
    submit -> created, created -> started, started -> finished, finished ->
    result in hand."""
    def one(session: t.Any) -> None:
        sent, requests_before = time.time(), session.job_adapter.sent
        response = session.post(url + "/trivial", timeout=30)
        returned = time.time()
        assert response.status_code == 200 and response.json() == {"ok": True}, response.text
        assert response.history and response.history[0].status_code == 202
        if stages is not None:
            record = response.history[-1].json()
            created, started, finished = (
                iso(record[k]) for k in ("createdAt", "startedAt", "finishedAt"))
            stages.append((created - sent, started - created, finished - started,
                           returned - finished, session.job_adapter.sent - requests_before))
    return one


def wait_done(store: redis.Redis, count: int, timeout: float = 120.0) -> float:
    """Wait until ``count`` jobs ended in the store; return when (perf_counter)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipe = store.pipeline(transaction=False)
        for status in ("succeeded", "failed", "cancelled", "timed_out"):
            pipe.zcard(f"{PREFIX}:status:{status}")
        done = pipe.execute()
        if sum(done) >= count:
            if sum(done[1:]):
                raise RuntimeError(f"jobs did not all succeed: {done}")
            return time.perf_counter()
        time.sleep(0.02)
    raise RuntimeError(f"only {sum(done)} of {count} jobs ended within {timeout:.0f} s")


# -- counting -----------------------------------------------------------------------
class Counts:
    """Redis traffic of every process of the run, from their count files and
    this process's own counter."""

    def __init__(self, directory: str, server: redis.Redis) -> None:
        self.directory = directory
        self.server = server

    def snapshot(self) -> tuple[float, collections.Counter[tuple[str, str, str]], dict[str, int]]:
        time.sleep(0.35)  # let every writer (every 0.1 s) catch up
        total: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for path in glob.glob(os.path.join(self.directory, "*.json")):
            role = os.path.basename(path).split("-")[0]
            with contextlib.suppress(ValueError, OSError):
                with open(path) as data:
                    for key, value in json.load(data).items():
                        db, what = key.split(" ", 1)
                        total[(role, db, what)] += value
        for key, value in scale_app.counts().items():
            db, what = key.split(" ", 1)
            total[("client", db, what)] += value
        info = self.server.info("commandstats")
        server = {name[len("cmdstat_"):].upper(): stats["calls"] for name, stats in info.items()}
        return time.monotonic(), total, server


def window(counts: Counts, before: t.Any, after: t.Any, idle: tuple[t.Any, t.Any] | None,
           jobs: int) -> tuple[dict[tuple[str, str, str], float], dict[str, float]]:
    """Per-job counts between two snapshots, less the idle rate."""
    (t0, c0, s0), (t1, c1, s1) = before, after
    per_job: dict[tuple[str, str, str], float] = {}
    rate: dict[tuple[str, str, str], float] = {}
    if idle is not None:
        (i0, ic0, _), (i1, ic1, _) = idle
        rate = {key: (ic1[key] - ic0[key]) / (i1 - i0) for key in set(ic1) | set(ic0)}
    for key in set(c1) | set(c0):
        value = c1[key] - c0[key] - rate.get(key, 0.0) * (t1 - t0)
        if abs(value) / jobs >= 0.05:
            per_job[key] = value / jobs
    server = {name: (s1.get(name, 0) - s0.get(name, 0)) / jobs for name in s1}
    return per_job, {k: v for k, v in server.items() if v >= 0.05}


# -- scenarios ----------------------------------------------------------------------
def run_jobify(name: str, url: str, store: redis.Redis, counts: Counts, args: argparse.Namespace,
               results: dict[str, t.Any]) -> None:
    """Submit throughput, completion, latency at 1 and at ``threads``, counts."""
    base = store.zcard(f"{PREFIX}:status:succeeded")
    burst0 = counts.snapshot()
    took, _ = spread(args.jobs, args.threads, requests.Session, job_submit(url))
    # Started when the first submission left: the submission phase's start.
    began = time.perf_counter() - took
    done_at = wait_done(store, base + args.jobs)
    after_burst = counts.snapshot()
    figures = {"submit": args.jobs / took, "done": args.jobs / (done_at - began)}
    time.sleep(0.5)
    idle0 = counts.snapshot()
    time.sleep(args.idle)
    idle = (idle0, counts.snapshot())
    before = counts.snapshot()
    stages: list[tuple[float, ...]] = []
    took1, lat1 = spread(args.latency_jobs, 1, counting_session, job_round_trip(url, stages))
    after = counts.snapshot()
    tookn, latn = spread(args.jobs // 2, args.threads, counting_session, job_round_trip(url))
    figures["c1"] = latency_figures(took1, lat1)
    figures["cn"] = latency_figures(tookn, latn)
    figures["stages"] = stages
    figures["counts"] = window(counts, before, after, idle, args.latency_jobs)
    # The burst: submissions then the drain, per job (idle not subtracted:
    # the burst's own background is part of its cost). Submissions' counts
    # are in the web processes' files, written within 0.1 s.
    figures["burst"] = window(counts, burst0, after_burst, None, args.jobs)
    results[name] = figures


def run_plain_celery(counts: Counts, args: argparse.Namespace, broker: str, backend: str,
                     results: dict[str, t.Any]) -> None:
    app = scale_app.create_celery(broker, backend)
    trivial = app.tasks["scale.trivial"]
    deadline = time.monotonic() + 60
    while True:  # the worker is up when a task comes back
        try:
            trivial.delay().get(timeout=5)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
    for _ in range(20):
        trivial.delay().get(timeout=10)

    pending: list[t.Any] = []
    burst0 = counts.snapshot()
    took, _ = spread(args.jobs, args.threads, lambda: None,
                     lambda _: pending.append(trivial.delay()))
    began = time.perf_counter() - took
    for result in pending:
        assert result.get(timeout=120) == {"ok": True}
    done_at = time.perf_counter()
    burst1 = counts.snapshot()
    figures: dict[str, t.Any] = {"submit": args.jobs / took, "done": args.jobs / (done_at - began)}
    pending.clear()
    time.sleep(0.5)
    idle0 = counts.snapshot()
    time.sleep(args.idle)
    idle1 = counts.snapshot()

    def round_trip(_: t.Any) -> None:
        assert trivial.delay().get(timeout=30) == {"ok": True}

    stages: list[tuple[float, ...]] = []

    def timed_round_trip(_: t.Any) -> None:
        sent = time.time()
        result = trivial.delay()
        assert result.get(timeout=30) == {"ok": True}
        returned = time.time()
        done = result.date_done
        if done is not None:
            stages.append((done.timestamp() - sent, returned - done.timestamp()))

    before = counts.snapshot()
    took1, lat1 = spread(args.latency_jobs, 1, lambda: None, timed_round_trip)
    after = counts.snapshot()
    tookn, latn = spread(args.jobs // 2, args.threads, lambda: None, round_trip)
    figures["c1"] = latency_figures(took1, lat1)
    figures["cn"] = latency_figures(tookn, latn)
    figures["stages"] = stages
    figures["counts"] = window(counts, before, after, (idle0, idle1), args.latency_jobs)
    figures["burst"] = window(counts, burst0, burst1, None, args.jobs)
    results["d"] = figures
    app.close()


def warm_up(url: str, jobs: int = 20) -> None:
    session = counting_session()
    deadline = time.monotonic() + 60
    while True:  # with Celery: until the worker answers
        try:
            job_round_trip(url)(session)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    plain = requests.Session()
    for _ in range(jobs):
        job_round_trip(url)(session)
        plain_post(url)(plain)


# -- report -------------------------------------------------------------------------
NAMES = {
    "a": "(a) plain Flask POST",
    "b": "(b) Jobify thread + Redis store",
    "c": "(c) Jobify Celery + Redis store",
    "d": "(d) plain Celery delay+get",
}


def table(results: dict[str, t.Any], args: argparse.Namespace) -> None:
    nan = float("nan")
    a = results.get("a") or {"submit": nan, "done": nan, "c1": {"p50": nan}, "cn": {"p50": nan}}
    n = args.threads
    print(f"\nThroughput ({args.jobs} submissions from {n} threads) and latency, submit to "
          f"result in hand (c=1: {args.latency_jobs} in a row; c={n}: {args.jobs // 2} "
          f"from {n} threads). xA: ratio to (a) of the same run.\n")
    head = (f"{'':34} {'submit/s':>9} {'xA':>6} {'done/s':>8} {'xA':>6}   "
            f"{'p50 c=1':>8} {'p95 c=1':>8} {'xA p50':>7}   "
            f"{'p50 c=' + str(n):>9} {'p95 c=' + str(n):>9} {'xA p50':>7}")
    print(head)
    print("-" * len(head))
    for key in "abcd":
        if key not in results:
            continue
        r = results[key]
        c1, cn = r["c1"], r["cn"]
        print(f"{NAMES[key]:34} {r['submit']:9.0f} {r['submit'] / a['submit']:6.2f} "
              f"{r['done']:8.0f} {r['done'] / a['done']:6.2f}   "
              f"{c1['p50']:8.2f} {c1['p95']:8.2f} {c1['p50'] / a['c1']['p50']:7.2f}   "
              f"{cn['p50']:9.2f} {cn['p95']:9.2f} {cn['p50'] / a['cn']['p50']:7.2f}")
    if "c" in results and "d" in results:
        c, d = results["c"], results["d"]
        print(f"{'(c) / (d)':34} {c['submit'] / d['submit']:9.2f} {'':6} "
              f"{c['done'] / d['done']:8.2f} {'':6}   "
              f"{c['c1']['p50'] / d['c1']['p50']:8.2f} {c['c1']['p95'] / d['c1']['p95']:8.2f} "
              f"{'':7}   {c['cn']['p50'] / d['cn']['p50']:9.2f} "
              f"{c['cn']['p95'] / d['cn']['p95']:9.2f}")
    print("\n  latencies in ms; done/s: submissions until the last job ended "
          "(Jobify: seen in the store every 20 ms; Celery: the last get() returned)")


def stages_report(results: dict[str, t.Any]) -> None:
    print("\nWhere a job's time goes at c=1, p50 (p95) in ms, from the job record's timestamps "
          "(ms precision; client and server share the clock)\n")
    columns = ["submit->created", "created->started", "started->finished", "finished->in hand"]
    print(f"{'':34} " + " ".join(f"{c:>19}" for c in columns) + f" {'HTTP req/job':>14}")
    for key in "bc":
        stages = results.get(key, {}).get("stages")
        if not stages:
            continue
        cells = [f"{percentile(col, 50) * 1000:8.1f} ({percentile(col, 95) * 1000:6.1f})"
                 for col in list(zip(*stages))[:4]]
        requests_ = statistics.mean(row[4] for row in stages)
        print(f"{NAMES[key]:34} " + " ".join(f"{c:>19}" for c in cells) + f" {requests_:14.2f}")
    stages = results.get("d", {}).get("stages")
    if stages:
        sent_done, done_back = (list(col) for col in zip(*stages))
        print(f"{NAMES['d']:34} delay() -> date_done {percentile(sent_done, 50) * 1000:.1f} "
              f"({percentile(sent_done, 95) * 1000:.1f}); date_done -> get() returned "
              f"{percentile(done_back, 50) * 1000:.1f} ({percentile(done_back, 95) * 1000:.1f})")


def traffic(results: dict[str, t.Any], dbs: dict[str, str]) -> None:
    role_of_db = {v: k for k, v in dbs.items()}
    print("\nRedis round trips per job (client side, every process; c=1 phase less idle "
          "traffic; burst: the submissions and their drain, idle not subtracted)\n")
    head = f"{'':34} " + " ".join(f"{name:>9}" for name in [
        "web:store", "wrk:store", "web:brok", "wrk:brok", "cli:brok", "wrk:back", "cli:back",
        "total", "burst"])
    print(head)
    print("-" * len(head))
    cells = [("web", "store"), ("worker", "store"), ("web", "broker"), ("worker", "broker"),
             ("client", "broker"), ("worker", "backend"), ("client", "backend")]
    for key in "bcd":
        if key not in results:
            continue
        per_job, _ = results[key]["counts"]
        burst, _ = results[key]["burst"]
        sums: collections.Counter[tuple[str, str]] = collections.Counter()
        for (role, db, what), value in per_job.items():
            if what.startswith("#"):
                sums[(role, role_of_db.get(db, db))] += value
        # Not the benchmark's own polling of the store for the drain.
        burst_total = sum(v for (role, db, what), v in burst.items()
                          if what.startswith("#") and db in role_of_db
                          and (role, role_of_db[db]) != ("client", "store"))
        total = sum(v for (role, db), v in sums.items() if db in dbs)
        print(f"{NAMES[key]:34} " + " ".join(f"{sums[cell]:9.2f}" for cell in cells)
              + f" {total:9.2f} {burst_total:9.2f}")
    for key in "bcd":
        if key not in results:
            continue
        per_job, server = results[key]["counts"]
        print(f"\n{NAMES[key]}: round trips per job, by what they carried (c=1)")
        groups: dict[tuple[str, str], list[tuple[str, float]]] = collections.defaultdict(list)
        for (role, db, what), value in per_job.items():
            if what.startswith("#"):
                groups[(role, role_of_db.get(db, db))].append((what[1:], value))
        for (role, db), items in sorted(groups.items(), key=lambda kv: (
                ROLE_ORDER.index(kv[0][0]) if kv[0][0] in ROLE_ORDER else 9, kv[0][1])):
            items.sort(key=lambda item: -item[1])
            shown = ", ".join(f"{what} {value:.2f}" for what, value in items)
            print(f"  {role + ':' + db:15} {sum(v for _, v in items):5.2f}  {shown}")
        burst, _ = results[key]["burst"]
        shown = sorted(((v, f"{role}:{role_of_db[db]} {what[1:]}")
                        for (role, db, what), v in burst.items()
                        if what.startswith("#") and db in role_of_db
                        and (role, role_of_db[db]) != ("client", "store")), reverse=True)
        print("  burst, per job: " + ", ".join(f"{name} {v:.2f}" for v, name in shown[:10]))
        commands: collections.Counter[str] = collections.Counter()
        for (role, db, what), value in per_job.items():
            if not what.startswith("#") and db in role_of_db:
                commands[what] += value
        print(f"  commands sent per job (client side): {sum(commands.values()):.1f}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in commands.most_common()))
        print(f"  server INFO commandstats per job (whole server, Lua's inner calls "
              f"included): {sum(server.values()):.1f}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(server.items(), key=lambda kv: -kv[1])
                          if k not in ("INFO",)))


def state_changes(results: dict[str, t.Any], dbs: dict[str, str]) -> None:
    """Store round trips per state change: (c) against (d)."""
    if "c" not in results or "d" not in results:
        return
    role_of_db = {v: k for k, v in dbs.items()}

    def rts(key: str, db_role: str, roles: t.Iterable[str] | None = None) -> float:
        per_job, _ = results[key]["counts"]
        return sum(v for (role, db, what), v in per_job.items() if what.startswith("#")
                   and role_of_db.get(db) == db_role and (roles is None or role in roles))

    c_all, c_worker, c_web = rts("c", "store"), rts("c", "store", ["worker"]), rts(
        "c", "store", ["web"])
    d_all, d_worker = rts("d", "backend"), rts("d", "backend", ["worker"])
    print("\nStore round trips per state change, (c) Jobify on Celery vs (d) plain Celery "
          "(c=1 phase)")
    print("  (c) records 3 state changes per job: pending (created by the web process),")
    print("      running and succeeded (written by the worker); (d) stores 1: SUCCESS")
    print("      (PENDING is implicit; STARTED is off by default).")
    print(f"  worker writes: (c) {c_worker:.2f} store round trips per job for 2 changes = "
          f"{c_worker / 2:.2f} per change; (d) {d_worker:.2f} backend round trips for 1 change "
          f"= {d_worker:.2f} per change")
    extra = c_worker / 2 - d_worker
    print(f"    -> {extra:+.2f} round trips per state change over plain Celery; target <= +1: "
          f"{'met' if extra <= 1.0 + 1e-6 else 'MISSED'}")
    print(f"  everything in the store per job: (c) {c_all:.2f} (web {c_web:.2f}: create, the "
          f"long-poll's reads, the result; worker {c_worker:.2f}) vs (d) {d_all:.2f} (client "
          f"{d_all - d_worker:.2f}: subscribe, read, unsubscribe; worker {d_worker:.2f})")
    extra_all = (c_all - d_all) / 3
    print(f"    -> {c_all - d_all:+.2f} per job = {extra_all:+.2f} per (c) state change: "
          f"{'within' if extra_all <= 1.0 + 1e-6 else 'over'} +1 by this stricter count")
    c_broker = sum(v for (role, db, what), v in results["c"]["counts"][0].items()
                   if what.startswith("#") and role_of_db.get(db) == "broker")
    d_broker = sum(v for (role, db, what), v in results["d"]["counts"][0].items()
                   if what.startswith("#") and role_of_db.get(db) == "broker")
    print(f"  broker round trips per job: (c) {c_broker:.2f}, (d) {d_broker:.2f}")


# -- main ---------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=800, help="submissions per scenario")
    parser.add_argument("--threads", type=int, default=16, help="client threads")
    parser.add_argument("--latency-jobs", type=int, default=150,
                        help="round trips at concurrency 1 (the counted phase)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--dbs", default="10,11,12", help="broker, result backend, job store")
    parser.add_argument("--pool", choices=["prefork", "threads"], default="prefork")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--idle", type=float, default=2.0,
                        help="seconds of idle traffic measured before each counted phase")
    parser.add_argument("--only", default="abcd", help="scenarios to run, e.g. cd")
    args = parser.parse_args()

    broker_db, backend_db, store_db = args.dbs.split(",")
    dbs = {"broker": broker_db, "backend": backend_db, "store": store_db}
    broker, backend = f"{args.redis}/{broker_db}", f"{args.redis}/{backend_db}"
    store_url = f"{args.redis}/{store_db}?prefix={PREFIX}"
    server = redis.Redis.from_url(f"{args.redis}/0")
    flush = [redis.Redis.from_url(f"{args.redis}/{db}") for db in dbs.values()]
    store = redis.Redis.from_url(f"{args.redis}/{store_db}")
    tmp = tempfile.mkdtemp(prefix="bench-scale-")
    count_dir = os.path.join(tmp, "counts")
    os.mkdir(count_dir)
    scale_app.install_counter(None, "client")
    counts = Counts(count_dir, server)
    env = {"SCALE_STORE": store_url, "SCALE_BROKER": broker, "SCALE_COUNT_DIR": count_dir}
    results: dict[str, t.Any] = {}

    def on_signal(signum: int, _frame: t.Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    import celery
    import gunicorn
    print(f"Python {sys.version.split()[0]}, celery {celery.__version__}, redis-py "
          f"{redis.__version__}, gunicorn {gunicorn.__version__}, Redis "
          f"{server.info('server')['redis_version']}, {os.cpu_count()} CPUs")
    print(f"gunicorn -w 2 --threads 8 (gthread); Celery worker --pool {args.pool} "
          f"--concurrency {args.concurrency} --without-heartbeat/gossip/mingle; "
          f"Redis DBs: broker {broker_db}, backend {backend_db}, store {store_db}")
    rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    print(f"flask_jobify at {rev or '?'}; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    started = time.monotonic()
    try:
        for db in flush:
            db.flushdb()
        if "a" in args.only or "b" in args.only:
            web, url = start_gunicorn({**env, "SCALE_EXECUTOR": "thread"}, 2, 8, tmp)
            warm_up(url)
            took, lat = spread(args.jobs, args.threads, requests.Session, plain_post(url))
            took1, lat1 = spread(args.latency_jobs, 1, requests.Session, plain_post(url))
            tookn, latn = spread(args.jobs // 2, args.threads, requests.Session, plain_post(url))
            results["a"] = {"submit": args.jobs / took, "done": args.jobs / took,
                            "c1": latency_figures(took1, lat1), "cn": latency_figures(tookn, latn)}
            print(f"  (a) done at {time.monotonic() - started:.0f} s", flush=True)
            if "b" in args.only:
                run_jobify("b", url, store, counts, args, results)
                print(f"  (b) done at {time.monotonic() - started:.0f} s", flush=True)
            web.stop()
            for db in flush:
                db.flushdb()
        if "c" in args.only:
            celery_env = {**env, "SCALE_EXECUTOR": "celery"}
            worker = celery_worker(celery_env, args.pool, args.concurrency, tmp)
            web, url = start_gunicorn(celery_env, 2, 8, tmp)
            try:
                warm_up(url)
            except Exception:
                print(worker.tail())
                raise
            run_jobify("c", url, store, counts, args, results)
            web.stop()
            worker.stop()
            print(f"  (c) done at {time.monotonic() - started:.0f} s", flush=True)
            for db in flush:
                db.flushdb()
        if "d" in args.only:
            worker = celery_worker({**env, "SCALE_EXECUTOR": "none", "SCALE_BACKEND": backend},
                                   args.pool, args.concurrency, tmp)
            try:
                run_plain_celery(counts, args, broker, backend, results)
            except Exception:
                print(worker.tail())
                raise
            worker.stop()
            print(f"  (d) done at {time.monotonic() - started:.0f} s", flush=True)
    finally:
        Proc.stop_all()
        for db in flush:
            with contextlib.suppress(redis.RedisError):
                db.flushdb()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    table(results, args)
    stages_report(results)
    traffic(results, dbs)
    state_changes(results, dbs)
    print(f"\nwall time {time.monotonic() - started:.0f} s; load average at end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine "
          "shows here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
