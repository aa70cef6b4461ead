"""One smoke study, run once per session and shared read-only by the tests of tests/study/.

fulora is imported inside the fixture: a conftest's top-level import would load ``datasets`` and
``huggingface_hub`` before the stand-in Hub's plugin points them at ``HF_ENDPOINT``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """A finished ``smoke`` study folder (the demo test's sizes: 1 epoch, 2 images per plane and sampler),
    what ``run_study`` returned and what it logged."""
    from fulora_data.demo import demo_changes
    from fulora_data.study.run import run_study

    folder = tmp_path_factory.mktemp("smoke") / "study"
    lines: list[str] = []
    result = run_study(folder, "smoke", changes=demo_changes(epochs=1, per_plane=2), log=lines.append)
    return folder, result, lines
