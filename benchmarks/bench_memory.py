"""Memory of a web process holding queued jobs with large request bodies.

Two figures, each from ``gunicorn -w 1 --threads 4`` and the worker's
resident memory (VmRSS) before and after:

- N uploads of SIZE MB submitted as jobs while the only job thread is busy
  (they wait in the queue, their bodies captured), against plain Flask
  answering the same uploads synchronously;
- JOBS small jobs run to their end on the SQLite store (the default), with
  the store's file and WAL sizes.

Run it from the repository root::

    python benchmarks/bench_memory.py --uploads 4 --size-mb 50 --jobs 10000
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import requests

APP = textwrap.dedent("""
    import threading, time
    from flask import Flask, request
    from flask_jobify import Jobify
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://", JOBIFY_MAX_WORKERS=1, JOBIFY_SHUTDOWN_GRACE=0)
    jobify = Jobify(app)
    release = threading.Event()

    @app.post("/busy")
    @jobify.job
    def busy():
        release.wait(600)
        return "done"

    @app.post("/upload")
    @jobify.job
    def upload():
        return {"size": len(request.get_data())}

    @app.post("/small")
    @jobify.job
    def small():
        return {"echo": request.get_json(), "pad": "x" * 1000}
""")
APP_SQLITE = APP.replace('JOBIFY_STORE="memory://", JOBIFY_MAX_WORKERS=1',
                         'JOBIFY_STORE="sqlite:///" + __import__("os").environ["BENCH_DB"],'
                         ' JOBIFY_MAX_WORKERS=4, JOBIFY_MAX_QUEUED=100000')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def worker_pid(master: int) -> int:
    children = open(f"/proc/{master}/task/{master}/children").read().split()
    return int(children[0])


def serve(source: str, folder: str) -> tuple[subprocess.Popen[bytes], str]:
    with open(os.path.join(folder, "memapp.py"), "w") as file:
        file.write(source)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "-b",
         f"127.0.0.1:{port}", "--timeout", "600", "memapp:app"],
        cwd=folder, env={**os.environ, "BENCH_DB": os.path.join(folder, "jobs.db"),
                         "PYTHONPATH": os.pathsep.join(
                             [folder, os.getcwd(), os.environ.get("PYTHONPATH", "")])},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url + "/jobs", timeout=5)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    return server, url


def measure_jobs(jobs: int) -> tuple[float, float, float, float]:
    """RSS before and after ``jobs`` small jobs ran, and the SQLite file and
    WAL sizes (MB) after."""
    folder = tempfile.mkdtemp()
    server, url = serve(APP_SQLITE, folder)
    try:
        pid = worker_pid(server.pid)
        session = requests.Session()
        before = rss_mb(pid)
        ids = []
        for n in range(jobs):
            answer = session.post(url + "/small", json={"n": n}, headers={"X-Job-Flag": "ON"})
            assert answer.status_code == 202, answer.status_code
            ids.append(answer.headers["X-Job-Id"])
        for job_id in ids[-50:]:
            while session.get(f"{url}/jobs/{job_id}?wait=10").json()["status"] != "succeeded":
                pass
        time.sleep(0.5)
        db = os.path.join(folder, "jobs.db")
        size = os.path.getsize(db) / 1e6
        wal = os.path.getsize(db + "-wal") / 1e6 if os.path.exists(db + "-wal") else 0.0
        return before, rss_mb(pid), size, wal
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


def measure(uploads: int, size_mb: int, flag: bool) -> tuple[float, float]:
    folder = tempfile.mkdtemp()
    server, url = serve(APP, folder)
    try:
        pid = worker_pid(server.pid)
        headers = {"X-Job-Flag": "ON"} if flag else {}
        requests.post(url + "/busy", headers={"X-Job-Flag": "ON"}, timeout=10)
        before = rss_mb(pid)
        body = b"x" * (size_mb * 1024 * 1024)
        for _ in range(uploads):
            answer = requests.post(url + "/upload", data=body, headers=headers, timeout=120)
            assert answer.status_code == (202 if flag else 200), answer.status_code
        time.sleep(0.5)
        return before, rss_mb(pid)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    plain = measure(args.uploads, args.size_mb, flag=False)
    jobs = measure(args.uploads, args.size_mb, flag=True)
    print(f"{args.uploads} uploads of {args.size_mb} MB, gunicorn -w 1 --threads 4 (VmRSS, MB)")
    print(f"  answered synchronously:  {plain[0]:6.1f} -> {plain[1]:6.1f}")
    print(f"  queued as jobs:          {jobs[0]:6.1f} -> {jobs[1]:6.1f}"
          f"  (x{(jobs[1] - jobs[0]) / max(plain[1] - plain[0], 1):.1f} the synchronous growth)")
    if args.jobs:
        before, after, size, wal = measure_jobs(args.jobs)
        print(f"{args.jobs} small jobs run to their end, SQLite store:")
        print(f"  VmRSS {before:6.1f} -> {after:6.1f} MB; jobs.db {size:6.1f} MB,"
              f" WAL {wal:6.1f} MB")


if __name__ == "__main__":
    main()
