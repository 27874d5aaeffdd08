"""A client generated from the demo's spec with ``openapi-python-client``
drives a job end to end: send the job header, read the 202, poll the
status, fetch the result."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import typing as t

import pytest
from openapi_spec_validator import validate
from servers import serve_app

from example_app import create_app

PACKAGE = "jobify_demo_client"


@pytest.fixture(scope="module")
def demo() -> t.Iterator[t.Any]:
    app = create_app({"JOBIFY_STORE": "memory://"})
    yield app
    app.extensions["jobify"].shutdown(1)


@pytest.fixture(scope="module")
def generated(demo, tmp_path_factory) -> t.Iterator[t.Any]:
    tmp = tmp_path_factory.mktemp("generated")
    spec = demo.test_client().get("/openapi.json").get_json()
    validate(spec)
    (tmp / "spec.json").write_text(json.dumps(spec))
    # No post hooks: the generator would run ruff on the code (slow, and
    # not what this test checks); --meta none: a package, no project files.
    (tmp / "config.yaml").write_text(f"post_hooks: []\npackage_name_override: {PACKAGE}\n")
    subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", "spec.json",
         "--meta", "none", "--output-path", PACKAGE, "--config", "config.yaml"],
        cwd=tmp, check=True, capture_output=True, timeout=120,
    )
    sys.path.insert(0, str(tmp))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_generated_client_runs_a_job(demo, generated):
    post_status_long = importlib.import_module(f"{PACKAGE}.api.status.post_status_long")
    get_job = importlib.import_module(f"{PACKAGE}.api.jobify.get_job")
    get_job_result = importlib.import_module(f"{PACKAGE}.api.jobify.get_job_result")
    models = importlib.import_module(f"{PACKAGE}.models")
    with serve_app(demo) as base:
        client = generated.Client(base_url=base, timeout=30)
        accepted = post_status_long.sync_detailed(
            client=client, seconds=0.2, x_job_flag=models.PostStatusLongXJobFlag.ON,
            prefer="job-timeout=30")
        assert accepted.status_code == 202
        body = accepted.parsed
        assert isinstance(body, models.AcceptedJob)
        assert accepted.headers["Location"] == body.status_url
        assert accepted.headers["Preference-Applied"] == "job-timeout=30"
        for _ in range(100):
            status = get_job.sync_detailed(job_id=body.job_id, client=client, wait=2.0)
            record = status.parsed
            assert isinstance(record, models.Job)
            if record.status not in ("pending", "running"):
                break
        assert record.status == "succeeded"
        assert record.error is None
        assert record.options.timeout == 30.0
        result = get_job_result.sync_detailed(job_id=body.job_id, client=client)
        assert result.status_code == 200
        assert json.loads(result.content)["timeTook"] >= 200
        # The direct call answers the same shape, parsed by the generated model.
        direct = post_status_long.sync_detailed(client=client, seconds=0)
        assert isinstance(direct.parsed, models.LongPing)
