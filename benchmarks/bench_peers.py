"""Flask-Jobify side by side with plain Flask, Flask-Executor, Celery and RQ.

One trivial view behind the same HTTP shape for every peer
(``peers_app.py``), on gunicorn (gthread, 8 threads per worker), measured
in alternating rounds; every figure is also a ratio to plain Flask in the
same round. Installs nothing: run it from a virtualenv that has
``flask-executor``, ``celery`` and ``rq`` (and ``redis-server`` and ``wrk``
on the PATH). Starts its own Redis on a free port.

    python benchmarks/bench_peers.py [--duration 3] [--rounds 2]
"""
from __future__ import annotations

import argparse
import contextlib
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
FLAG = {"X-Job-Flag": "ON"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str) -> None:
    for _ in range(400):
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class Peer:
    """One served app (and its worker process, for Celery and RQ)."""

    def __init__(self, name: str, peer: str, workers: int, env: dict[str, str],
                 worker_cmd: list[str] | None = None) -> None:
        self.name, self.peer = name, peer
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "PEER": peer, "PYTHONPATH": os.pathsep.join(
            [HERE, os.environ.get("PYTHONPATH", "")]), **env}
        self.processes = [subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-b", self.url[7:], "-w", str(workers),
             "--threads", "8", "-k", "gthread", "--log-level", "warning",
             "peers_app:create_app()"], env=env, cwd=HERE)]
        if worker_cmd:
            self.processes.append(subprocess.Popen(
                worker_cmd, env=env, cwd=HERE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        wait_for(self.url + "/nothing")

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by this peer's processes and their children."""
        tick, total = os.sysconf("SC_CLK_TCK"), 0
        pids = [process.pid for process in self.processes]
        for pid in list(pids):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as f:
                pids += [int(child) for child in f.read().split()]
        for pid in pids:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)


def wrk(url: str, duration: float, headers: dict[str, str]) -> float:
    """wrk -c16: requests/s of POST ``url`` with ``headers`` (all must be 2xx)."""
    lua = 'wrk.method = "POST"\n' + "".join(
        f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua)
        script.flush()
        out = subprocess.run(["wrk", "-t2", "-c16", f"-d{int(duration)}s", "-s", script.name,
                              url], capture_output=True, text=True, check=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        print(f"    ({bad.group(1)} non-2xx answers from {url})")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def threaded(duration: float, threads: int,
             one: t.Callable[[requests.Session], None],
             session: t.Callable[[], requests.Session] = requests.Session) -> dict[str, float]:
    """``one`` in a loop from ``threads`` threads: per second, p50, p99 (ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def loop() -> None:
        s = session()
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            one(s)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    latencies.sort()
    return {"rps": len(latencies) / duration, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000}


def submit_only(peer: Peer) -> t.Callable[[requests.Session], None]:
    headers = FLAG if peer.peer == "jobify" else {}

    def one(s: requests.Session) -> None:
        assert s.post(peer.url + "/work", headers=headers).status_code in (200, 202)
    return one


def round_trip(peer: Peer, how: str) -> t.Callable[[requests.Session], None]:
    """Submit, then get the result in hand, the peer's way (``how``)."""
    url = peer.url

    def one(s: requests.Session) -> None:
        if peer.peer == "plain":
            assert s.post(url + "/work").json() == {"ok": True}
            return
        if how == "session":  # a flask_jobify.client.JobSession
            assert s.post(url + "/work").json() == {"ok": True}
            return
        accepted = s.post(url + "/work", headers=FLAG if peer.peer == "jobify" else {})
        assert accepted.status_code == 202, accepted.text
        status_url = url + accepted.headers["Location"]
        if peer.peer != "jobify":
            while s.get(status_url).json()["status"] != "done":
                time.sleep(0.002)
            return
        if how == "poll":
            while s.get(status_url).json()["status"] in ("pending", "running"):
                time.sleep(0.002)
        else:  # long-poll
            record = s.get(status_url + "?wait=5").json()
            while record["status"] in ("pending", "running"):
                record = s.get(f"{status_url}?wait=5&version={record['version']}").json()
        assert s.get(status_url + "/result").json() == {"ok": True}
    return one


def drain(peer: Peer, settle: bool = False) -> None:
    """Wait for the jobs a flood of submissions left queued: one more job
    run to its end (the queues are first in, first out). ``settle``: then
    until the peer's processes have used no CPU for 0.3 s (the other
    worker's queue, Celery's and RQ's workers)."""
    if peer.peer == "plain":
        return
    round_trip(peer, "poll")(requests.Session())
    if settle:
        deadline = time.monotonic() + 120
        used = peer.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = peer.cpu_seconds()
            if now - used < 0.03:
                break
            used = now


def measure(peer: Peer, how: str, duration: float) -> dict[str, float]:
    drain(peer)
    session: t.Callable[[], requests.Session] = requests.Session
    if how == "session":
        from flask_jobify.client import JobSession
        session = JobSession
    jobs = threaded(duration, 8, round_trip(peer, how), session)
    single = threaded(duration / 2, 1, round_trip(peer, how), session)
    return {"jobs": jobs["rps"], "p99": jobs["p99"], "p50": single["p50"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for tool in ("wrk", "redis-server"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install -y wrk redis-server)")
    tmp = tempfile.mkdtemp()
    port = free_port()
    redis_server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                                     "--appendonly", "no", "--dir", tmp],
                                    stdout=subprocess.DEVNULL)
    redis_url = f"redis://127.0.0.1:{port}"
    py = sys.executable
    peers: list[Peer] = []
    try:
        time.sleep(0.5)
        peers = [
            Peer("plain Flask", "plain", 2, {}),
            Peer("Flask-Executor (-w 1)", "executor", 1, {}),
            Peer("Celery + Redis", "celery", 2, {"PEER_REDIS": redis_url + "/1"},
                 [py, "-m", "celery", "-A", "peers_app:celery", "worker", "--pool", "threads",
                  "-c", "4", "--without-heartbeat", "--without-gossip", "--without-mingle",
                  "-l", "warning"]),
            Peer("RQ + Redis", "rq", 2, {"PEER_REDIS": redis_url + "/2"},
                 [py, "-m", "rq.cli", "worker", "--worker-class", "rq.worker.SimpleWorker",
                  "--url", redis_url + "/2", "peers"]),
            Peer("Jobify memory (-w 1)", "jobify", 1, {"JOBIFY_STORE": "memory://"}),
            Peer("Jobify SQLite (-w 2)", "jobify", 2,
                 {"JOBIFY_STORE": f"sqlite:///{tmp}/jobs.db"}),
            Peer("Jobify Redis (-w 2)", "jobify", 2, {"JOBIFY_STORE": redis_url + "/3"}),
        ]
        ways = {"plain": ["sync"], "executor": ["poll"], "celery": ["poll"], "rq": ["poll"],
                "jobify": ["session", "long-poll", "poll"]}
        rows: dict[str, dict[str, list[float]]] = {}

        def note(name: str, figure: str, value: float) -> None:
            rows.setdefault(name, {}).setdefault(figure, []).append(value)

        d = args.duration
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            plain = peers[0]
            base_wrk = wrk(plain.url + "/work", d, {})
            base_py = threaded(d, 16, submit_only(plain))["rps"]
            base = measure(plain, "sync", d)
            note("plain Flask", "wrk", base_wrk)
            note("plain Flask", "py16", base_py)
            note("plain Flask", "p50", base["p50"])
            for peer in peers[1:]:
                # wrk ratios are to plain Flask measured just before: the
                # machine's load drifts within a round.
                note(peer.name, "wrk", wrk(peer.url + "/work", d, FLAG)
                     / wrk(plain.url + "/work", d, {}))
                # A flood leaves jobs queued: they would run during the next figure.
                drain(peer, settle=True)
                if peer.peer == "jobify":
                    note(peer.name, "wrk no header", wrk(peer.url + "/work", d, {})
                         / wrk(plain.url + "/work", d, {}))
                note(peer.name, "py16", threaded(d, 16, submit_only(peer))["rps"] / base_py)
                drain(peer, settle=True)
                for how in ways[peer.peer]:
                    got = measure(peer, how, d)
                    label = f" {how}" if peer.peer == "jobify" else ""
                    note(peer.name + label, "jobs/s c8", got["jobs"])
                    note(peer.name + label, "p50 c1 (x plain)", got["p50"] / base["p50"])
                    note(peer.name + label, "p50 c1 ms", got["p50"])
                    note(peer.name + label, "p99 c8 ms", got["p99"])
        print(f"\n{'':34} {'wrk POST c16':>14} {'wrk no header':>14} {'202/s py c16':>14}"
              f" {'jobs/s c8':>12} {'p50 c1 ms':>12} {'(x plain)':>12} {'p99 c8 ms':>12}")

        def span(values: list[float] | None, fmt: str) -> str:
            if not values:
                return ""
            low, high = min(values), max(values)
            return fmt.format(low) if fmt.format(low) == fmt.format(high) else (
                fmt.format(low) + "-" + fmt.format(high))

        for name, figures in rows.items():
            ratio = "{:.2f}" if name != "plain Flask" else "{:,.0f}"
            print(f"{name:34} {span(figures.get('wrk'), ratio):>14}"
                  f" {span(figures.get('wrk no header'), '{:.2f}'):>14}"
                  f" {span(figures.get('py16'), ratio):>14}"
                  f" {span(figures.get('jobs/s c8'), '{:.0f}'):>12}"
                  f" {span(figures.get('p50 c1 ms'), '{:.1f}'):>12}"
                  f" {span(figures.get('p50 c1 (x plain)'), '{:.1f}x'):>12}"
                  f" {span(figures.get('p99 c8 ms'), '{:.0f}'):>12}")
        print("\nplain Flask row: raw requests/s and ms; other rows: ratio to plain Flask"
              " in the same round (wrk, 202/s) or raw (jobs/s, ms).")
    finally:
        for peer in peers:
            peer.stop()
        redis_server.terminate()
        redis_server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
