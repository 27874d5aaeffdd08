"""Server-Sent Events figures: latency from a change to a browser, and
streams one gunicorn gthread worker holds.

    PYTHONPATH=.:tests python benchmarks/sse.py [--store sqlite|redis] [--streams 200]

1. Latency: the demo-like app of ``tests/events_app.py`` under gunicorn
   (2 workers); Chromium (Playwright, ``/usr/bin/chromium``) follows a job
   with ``EventSource``; this script changes the job's progress through
   the *other* worker 50 times, writing ``time.time()`` into the message;
   the page records its arrival time. Prints p50/p90/max in ms.
2. Streams: one worker with ``--threads N+8`` and ``JOBIFY_SSE_MAX_STREAMS=N``
   (the cap below the threads, so that other requests, and the 503, get one);
   opens N job streams from threads, then one more, and prints how many
   were held (each got its first event), what the next one got, and the
   worker's resident memory.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import threading
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
from servers import run_gunicorn  # noqa: E402


def _env(store: str) -> dict[str, str]:
    return {"JOBIFY_STORE": store, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}


def latency(store: str, samples: int = 50) -> None:
    from playwright.sync_api import sync_playwright

    with run_gunicorn("events_app:create_app()", workers=2, threads=8, env=_env(store),
                      ready_path="/jobs/openapi.json") as url:
        job_id = requests.post(f"{url}/hold", headers={"X-Job-Flag": "ON"},
                               timeout=10).headers["X-Job-Id"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"{url}/jobs/openapi.json")
            page.evaluate("""(id) => { window.delays = [];
              const es = new EventSource(`/jobs/${id}/events`);
              es.addEventListener("progress", (m) => {
                const msg = JSON.parse(m.data).progress.message;
                const sent = Number(msg.split(":")[1]);
                window.delays.push(Date.now() / 1000 - sent); }); }""", job_id)
            time.sleep(1)
            for _ in range(samples):
                requests.post(f"{url}/touch/{job_id}", timeout=10)
                time.sleep(0.1)
            time.sleep(1)
            delays = sorted(d * 1000 for d in page.evaluate("window.delays"))
            browser.close()
        requests.delete(f"{url}/jobs/{job_id}", timeout=10)
    print(f"latency change->browser ({store.split(':')[0]}, {len(delays)} changes): "
          f"p50 {statistics.median(delays):.1f} ms, p90 {delays[int(len(delays) * .9)]:.1f} ms,"
          f" max {delays[-1]:.1f} ms")


def _cpu_share(pid: str, seconds: float = 3.0) -> float:
    """Share of one core the process used over ``seconds``."""
    def ticks() -> int:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    before = ticks()
    time.sleep(seconds)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK") / seconds


def streams(store: str, count: int) -> None:
    env = {**_env(store), "JOBIFY_SSE_MAX_STREAMS": str(count)}
    with run_gunicorn("events_app:create_app()", workers=1, threads=count + 8, env=env,
                      ready_path="/jobs/openapi.json") as url:
        job_id = requests.post(f"{url}/hold", headers={"X-Job-Flag": "ON"},
                               timeout=10).headers["X-Job-Id"]
        held, responses, lock = [], [], threading.Lock()

        def open_one() -> None:
            response = requests.get(f"{url}/jobs/{job_id}/events", stream=True, timeout=60)
            lines = response.iter_lines()
            for line in lines:
                if line.startswith(b"data:"):
                    with lock:
                        held.append(1)
                        responses.append(response)
                    return

        threads = [threading.Thread(target=open_one) for _ in range(count)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        took = time.monotonic() - began
        extra = requests.get(f"{url}/jobs/{job_id}/events", timeout=10)
        pid = extra.headers.get("X-Pid")
        rss = "?"
        if pid:
            with open(f"/proc/{pid}/status") as status:
                rss = next(line.split()[1] for line in status if line.startswith("VmRSS"))
        cpu = _cpu_share(pid) if pid else float("nan")
        print(f"idle streams cost the worker {cpu:.0%} of one core")
        print(f"streams held by one gthread worker (--threads {count + 8}): {len(held)} in"
              f" {took:.1f} s; one more: {extra.status_code} {extra.text[:60]!r};"
              f" worker RSS {int(rss) // 1024} MiB")
        extra.close()
        for response in responses:
            response.close()
        requests.delete(f"{url}/jobs/{job_id}", timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--streams", type=int, default=200)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        store = (f"sqlite:///{tmp}/jobs.db" if args.store == "sqlite"
                 else f"redis://127.0.0.1:6379/15?prefix=bench-sse-{os.getpid()}")
        latency(store)
        streams(store, args.streams)
