"""LoRA training pixels (fulora_data/lora/data.py ``pixels``) of a 16-bit scan: scaled, not clipped to +1."""

from __future__ import annotations

import numpy as np
import pytest
from pixel_fixtures import gradient16, sixteen_bit_png

torch = pytest.importorskip("torch")


def test_lora_pixels_of_a_16_bit_png_match_its_8_bit_conversion():
    from fulora_data.lora.data import pixels

    values = gradient16()
    tensor = pixels(sixteen_bit_png(values), (64, 48))
    assert tuple(tensor.shape) == (3, 48, 64)
    expected = np.round(values.astype(np.float64) * 255 / 65535) / 127.5 - 1.0
    np.testing.assert_allclose(tensor[0].numpy(), expected, atol=2 / 127.5)  # bicubic at the same size
    assert (tensor >= 0.999).float().mean().item() < 0.01  # today 74 % of a scan's pixels sat at +1
