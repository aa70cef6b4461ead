"""Small real-looking sources and a one-epoch classifier run, shared by tests that train by repo id."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fulora_data import samples
from fulora_data.cli import main


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("pull_sources")
    return {
        "spanish": samples.write_spanish_source(root / "es", per_plane=6, test_per_plane=1, seed=11),
        "synthetic": samples.write_synthetic_release(root / "syn", per_plane=3, seed=12)[0],
        "african": samples.write_african_source(root / "af", patients_per_country=2, seed=13),
        "cache": root / "cache",
    }


def _train(args: list[str], out: Path) -> None:
    base = ["train", "classifier", "--arch", "resnet18", "--weights", "none", "--image-size", "32"]
    base += ["--epochs", "1", "--batch-size", "8", "--num-workers", "0", "--validation-size", "4"]
    result = CliRunner().invoke(main, [*base, *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
