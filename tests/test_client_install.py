"""The client where only requests is installed: no Flask, no server stack.

A fresh virtualenv gets ``requests`` from the package index and this
source tree on its path; it runs jobs against a real server started here,
from the test's own environment. Skipped when the virtualenv cannot be
made or requests cannot be installed (no network), except on CI
(``CI=true``), where it must run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
from client_app import create_app
from servers import serve_app

ROOT = Path(__file__).resolve().parent.parent

#: Run in the client-only virtualenv with the server's URL as argv[1].
CLIENT_SCRIPT = r"""
import importlib.util, json, sys
assert importlib.util.find_spec("flask") is None, "this virtualenv must not have Flask"
import flask_jobify.client as client
from flask_jobify.client import JobAdapter, JobSession, PollPolicy
import requests
url = sys.argv[1]
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"flask", "werkzeug", "flask_smorest",
                                                          "marshmallow", "apispec", "blinker"})
s = JobSession(poll=PollPolicy(backoff_factor=0.01, inline_wait=0, long_poll_result=False))
echo = s.post(url + "/echo", json={"only": "requests"}, timeout=30)
head = s.head(url + "/binary", timeout=30)
job = s.submit("POST", url + "/echo", json={"n": 2})
print(json.dumps({
    "loaded": loaded,
    "echo": [r.status_code for r in echo.history] + [echo.status_code, echo.json()["json"]],
    "head": [head.status_code, head.headers["Content-Length"], len(head.content)],
    "job": [job.result(timeout=30).json()["json"], job.delete()],
}))
"""


def run(*command: str | Path, **kwargs: t.Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], check=False, capture_output=True,
                          text=True, timeout=240, **kwargs)


def unavailable(reason: str) -> t.NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the client-only virtualenv is needed on CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def client_only_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtualenv with requests and nothing else."""
    venv = tmp_path_factory.mktemp("client-only") / "venv"
    made = run(sys.executable, "-m", "venv", venv)
    if made.returncode != 0:
        unavailable(f"python -m venv failed: {made.stderr[-500:]}")
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    installed = run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "requests>=2.28", "urllib3>=2")
    if installed.returncode != 0:
        unavailable(f"pip could not install requests: {installed.stderr[-500:]}")
    return python


@pytest.mark.timeout(600)
def test_client_runs_jobs_with_only_requests_installed(client_only_python: Path) -> None:
    with serve_app(create_app()) as url:
        done = run(client_only_python, "-c", CLIENT_SCRIPT, url,
                   env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT),
                        "PYTHONNOUSERSITE": "1"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["loaded"] == []
    assert result["echo"] == [202, 200, 200, {"only": "requests"}]  # 202, last status, result
    assert result["head"] == [200, str(64 * 1024), 0]
    assert result["job"] == [{"n": 2}, False]
