"""16-bit grayscale test images, shared by the bit-depth tests of pixels, builders and LoRA data."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fulora_data.pixels import png_bytes


def sixteen_bit_png(values: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG (PIL mode I;16) of ``values``."""
    image = Image.fromarray(values.astype(np.uint16))
    assert image.mode == "I;16"
    return png_bytes(image)


def gradient16() -> np.ndarray:
    return (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)  # 0 .. 64491
