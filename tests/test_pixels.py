"""Bit depth in fulora_data/pixels.py: 16-bit scans scaled by value range, never clipped to white."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pixel_fixtures import gradient16, sixteen_bit_png

from fulora_data.errors import DataError
from fulora_data.pixels import decode_gray, eight_bit_bytes, pixel_digest, png_bytes


def test_a_16_bit_png_decodes_scaled_by_value_range_not_clipped():
    values = gradient16()
    gray = np.asarray(decode_gray(sixteen_bit_png(values)))
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert gray.dtype == np.uint8 and np.array_equal(gray, expected)
    assert (gray == 255).mean() < 0.01  # PIL's convert("L") made ~99 % of this gradient white


def test_eight_bit_bytes_converts_16_bit_and_leaves_8_bit_bytes_alone():
    data = sixteen_bit_png(gradient16())
    converted = eight_bit_bytes(data)
    with Image.open(io.BytesIO(converted)) as image:
        assert image.mode == "L"
        assert np.array_equal(np.asarray(image), np.asarray(decode_gray(data)))
    assert pixel_digest(converted) == pixel_digest(data)  # one identity, before and after
    eight = png_bytes(Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)))
    assert eight_bit_bytes(eight) is eight


def test_floating_point_images_are_refused_by_name():
    buffer = io.BytesIO()
    Image.fromarray(np.ones((4, 4), np.float32)).save(buffer, format="TIFF")
    with pytest.raises(DataError, match="scan.tif has floating-point pixels"):
        decode_gray(buffer.getvalue(), "scan.tif")
