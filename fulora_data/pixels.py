"""Pixel helpers shared by the builders, the generated-image format and the audit: identity and encoding.

Bit depth: PIL opens a 16-bit grayscale PNG as ``I;16`` (or ``I``), and its ``convert("L")`` clips every
value above 255 to white, so a 16-bit scan became 74 % white. Here 16-bit samples are scaled by their
value range, as the PNG specification defines them (a sample is a fraction of ``2**depth - 1``):
``round(v * 255 / 65535)``. Images PIL cannot map to 8 bits this way (32-bit integers beyond 16 bits,
floating point) are refused by name, never clipped.
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def eight_bit(image: Image.Image, where: str = "image") -> Image.Image:
    """The image with 8-bit samples: 16-bit grayscale scaled by value range to ``L``; others unchanged.

    Raises:
        DataError: For a floating-point image or integers outside 0-65535, naming ``where``.
    """
    import numpy as np

    from fulora_data.errors import DataError

    if image.mode == "F":
        raise DataError(f"{where} has floating-point pixels (mode F), which fulora cannot map to 8 bits")
    if image.mode not in (*SIXTEEN_BIT_MODES, "I"):
        return image
    array = np.asarray(image).astype(np.int64)
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise DataError(
            f"{where} has {image.mode} pixels from {array.min()} to {array.max()}, beyond 16 bits; "
            "fulora reads 8- and 16-bit images only"
        )
    scaled = (array * 255 + 32767) // 65535  # round(v * 255 / 65535), exactly, in integers
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def as_gray(image: Image.Image, where: str = "image") -> Image.Image:
    """The image as 8-bit grayscale (``L``), 16-bit samples scaled by value range (never clipped)."""
    image = eight_bit(image, where)
    return image.convert("L") if image.mode != "L" else image.copy()


def decode_gray(data: bytes, where: str = "image") -> Image.Image:
    """Decode image bytes to the datasets' declared mode, 8-bit grayscale (``L``), at the right scale."""
    with Image.open(io.BytesIO(data)) as image:
        return as_gray(image, where)


def eight_bit_bytes(data: bytes, where: str = "image") -> bytes:
    """Image bytes with 8-bit samples: a 16-bit (or 32-bit integer) image re-encoded as an 8-bit PNG.

    8-bit images come back as the same bytes (a PNG's header is read without decoding), so a build stores
    exactly what the source holds unless the datasets' ``L`` decoding would clip it.
    """
    if data[:8] == _PNG_SIGNATURE and len(data) > 25 and data[24] != 16:
        return data
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in (*SIXTEEN_BIT_MODES, "I", "F"):
            return data
        return png_bytes(as_gray(image, where))


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
