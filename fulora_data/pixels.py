"""Pixel helpers shared by the builders, the generated-image format and the audit: identity and encoding."""

from __future__ import annotations

import hashlib
import io

from PIL import Image


def decode_gray(data: bytes) -> Image.Image:
    """Decode image bytes to the datasets' declared mode, 8-bit grayscale (``L``)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("L") if image.mode != "L" else image.copy()


def png_bytes(image: Image.Image) -> bytes:
    """Encode an image as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pixel_digest(data: bytes) -> str:
    """Return a digest of an image's pixels as the datasets deliver them (grayscale), not of its bytes.

    Two files that decode to the same grayscale pixels have the same digest even when their encodings
    (compression level, PNG chunks, grayscale vs RGB storage of gray content) differ.
    """
    image = decode_gray(data)
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
