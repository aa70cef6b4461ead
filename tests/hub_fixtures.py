"""Pytest plugin: the ``hub_server`` fixture, a stand-in Hugging Face Hub the real clients talk to.

``huggingface_hub`` and ``datasets`` read ``HF_ENDPOINT`` (and ``HF_HUB_DISABLE_XET``, ``HF_HOME``) into module
constants when they are first imported, so setting them inside a test is too late. ``pytest_configure``
runs before any test module is imported: it reserves a local port, points ``HF_ENDPOINT`` at it, and gives
the session a fresh ``HF_HOME``. The port is bound but not listening, so outside ``hub_server`` every Hub
call fails with "connection refused", as an offline machine would; inside, a fresh :class:`StandInHub`
listens on that port for the duration of the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile

import pytest
from hub_server import StandInHub

_state: dict = {}


def _reserve(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))  # bound, never listening: connections are refused
    return sock


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    already = [name for name in ("huggingface_hub", "datasets") if name in sys.modules]
    holder = _reserve()
    url = f"http://127.0.0.1:{holder.getsockname()[1]}"
    home = tempfile.mkdtemp(prefix="fulora-hf-home-")
    _state.update(holder=holder, url=url, home=home, imported_early=already)
    os.environ.update(
        HF_ENDPOINT=url,
        FULORA_TEST_HF_ENDPOINT=url,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=home,
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    # A developer's real token must never reach the stand-in (or the Hub), nor offline or staging switches
    # change what the clients do.
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HUGGINGFACE_CO_STAGING"):
        os.environ.pop(name, None)


def pytest_unconfigure(config):
    if _state.get("holder") is not None:
        _state["holder"].close()
    if _state.get("home"):
        shutil.rmtree(_state["home"], ignore_errors=True)


@pytest.fixture
def hub_server():
    """A fresh, empty stand-in Hub at ``HF_ENDPOINT`` for one test.

    Yields a :class:`hub_server.StandInHub`: ``.url``, ``.token`` (a write token for user ``fulora-tester``,
    member of org ``fulora``), and helpers ``files()``, ``tags()``, ``head()``, ``count()``, ``fail_next()``.
    """
    import datasets
    import huggingface_hub

    seen = {"huggingface_hub": huggingface_hub.constants.ENDPOINT, "datasets": datasets.config.HF_ENDPOINT}
    if (
        any(value != _state["url"] for value in seen.values())
        # (huggingface_hub before 0.32 has no Xet client, nor this constant)
        or getattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True) is False
    ):
        pytest.fail(
            f"the Hub clients were imported before hub_fixtures set HF_ENDPOINT ({seen}, imported early: "
            f"{_state['imported_early']}); load hub_fixtures first via pytest_plugins in the root conftest"
        )
    port = int(_state["url"].rsplit(":", 1)[1])
    _state["holder"].close()
    _state["holder"] = None
    hub = StandInHub(port=port).start()
    try:
        yield hub
    finally:
        hub.stop()
        _state["holder"] = _reserve(port)
