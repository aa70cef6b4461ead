"""Module-scoped fixtures for `fulora compare` tests: random Inception weights and tiny generated sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fulora_data.compare.features import random_inception_weights
from fulora_data.samples import png_bytes, render_plane_image

SIZE = 75  # the smallest input torchvision's inception_v3 takes: the tests' forward passes stay cheap


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return random_inception_weights(
        tmp_path_factory.mktemp("weights") / "inception_random.pth", seed=0, calibrate_size=SIZE
    )


def _generated_set(folder: Path, per_plane: dict[str, int], *, seed: int, shift: int = 0) -> Path:
    """A generated folder whose images are ``render_plane_image`` draws, brightened by ``shift``."""
    from fulora_data.generated import GeneratedWriter, GenerationRecord
    from fulora_data.taxonomy import prompt_for

    rng = np.random.default_rng(seed)
    with GeneratedWriter(folder, shard_size=50, info={"command": "tests"}) as writer:
        index = 0
        for plane, count in per_plane.items():
            for _ in range(count):
                pixels = np.asarray(render_plane_image(plane, (96, 72), rng), dtype=np.int16) + shift
                record = GenerationRecord(
                    image_id=f"{index:05d}-{index}",
                    plane=plane,
                    prompt=prompt_for(plane),
                    negative_prompt="",
                    sampler="EulerDiscreteScheduler",
                    steps=20,
                    guidance_scale=7.5,
                    seed=index,
                    width=96,
                    height=72,
                    base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
                    base_model_revision="0" * 40,
                    adapter="fulora/lora-rank8",
                    adapter_revision="1" * 40,
                    lora_rank=8,
                    generation_index=index,
                )
                writer.add(png_bytes(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))), record)
                index += 1
    return folder


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sets")
    counts = {"Fetal brain": 4, "Fetal femur": 4}
    return {
        "base": _generated_set(root / "base", counts, seed=0),
        "copy": _generated_set(root / "copy", counts, seed=0),
        "near": _generated_set(root / "near", counts, seed=0, shift=15),
        "far": _generated_set(root / "far", counts, seed=0, shift=60),
        "no-femur": _generated_set(root / "no-femur", {"Fetal brain": 4}, seed=5),
    }
