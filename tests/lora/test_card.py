"""The LoRA card's pictures and data line (``fulora_data.lora.card``), without training an adapter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from fulora_data.lora.card import SAMPLES_DIR, slug, training_digest, write_samples
from fulora_data.samples import render_plane_image

PLANES = ["Fetal abdomen", "Fetal brain", "Fetal femur"]


def test_samples_are_one_labelled_grid_and_one_file_per_plane(tmp_path):
    rng = np.random.default_rng(0)
    images = []
    for plane in PLANES:
        path = tmp_path / f"validation-{slug(plane)}.png"
        render_plane_image(plane, (64, 64), rng).save(path)
        images.append(path)
    grid = write_samples(images, tmp_path / "adapter", PLANES)
    assert sorted(p.name for p in (tmp_path / "adapter" / SAMPLES_DIR).iterdir()) == [
        f"{slug(p)}.png" for p in PLANES
    ]
    for plane, source in zip(PLANES, images, strict=True):
        with (
            Image.open(tmp_path / "adapter" / SAMPLES_DIR / f"{slug(plane)}.png") as copy,
            Image.open(source) as src,
        ):
            assert np.array_equal(np.asarray(copy.convert("L")), np.asarray(src.convert("L")))
    with Image.open(grid) as picture:
        picture.load()
        gray = np.asarray(picture.convert("L"))
    # 64 px samples are shown at 256 px under a label band: three across, readable.
    assert picture.width >= 3 * 256 and picture.height >= 256 + 20
    assert gray[:20].min() < 100  # the plane names are written above the samples


@dataclass
class _Example:
    digest: str
    prompt: str


def test_training_digest_depends_on_images_and_captions_not_order():
    a = [_Example("1" * 64, "a photo of fetal brain"), _Example("2" * 64, "a photo of fetal femur")]
    assert training_digest(a) == training_digest(list(reversed(a)))
    assert training_digest(a) != training_digest([a[0], _Example("2" * 64, "a photo of fetal thorax")])
