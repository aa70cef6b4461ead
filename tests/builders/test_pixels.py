"""The builders store 16-bit scans as 8-bit by value range (fulora_data/builders/base.py), so the declared
``Image(mode="L")`` decoding never clips them to white."""

from __future__ import annotations

import numpy as np
from PIL import Image
from pixel_fixtures import gradient16, sixteen_bit_png

from fulora_data import prepare
from fulora_data.pixels import decode_gray
from fulora_data.samples import write_spanish_source


def test_a_16_bit_scan_in_the_spanish_source_is_stored_scaled_not_clipped(tmp_path):
    folder = write_spanish_source(tmp_path / "es", per_plane=6, test_per_plane=2, seed=1)
    victim = sorted((folder / "Images").glob("*.png"))[0]
    with Image.open(victim) as image:
        shape = (image.height, image.width)
    values = np.resize(gradient16(), shape)
    victim.write_bytes(sixteen_bit_png(values))
    splits = prepare.prepare("spanish", "full", source=folder, cache_dir=tmp_path / "cache")
    rows = [row for split in splits.values() for row in split if row["image_id"] == victim.stem]
    assert len(rows) == 1
    decoded = np.asarray(rows[0]["image"])  # what load_dataset users get: Image(mode="L")
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(decoded, expected)
    assert np.array_equal(decoded, np.asarray(decode_gray(victim.read_bytes())))
    assert (decoded == 255).mean() < 0.01
