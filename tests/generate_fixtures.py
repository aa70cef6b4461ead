"""Session-wide fixtures of the generation tests: the tiny base, tiny adapters and one reference run.

Registered in ``conftest.py``'s ``pytest_plugins`` so every test file shares them (each is built once).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from lora_fixtures import make_kohya_file, make_tiny_adapter

# The reference run: 2 planes x 2 samplers x 3 images at 16 px, in batches of 2 and shards of 4 images.
REFERENCE = {
    "planes": "brain,femur",
    "samplers": "euler,unipc",
    "per_plane": 3,
    "width": 16,
    "height": 16,
    "steps": 2,
    "batch_size": 2,
    "shard_size": 4,
    "seed": 7,
}


def reference_args(world: dict, out: Path, **changes) -> list[str]:
    """``fulora generate`` arguments of the reference run, with ``changes`` (``None`` drops an option)."""
    options = {"base": world["base"], "adapter": world["adapter"], **REFERENCE, "cpu": True, **changes}
    args = []
    for key, value in options.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return [*args, "--out", str(out), "--no-progress"]


def pixel_digests(folder: Path) -> dict[str, str]:
    """image id -> sha256 of its PNG, read from the shards themselves."""
    from fulora_data.generated import iter_images, read_generated

    _, images = read_generated(folder)
    return {
        image.record.image_id: hashlib.sha256(data).hexdigest() for image, data in iter_images(folder, images)
    }


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The tiny base pipeline folder, a fulora adapter, a kohya file of the same weights, a training set."""
    from fulora_data import samples
    from fulora_data.tiny_sd import save_tiny_pipeline

    root = tmp_path_factory.mktemp("generate_world")
    return {
        "base": str(save_tiny_pipeline(root / "tiny-sd")),
        "adapter": str(make_tiny_adapter(root / "adapter", rank=4, seed=0, clip_skip=2)),
        "kohya": str(make_kohya_file(root / "kohya" / "fetal_ultrasound_v1.0.safetensors", rank=4, seed=0)),
        "spanish": samples.write_spanish_source(root / "es", per_plane=20, test_per_plane=0, seed=0),
        "root": root,
    }


@pytest.fixture(scope="session")
def reference_run(tiny_world):
    """One uninterrupted single-process run with the memorisation check: its folder and CLI output."""
    import json

    from click.testing import CliRunner

    from fulora_data.cli import main

    out = tiny_world["root"] / "reference"
    args = reference_args(
        tiny_world,
        out,
        against="spanish/lora-100",
        against_source=tiny_world["spanish"],
        cache_dir=tiny_world["root"] / "cache",
    )
    result = CliRunner().invoke(main, ["generate", *args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    return {"out": out, "summary": summary, "digests": pixel_digests(out)}
