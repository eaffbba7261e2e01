"""Shared test setup: caches go to a temporary folder and nothing is downloaded."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache_offline(tmp_path_factory: pytest.TempPathFactory):
    saved = {k: os.environ.get(k) for k in ("CAGNET_CACHE", "CAGNET_OFFLINE")}
    os.environ["CAGNET_CACHE"] = str(tmp_path_factory.mktemp("cagnet-cache"))
    os.environ["CAGNET_OFFLINE"] = "1"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
