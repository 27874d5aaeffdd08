"""Flask-Jobify against a plain Flask request, in one run, on gunicorn.

Prints each figure raw and as a ratio to the plain request measured in the
same run, next to the targets of the core issue. Load generators: wrk (raw
throughput: plain requests/s and 202/s) and a small threaded client (job
round trips: submit, long-poll, fetch the result). Both share the machine's
cores with the server, so compare ratios, not absolute numbers.

    python benchmarks/bench_jobs.py [--duration 5] [--stores memory,sqlite]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
WRK_LUA = 'wrk.method = "POST"\nwrk.headers["X-Job-Flag"] = "ON"\n'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn serving bench_app with one store."""

    def __init__(self, store: str, workers: int, threads: int) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-b", self.url[7:], "-w", str(workers),
             "--threads", str(threads), "-k", "gthread", "--pythonpath", HERE,
             "--log-level", "warning", "bench_app:create_app()"],
            env={**os.environ, "JOBIFY_STORE": store},
        )
        for _ in range(200):
            try:
                requests.get(self.url + "/plain", timeout=5)
                return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError("gunicorn did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def wrk(url: str, duration: float, connections: int, lua: str | None = None) -> dict[str, float]:
    """Run wrk; return requests/s, p50/p99 in ms and the non-2xx count."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{int(duration)}s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if lua:
            script.write(lua)
            script.flush()
            args[1:1] = ["-s", script.name]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": ms("50%"), "p99": ms("99%"), "non2xx": float(bad.group(1)) if bad else 0.0}


def threaded(duration: float, threads: int, one: t.Callable[[requests.Session], None]) -> dict[str, float]:
    """Call ``one`` in a loop from ``threads`` threads; per-second rate and latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def loop() -> None:
        session = requests.Session()
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            one(session)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    latencies.sort()
    return {"rps": len(latencies) / duration, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000}


def job_round_trip(url: str) -> t.Callable[[requests.Session], None]:
    def one(session: requests.Session) -> None:
        accepted = session.post(url + "/trivial", headers={"X-Job-Flag": "ON"})
        assert accepted.status_code == 202, accepted.text
        status_url = url + accepted.headers["Location"]
        record = session.get(status_url + "?wait=5").json()
        while record["status"] in ("pending", "running"):
            record = session.get(f"{status_url}?wait=5&version={record['version']}").json()
        assert session.get(status_url + "/result").status_code == 200
    return one


def lookups(store_url: str, count: int) -> float:
    """Mean seconds of GET /jobs/<id> (Flask test client) with ``count`` jobs stored."""
    from bench_app import create_app
    from flask_jobify.models import Job, JobStatus, StoredResponse, new_job_id

    os.environ["JOBIFY_STORE"] = store_url
    app = create_app()
    store = app.extensions["jobify"].store
    ids = []
    for n in range(count):
        job = Job(id=new_job_id(), operation="trivial", method="POST", path="/trivial",
                  created_at=time.time() + n * 1e-6)
        store.create(job)
        store.update(job.id, {"status": JobStatus.SUCCEEDED},
                     result=StoredResponse(200, [("Content-Type", "application/json")], b"{}"))
        ids.append(job.id)
    client = app.test_client()
    probe = [ids[(n * 7919) % len(ids)] for n in range(2000)]
    for job_id in probe[:200]:
        client.get(f"/jobs/{job_id}")
    started = time.perf_counter()
    for job_id in probe:
        assert client.get(f"/jobs/{job_id}").status_code == 200
    return (time.perf_counter() - started) / len(probe)


def peak_rss_after(jobs: int) -> float:
    """MiB of peak RSS of a process holding ``jobs`` finished jobs (memory store)."""
    code = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from bench_app import create_app\n"
        "from flask_jobify.models import Job, JobStatus, StoredResponse, new_job_id\n"
        "import os; os.environ['JOBIFY_STORE'] = 'memory://'\n"
        "store = create_app().extensions['jobify'].store\n"
        "for n in range(%d):\n"
        "    job = Job(id=new_job_id(), operation='trivial', method='POST', path='/trivial')\n"
        "    store.create(job)\n"
        "    store.update(job.id, {'status': JobStatus.SUCCEEDED}, result=StoredResponse("
        "200, [('Content-Type', 'application/json')], b'{\"ok\":true}\\n'))\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    ) % (HERE, jobs)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def line(name: str, value: float, unit: str, ratio: float | None = None, target: str = "") -> None:
    shown = f"{ratio:5.2f}x plain" if ratio is not None else " " * 11
    print(f"  {name:<44} {value:>10.1f} {unit:<6} {shown}   {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--lookup-jobs", type=int, default=100_000)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found (apt-get install -y wrk): falling back to the threaded Python client")
    tmp = tempfile.mkdtemp()
    for name in args.stores.split(","):
        if name == "sqlite":
            try:
                import flask_jobify.stores.sqlite  # noqa: F401
            except ImportError as exc:
                print(f"\nsqlite store: skipped, flask_jobify.stores.sqlite not available ({exc})")
                continue
        url = "memory://" if name == "memory" else f"sqlite:///{tmp}/bench-{time.time_ns()}.db"
        # The memory store lives in one process: one worker. SQLite is shared: two.
        workers, threads = (1, 16) if name == "memory" else (2, 8)
        server = Server(url, workers, threads)
        try:
            print(f"\n{name} store: gunicorn -w {workers} --threads {threads} (gthread); "
                  f"wrk -t2 -c16 {args.duration:g}s; threaded client 16 threads")
            if shutil.which("wrk"):
                plain = wrk(server.url + "/plain", args.duration, 16)
                accepted = wrk(server.url + "/trivial", args.duration, 16, WRK_LUA)
            else:
                plain = threaded(args.duration, 16, lambda s: s.get(server.url + "/plain").raise_for_status())
                accepted = threaded(args.duration, 16, lambda s: s.post(
                    server.url + "/trivial", headers={"X-Job-Flag": "ON"}).raise_for_status())
                accepted["non2xx"] = 0.0
            line("plain GET, wrk", plain["rps"], "req/s", 1.0)
            line("plain p50 / p99, wrk", plain["p50"], "ms", None, f"p99 {plain['p99']:.1f} ms")
            line("202 Accepted at concurrency 16, wrk", accepted["rps"], "req/s",
                 accepted["rps"] / plain["rps"], f"target >= 0.40x; non-2xx {accepted['non2xx']:.0f}")
            time.sleep(2)  # let the backlog of accepted jobs drain
            plain_py = threaded(args.duration, 16, lambda s: s.get(server.url + "/plain").raise_for_status())
            jobs = threaded(args.duration, 16, job_round_trip(server.url))
            target = ">= 0.25x" if name == "memory" else ">= 0.20x"
            line("plain GET, threaded client", plain_py["rps"], "req/s", 1.0)
            line("trivial jobs completed end to end", jobs["rps"], "jobs/s",
                 jobs["rps"] / plain_py["rps"], f"target {target}")
            line("  same, vs wrk plain req/s (other client)", jobs["rps"], "jobs/s",
                 jobs["rps"] / plain["rps"], f"target {target}")
            line("job end-to-end p50 (3 requests)", jobs["p50"], "ms", jobs["p50"] / plain_py["p50"],
                 f"target < 4x; plain p50 {plain_py['p50']:.1f} ms")
            line("job end-to-end p99", jobs["p99"], "ms", jobs["p99"] / plain_py["p99"])
        finally:
            server.stop()
        small = lookups(url if name == "memory" else f"sqlite:///{tmp}/small-{time.time_ns()}.db", 10)
        big = lookups(url if name == "memory" else f"sqlite:///{tmp}/big-{time.time_ns()}.db",
                      args.lookup_jobs)
        line(f"status lookup at 10 jobs (test client)", small * 1e6, "us")
        line(f"status lookup at {args.lookup_jobs:,} jobs", big * 1e6, "us", None,
             f"{big / small:.2f}x the 10-job lookup; target <= 1.2x")
    print()
    line("peak RSS after 100,000 finished jobs (memory)", peak_rss_after(100_000), "MiB")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
