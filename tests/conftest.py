"""Shared test set-up: every test runs with its own Hugging Face cache and no real Hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["hub_fixtures"]  # a stand-in Hub at HF_ENDPOINT (tests/hub_fixtures.py)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not present")


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    """Point every Hugging Face cache at a fresh folder and keep tests off the network."""
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_ENDPOINT", os.environ.get("FULORA_TEST_HF_ENDPOINT", "http://127.0.0.1:9"))
    yield
