"""``flask jobs``: every command against real stores (click's CliRunner
through Flask's), and ``watch`` as a real process under a pseudo-terminal."""
from __future__ import annotations

import collections
import json
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import typing as t

import pytest
from conftest import drop_redis_keys, store_url
from flask import Flask, request
from helpers import finish

from flask_jobify import Jobify, current_job
from flask_jobify.errors import NotRerunnable
from flask_jobify.overview import parse_duration, percentile
from flask_jobify.rerun import rerun

FLAG = {"X-Job-Flag": "ON"}


class Harness:
    def __init__(self, app: Flask, gate: threading.Event, runs: collections.Counter[str]):
        self.app, self.gate, self.runs = app, gate, runs
        self.client = app.test_client()

    def submit(self, path: str, user: str | None = None, **kwargs: t.Any) -> str:
        headers = dict(FLAG, **({"X-User": user} if user else {}))
        answer = self.client.post(path, headers=headers, **kwargs)
        assert answer.status_code == 202, answer.get_data(as_text=True)
        return t.cast(str, answer.get_json()["jobId"])

    def finish(self, job_id: str, user: str | None = None) -> dict[str, t.Any]:
        """Long-poll, as ``user``, until the job ends; return its record."""
        headers = {"X-User": user} if user else {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            record = self.client.get(f"/jobs/{job_id}?wait=5", headers=headers).get_json()
            if record["status"] not in ("pending", "running"):
                return t.cast("dict[str, t.Any]", record)
        raise AssertionError(f"job {job_id} did not finish")

    def run(self, *args: str, input: str | None = None) -> t.Any:
        return self.app.test_cli_runner().invoke(args=["jobs", *args], input=input)


def make_app(url: str, **config: t.Any) -> tuple[Flask, Harness]:
    gate = threading.Event()
    runs: collections.Counter[str] = collections.Counter()
    app = Flask("cli_app")
    app.config.update({"JOBIFY_STORE": url, "JOBIFY_LEASE_SECONDS": 1.0,
                       "JOBIFY_KEEP_FAILED_REQUESTS": True, **config})
    jobify = Jobify(app)

    @jobify.owner_loader
    def owner() -> str | None:
        return request.headers.get("X-User")

    @app.post("/work")
    @jobify.job
    def work() -> t.Any:
        key = request.args.get("key", "")
        runs[key] += 1
        if request.args.get("fail") and runs[key] == 1:
            raise RuntimeError(f"boom {key}")
        return {"key": key, "run": runs[key]}

    @app.post("/block")
    @jobify.job
    def block() -> t.Any:
        while not gate.wait(0.05):
            current_job.raise_if_cancelled()
        return {"done": True}

    return app, Harness(app, gate, runs)


@pytest.fixture
def harness(store_backend: str, tmp_path: t.Any) -> t.Iterator[Harness]:
    app, harness = make_app(store_url(store_backend, tmp_path))
    yield harness
    harness.gate.set()
    state = app.extensions["jobify"]
    state.shutdown(1)
    if store_backend == "redis":
        drop_redis_keys(state.store.prefix)
    state.store.close()


def test_cli_list_filters_and_json(harness: Harness) -> None:
    ok_a = harness.submit("/work?key=a", user="alice")
    ok_b = harness.submit("/work?key=b", user="bob")
    failed = harness.submit("/work?key=c&fail=1", user="alice")
    for job_id, user in ((ok_a, "alice"), (ok_b, "bob"), (failed, "alice")):
        harness.finish(job_id, user)
    everything = harness.run("list")
    assert everything.exit_code == 0, everything.output
    assert everything.stdout.splitlines()[0].split()[:3] == ["ID", "STATUS", "OPERATION"]
    assert all(job_id in everything.output for job_id in (ok_a, ok_b, failed))
    only_failed = harness.run("list", "--status", "failed")
    assert failed in only_failed.output and ok_a not in only_failed.output
    alice = harness.run("list", "--owner", "alice", "--json")
    assert alice.exit_code == 0
    records = json.loads(alice.stdout)
    assert {record["id"] for record in records} == {ok_a, failed}
    assert records[0]["id"] == failed  # newest first
    assert records[0]["created_at"].endswith("Z")
    assert harness.run("list", "--owner", "", "--json").stdout.strip() == "[]"
    blocked = harness.run("list", "--operation", "block")
    assert blocked.stdout.strip() == "No jobs."
    assert harness.run("list", "--limit", "1", "--json").stdout.count('"id"') == 1
    assert harness.run("list", "--status", "nope").exit_code == 2


def test_cli_show_record_timeline_and_error(harness: Harness) -> None:
    failed = harness.submit("/work?key=s&fail=1", user="alice")
    harness.finish(failed, "alice")
    shown = harness.run("show", "--", failed)
    assert shown.exit_code == 0, shown.output
    assert f"Job {failed}" in shown.output
    assert "status     failed" in shown.output
    assert "started" in shown.output and "finished" in shown.output
    assert "RuntimeError" in shown.output
    assert json.loads(harness.run("show", "--json", "--", failed).stdout)["status"] == "failed"
    hidden = harness.run("show", "--owner", "bob", "--", failed)  # not bob's: as the API, 404
    assert hidden.exit_code == 1 and "No job" in hidden.output
    for bad in ("A" * 22, "not-an-id"):
        missing = harness.run("show", bad)
        assert missing.exit_code == 1 and "No job" in missing.output


def test_cli_cancel_running_pending_finished_and_unknown(harness: Harness) -> None:
    running = harness.submit("/block")
    deadline = time.monotonic() + 10
    while harness.client.get(f"/jobs/{running}").get_json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    done = harness.submit("/work?key=d")
    harness.finish(done)
    answer = harness.run("cancel", "--", running, done, "A" * 22)
    assert answer.exit_code == 1  # one was not found
    assert f"{running}: cancellation requested" in answer.output
    assert f"{done}: already succeeded" in answer.output
    assert f"{'A' * 22}: no such job" in answer.output
    assert harness.finish(running)["status"] == "cancelled"
    assert harness.run("cancel", "--", done).exit_code == 0


def test_cli_purge_counts_confirms_and_deletes(harness: Harness) -> None:
    failed = [harness.submit(f"/work?key=p{n}&fail=1") for n in range(2)]
    ok = harness.submit("/work?key=ok")
    for job_id in (*failed, ok):
        harness.finish(job_id)
    assert harness.run("purge", "--status", "failed", "--older-than", "7d").stdout.strip() \
        == "No jobs to purge."
    refused = harness.run("purge", "--status", "failed", input="n\n")
    assert refused.exit_code == 1 and "Forget 2 job(s)" in refused.output
    assert len(json.loads(harness.run("list", "--json").stdout)) == 3
    confirmed = harness.run("purge", "--status", "failed", input="y\n")
    assert confirmed.exit_code == 0 and "Purged 2 job(s)." in confirmed.output
    left = json.loads(harness.run("list", "--json").stdout)
    assert [record["id"] for record in left] == [ok]
    assert harness.run("purge", "--yes").stdout.strip() == "Purged 1 job(s)."
    assert harness.run("purge", "--older-than", "soon").exit_code == 2


def test_cli_stats_counts_and_percentiles(harness: Harness) -> None:
    ids = [harness.submit(f"/work?key=t{n}") for n in range(4)]
    ids.append(harness.submit("/work?key=tf&fail=1"))
    for job_id in ids:
        harness.finish(job_id)
    found = json.loads(harness.run("stats", "--json").stdout)
    assert found["byStatus"]["succeeded"] == 4 and found["byStatus"]["failed"] == 1
    assert found["byOperation"] == {"work": {"succeeded": 4, "failed": 1}}
    work = found["durations"]["work"]
    assert work["count"] == 5
    assert 0 <= work["run_p50"] <= work["run_p95"]
    assert 0 <= work["wait_p50"] <= work["wait_p95"]
    table = harness.run("stats", "--window", "15m")
    assert table.exit_code == 0 and "Finished in the last 15.0m" in table.output
    assert "RUN P95" in table.output


def test_cli_rerun_runs_the_failed_request_again_as_a_new_job(
        harness: Harness, store_backend: str) -> None:
    failed = harness.submit("/work?key=r&fail=1", user="alice", json={"n": 1})
    assert harness.finish(failed, "alice")["status"] == "failed"
    ok = harness.submit("/work?key=r2")
    harness.finish(ok)
    answer = harness.run("rerun", "--", failed)
    if store_backend == "memory":  # nothing was saved: no other process could run it
        assert answer.exit_code == 1 and "not kept" in answer.output
        return
    assert answer.exit_code == 0, answer.output
    new_id = answer.stdout.strip()
    # Handed over: this app's sweep for lost jobs (every LEASE_SECONDS / 4) runs it.
    record = harness.finish(new_id, "alice")
    assert record["status"] == "succeeded"
    result = harness.client.get(f"/jobs/{new_id}/result", headers={"X-User": "alice"})
    assert result.get_json() == {"key": "r", "run": 2}
    job = harness.app.extensions["jobify"].store.get(new_id)
    assert job.meta["rerun_of"] == failed and job.owner == "alice"
    not_failed = harness.run("rerun", "--", ok)
    assert not_failed.exit_code == 1 and "only a failed job" in not_failed.output
    assert harness.run("rerun", "A" * 22).exit_code == 1


def test_rerun_in_process_and_without_kept_request(tmp_path: t.Any) -> None:
    app, harness = make_app(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        failed = harness.submit("/work?key=x&fail=1")
        harness.finish(failed)
        state = app.extensions["jobify"]
        with app.app_context():
            job = rerun(state, failed)  # as the dashboard does: on this process's threads
        assert job.meta == {"rerun_of": failed}
        assert harness.finish(job.id)["status"] == "succeeded"
    finally:
        app.extensions["jobify"].shutdown(1)
    plain, plain_harness = make_app(f"sqlite:///{tmp_path / 'plain.db'}",
                                    JOBIFY_KEEP_FAILED_REQUESTS=False)
    try:
        failed = plain_harness.submit("/work?key=y&fail=1")
        plain_harness.finish(failed)
        with pytest.raises(NotRerunnable, match="KEEP_FAILED_REQUESTS"):
            rerun(plain.extensions["jobify"], failed)
        answer = plain_harness.run("rerun", "--", failed)
        assert answer.exit_code == 1 and "not kept" in answer.output
    finally:
        plain.extensions["jobify"].shutdown(1)


def test_overview_durations_and_percentiles() -> None:
    assert [parse_duration(text) for text in ("90", "90s", "15m", "2h", "7d", "1w", "0.5h")] \
        == [90, 90, 900, 7200, 604800, 604800, 1800]
    for bad in ("", "-1d", "7 days", "1y"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0


WATCH_APP = """
from flask import Flask
from flask_jobify import Jobify

app = Flask("watched")
app.config["JOBIFY_STORE"] = {url!r}
jobify = Jobify(app)


@app.post("/work")
@jobify.job
def work():
    return {{"ok": True}}
"""


def test_cli_watch_under_a_pseudo_terminal_ends_on_ctrl_c(tmp_path: t.Any) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    (tmp_path / "watched_app.py").write_text(textwrap.dedent(WATCH_APP.format(url=url)))
    sys.path.insert(0, str(tmp_path))
    try:
        import watched_app  # the same app, here, to submit a job the watcher must show
    finally:
        sys.path.remove(str(tmp_path))
    client = watched_app.app.test_client()
    job_id = client.post("/work", headers=FLAG).get_json()["jobId"]
    finish(client, job_id)
    watched_app.app.extensions["jobify"].shutdown(1)
    main, child = pty.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "watched_app", "jobs", "watch",
         "--interval", "0.2"],
        stdin=child, stdout=child, stderr=child, cwd=tmp_path, env=env, start_new_session=True)
    os.close(child)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while seen.count(b"Jobs of watched") < 2:  # two refreshes
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([main], [], [], 1)
            if ready:
                seen += os.read(main, 65536)
        assert job_id.encode() in seen
        assert b"\x1b[H\x1b[J" in seen  # redrawn in place on a terminal
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
