"""Memory of a web process holding queued jobs with large request bodies.

Starts ``gunicorn -w 1 --threads 4`` on an app whose only job thread is
busy, submits N uploads of SIZE MB as jobs (they wait in the queue, their
bodies captured), and prints the worker's resident memory (VmRSS) before
and after, with plain Flask's figure for the same uploads answered
synchronously as the reference. Run it from the repository root::

    python benchmarks/bench_memory.py --uploads 4 --size-mb 50
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
""")


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


def measure(uploads: int, size_mb: int, flag: bool) -> tuple[float, float]:
    folder = tempfile.mkdtemp()
    with open(os.path.join(folder, "memapp.py"), "w") as file:
        file.write(APP)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "-b",
         f"127.0.0.1:{port}", "--timeout", "600", "memapp:app"],
        cwd=folder, env={**os.environ, "PYTHONPATH": os.pathsep.join(
            [folder, os.getcwd(), os.environ.get("PYTHONPATH", "")])},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(url + "/jobs", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
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
    args = parser.parse_args()
    plain = measure(args.uploads, args.size_mb, flag=False)
    jobs = measure(args.uploads, args.size_mb, flag=True)
    print(f"{args.uploads} uploads of {args.size_mb} MB, gunicorn -w 1 --threads 4 (VmRSS, MB)")
    print(f"  answered synchronously:  {plain[0]:6.1f} -> {plain[1]:6.1f}")
    print(f"  queued as jobs:          {jobs[0]:6.1f} -> {jobs[1]:6.1f}"
          f"  (x{(jobs[1] - jobs[0]) / max(plain[1] - plain[0], 1):.1f} the synchronous growth)")


if __name__ == "__main__":
    main()
