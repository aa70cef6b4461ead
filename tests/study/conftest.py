"""One smoke study, run once per session and shared read-only by the tests of tests/study/."""

from __future__ import annotations

import pytest

from fulora_data.demo import demo_changes
from fulora_data.study.run import run_study

# The demo test's sizes: 1 classifier epoch, 2 images per plane and sampler.
SMOKE_CHANGES = demo_changes(epochs=1, per_plane=2)


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """A finished ``smoke`` study folder and what ``run_study`` returned and logged."""
    folder = tmp_path_factory.mktemp("smoke") / "study"
    lines: list[str] = []
    result = run_study(folder, "smoke", changes=SMOKE_CHANGES, log=lines.append)
    return folder, result, lines
