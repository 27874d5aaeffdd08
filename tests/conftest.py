"""Shared fixtures: ``store`` runs a test against every store backend."""
from __future__ import annotations

import os
import typing as t

import pytest

from flask_jobify.stores import store_from_url
from flask_jobify.stores.base import JobStore

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _store_url(backend: str, tmp_path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    raise AssertionError(backend)


@pytest.fixture(params=["memory"])
def store(request, tmp_path) -> t.Iterator[JobStore]:
    store = store_from_url(_store_url(request.param, tmp_path))
    yield store
    store.close()
