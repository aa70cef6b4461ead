"""Shared test set-up: a session-wide fresh Hugging Face home and a stand-in Hub (see hub_fixtures.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "hub_fixtures",
    "generate_fixtures",
]  # a stand-in Hub at HF_ENDPOINT (tests/hub_fixtures.py)

REPO_ROOT = Path(__file__).resolve().parents[1]  # test files in room folders use this, whatever their depth
SHARED = REPO_ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not present")


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    """Give each test fresh Hugging Face cache variables.

    ``datasets`` and ``huggingface_hub`` read these once, at import, so in-process they keep the session-wide
    values that ``hub_fixtures.pytest_configure`` set; these per-test values reach subprocesses and any code
    that reads the environment when it runs. Tests pass ``cache_dir`` explicitly wherever they build data.
    """
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_ENDPOINT", os.environ.get("FULORA_TEST_HF_ENDPOINT", "http://127.0.0.1:9"))
    yield
