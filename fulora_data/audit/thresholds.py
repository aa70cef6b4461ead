"""The audit's feature spaces and thresholds, defined once and validated in one place.

Two feature spaces describe every image, both computed from its grayscale pixels (the datasets' ``L``
mode) in one decode:

* **pHash**: the 64-bit perceptual hash of ``imagehash.phash`` (``hash_size=8``: the sign of the 8x8
  lowest DCT coefficients of a 32x32 Lanczos reduction against their median). Distances are Hamming
  distances, 0 to 64 bits. Re-encoding, brightness or contrast changes, mild noise and rescaling move it by
  0 to 4 bits.
* **thumbnail**: the image reduced to 32x32 pixels by box averaging, flattened, centred and scaled to unit
  length. Similarity is the dot product of two such vectors: the Pearson correlation of the thumbnails,
  1.0 for copies, insensitive to brightness and contrast shifts.

A pair of images is a *near duplicate* when their pHashes differ in at most ``threshold`` bits **and** their
thumbnail similarity is at least ``similarity``. The pHash alone is not enough for ultrasound: every image
shares the same bright fan on black, which dominates the lowest frequencies, so unrelated images of one
plane can share a hash (measured on the procedural planes: 0.25% of distinct pairs lie within 4 bits, some
at 0). The thumbnail similarity separates them: distinct procedural pairs stay below 0.978 while re-encoded,
brightness-shifted (+10 grey levels or x1.15), noisy (sigma 8) and 80%-rescaled copies stay above 0.99.

A synthetic image is *memorised* when its nearest training image by thumbnail similarity reaches
``similarity``. Shifted or cropped copies fall below both criteria (similarity about 0.8-0.9); catching them
needs a learned copy-detection embedding, which this audit does not ship.
"""

from __future__ import annotations

from fulora_data.errors import OptionValueError

HASH_BITS = 64
THUMBNAIL_SIDE = 32

DEFAULT_THRESHOLD = 4
"""Default Hamming threshold (bits of 64) for near-duplicate candidates."""

MAX_THRESHOLD = 12
"""Above 12 of 64 bits the pHash matches unrelated images and the band index degenerates to all pairs."""

DEFAULT_SIMILARITY = 0.98
"""Default thumbnail similarity (correlation) a near duplicate or a memorised image must reach."""

FEATURE_SPACES = {
    "phash": "imagehash.phash, 64 bits (hash_size=8) of the grayscale image; Hamming distance",
    "thumbnail": (
        f"{THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} box-downsampled grayscale pixels, centred and L2-normalised; "
        "similarity = dot product (Pearson correlation)"
    ),
    "exact": "SHA-256 of the grayscale pixels and size (fulora_data.pixels.pixel_digest)",
}


def check_threshold(threshold: object) -> int:
    """Return a valid Hamming threshold or raise.

    Raises:
        ConfigError: If ``threshold`` is not an integer from 0 to ``MAX_THRESHOLD``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= MAX_THRESHOLD:
        raise OptionValueError(
            f"--threshold must be a whole number of pHash bits from 0 to {MAX_THRESHOLD}, got {threshold!r}"
        )
    return threshold


def check_similarity(similarity: object) -> float:
    """Return a valid thumbnail similarity threshold or raise.

    Raises:
        ConfigError: If ``similarity`` is not a number in (0, 1].
    """
    if isinstance(similarity, bool) or not isinstance(similarity, (int, float)) or not 0 < similarity <= 1:
        raise OptionValueError(
            f"--similarity must be a number greater than 0 and at most 1, got {similarity!r}"
        )
    return float(similarity)
