"""The jobs API: bad input gets clear JSON errors; listing and pagination."""
from __future__ import annotations

import time
import typing as t

import pytest
from helpers import finish
from test_extension import FLAG

from flask_jobify.models import new_job_id


def error_of(response: t.Any) -> dict[str, t.Any]:
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize("path", ["/jobs/abc", "/jobs/" + "x" * 23, "/jobs/%00%01/result",
                                  "/jobs/" + "!" * 22, "/jobs/" + "a" * 22 + "%0A",
                                  "/jobs/" + "a" * 22 + "%0A/result", "/jobs/%0A" + "a" * 22,
                                  "/jobs/" + "a" * 21 + "%C3%A9"])
def test_views_malformed_ids_are_400(client, path):
    for method in ("get", "delete"):
        response = getattr(client, method)(path)
        if path.endswith("/result") and method == "delete":
            assert response.status_code == 405
            continue
        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_job_id"


def test_views_unknown_ids_are_404_everywhere(client):
    job_id = new_job_id()
    for response in (client.get(f"/jobs/{job_id}"), client.get(f"/jobs/{job_id}?wait=1"),
                     client.get(f"/jobs/{job_id}/result"), client.delete(f"/jobs/{job_id}")):
        assert response.status_code == 404
        assert error_of(response)["code"] == "job_not_found"


@pytest.mark.parametrize("method, path", [("put", "/jobs/{id}"), ("post", "/jobs/{id}"),
                                          ("post", "/jobs/{id}/result"), ("delete", "/jobs")])
def test_views_wrong_methods_are_405_json_with_allow(client, method, path):
    response = getattr(client, method)(path.format(id=new_job_id()))
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_views_unknown_paths_under_the_prefix_are_404_json(client):
    response = client.get("/jobs/a/b/c")
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert isinstance(error["message"], str) and error["message"]


@pytest.mark.parametrize("query", [
    "wait=-1", "wait=soon", "limit=0", "limit=1000", "limit=x", "status=done", "cursor=%%%",
    "cursor=bm90LWpzb24",
    # Non-finite, huge, negative and non-ASCII numbers: a 422, never a 500.
    "wait=nan", "wait=inf", "wait=-inf", "wait=1e3", "wait=" + "9" * 400, "wait=%C2%B2",
    "wait=%D9%A1", "wait=%201", "wait=1_0", "version=-1", "version=" + "9" * 5000,
    "version=9223372036854775808", "version=%D9%A1", "version=1.0", "version=nan",
    "limit=%D9%A1", "limit=%205", "limit=5_0", "limit=" + "9" * 5000, "limit=-1", "limit=nan",
    "status=pending%00", "status=%FF", "operation=" + "o" * 201, "cursor=" + "A" * 513,
])
def test_views_bad_arguments_are_422_json(client, query):
    on_job = query.startswith(("wait", "version"))
    path = f"/jobs/{new_job_id()}?{query}" if on_job else "/jobs?" + query
    response = client.get(path)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_argument"


def test_views_result_before_finish_is_409_with_retry_after(app, client):
    gates = app.extensions["gates"]
    job_id = client.post("/blocking", headers=FLAG).get_json()["jobId"]
    assert gates.started.wait(10)
    response = client.get(f"/jobs/{job_id}/result")
    assert response.status_code == 409
    assert error_of(response)["code"] == "job_not_finished"
    assert response.headers["Retry-After"]
    assert client.get(f"/jobs/{job_id}").headers["Retry-After"]
    gates.release.set()
    finish(client, job_id)
    assert "Retry-After" not in client.get(f"/jobs/{job_id}").headers


def test_views_list_newest_first_with_filters_and_cursor(client):
    ids = [client.post("/json", json={}, headers=FLAG).get_json()["jobId"] for _ in range(5)]
    ids.append(client.get("/text", headers=FLAG).get_json()["jobId"])
    for job_id in ids:
        finish(client, job_id)
    seen, cursor = [], None
    while True:
        page = client.get("/jobs?limit=2" + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    texts = client.get("/jobs?operation=text_view").get_json()["jobs"]
    assert [job["id"] for job in texts] == [ids[-1]]
    assert len(client.get("/jobs?status=succeeded").get_json()["jobs"]) == 6
    assert client.get("/jobs?status=failed").get_json()["jobs"] == []


def test_views_long_poll_with_a_stale_version_answers_at_once(app, client):
    gates = app.extensions["gates"]
    job_id = client.post("/blocking", headers=FLAG).get_json()["jobId"]
    assert gates.started.wait(10)
    current = client.get(f"/jobs/{job_id}").get_json()
    assert current["version"] >= 1
    # The client saw an older version: the change it missed comes back at once,
    # although the job stays blocked for the whole 30 s wait otherwise.
    started = time.monotonic()
    answered = client.get(f"/jobs/{job_id}?wait=30&version={current['version'] - 1}").get_json()
    assert time.monotonic() - started < 10  # at once, not after the 30 s wait
    assert answered["version"] == current["version"]
    assert client.get(f"/jobs/{job_id}?version=-1").status_code == 422
    gates.release.set()


@pytest.mark.parametrize("host", ["a" * 64 + ".com", "x..y", "bad host"])
def test_views_a_bad_host_header_under_the_prefix_is_json(client, host):
    response = client.get(f"/jobs/{'A' * 22}", headers={"Host": host})
    assert 400 <= response.status_code < 500  # werkzeug's 400 for a bad Host, or a 404
    assert error_of(response)["code"]
