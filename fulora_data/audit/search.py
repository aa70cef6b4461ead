"""Pair search over 64-bit perceptual hashes and nearest neighbours over thumbnails.

``hamming_pairs`` finds every pair of hashes within ``t`` bits without comparing all pairs: it splits the
64 bits into ``t + 1`` bands and only compares hashes that are equal on at least one band. Two hashes that
differ in at most ``t`` bits leave at least one of the ``t + 1`` bands untouched (pigeonhole), so no pair
within the threshold is missed: the result equals the brute-force search exactly. The work is one sort per
band plus the candidate pairs, whose number depends on how concentrated the hashes are; on the procedural
ES-sized set the benchmark (``benchmarks/bench_audit.py``) measures its growth from 1x to 4x.
"""

from __future__ import annotations

import numpy as np

from fulora_data.audit.thresholds import HASH_BITS


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the bitwise Hamming distances between two arrays of ``uint64`` hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def _band_bounds(threshold: int) -> list[tuple[int, int]]:
    bands = threshold + 1
    return [(k * HASH_BITS // bands, (k + 1) * HASH_BITS // bands) for k in range(bands)]


def _equal_key_pairs(
    keys: np.ndarray, values: np.ndarray | None = None, radius: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Return every pair ``(i, j)``, ``i < j``, of positions with equal keys and values at most ``radius`` apart."""
    order = np.lexsort((values, keys)) if values is not None else np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    sorted_values = values[order] if values is not None else None
    firsts, seconds = [], []
    # Compare each sorted position with the one `offset` further on while its run goes on: the work is the
    # candidate pairs themselves plus one pass per offset up to the longest run. Within a key the values
    # are sorted, so once a partner is beyond the radius every later one is too.
    active = np.arange(len(keys) - 1)
    offset = 1
    while active.size:
        same = sorted_keys[active] == sorted_keys[active + offset]
        if sorted_values is not None:
            same &= sorted_values[active + offset] - sorted_values[active] <= radius
        active = active[same]
        firsts.append(order[active])
        seconds.append(order[active + offset])
        offset += 1
        active = active[active + offset < len(keys)]
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.concatenate(firsts), np.concatenate(seconds)
    return np.minimum(a, b), np.maximum(a, b)


def hamming_pairs(
    hashes: np.ndarray,
    threshold: int,
    projection: np.ndarray | None = None,
    radius: float = np.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find every pair of hashes at most ``threshold`` bits apart (and, optionally, close on a projection).

    Args:
        hashes: ``uint64`` hashes, one per image.
        threshold: The largest Hamming distance reported (0 to 63).
        projection: Optional one number per image; pairs further apart than ``radius`` on it are left out.
            The audit passes each thumbnail's coordinate on the thumbnails' first principal axis: two unit
            vectors with similarity ``s`` differ by at most ``sqrt(2 - 2 s)`` along any unit axis
            (Cauchy-Schwarz), so this prunes no near-duplicate pair and splits crowded hash buckets.
        radius: See ``projection``.

    Returns:
        Arrays ``(i, j, distance)`` with ``i < j``, sorted by ``(i, j)``.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if n < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    found = []
    for low, high in _band_bounds(threshold):
        mask = np.uint64((1 << (high - low)) - 1)
        keys = (hashes >> np.uint64(low)) & mask
        a, b = _equal_key_pairs(keys, projection, radius)
        # Verify each band's candidates at once, so only true pairs are kept for de-duplication.
        close = hamming(hashes[a], hashes[b]) <= threshold
        found.append(a[close] * n + b[close])
    codes = np.unique(np.concatenate(found))
    first, second = codes // n, codes % n
    return first, second, hamming(hashes[first], hashes[second])


def principal_projection(vectors: np.ndarray) -> np.ndarray:
    """Each row's coordinate on the rows' first principal axis (a unit vector)."""
    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.float64)
    centred = vectors - vectors.mean(axis=0)
    _, eigenvectors = np.linalg.eigh(centred.T.astype(np.float64) @ centred)
    return vectors.astype(np.float64) @ eigenvectors[:, -1]


def brute_force_hamming_pairs(
    hashes: np.ndarray, threshold: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The quadratic reference of ``hamming_pairs`` (for tests and the benchmark's baseline)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    distances = hamming(hashes[:, None], hashes[None, :])
    first, second = np.nonzero(np.triu(distances <= threshold, k=1))
    return first, second, distances[first, second]


def nearest(
    queries: np.ndarray, references: np.ndarray, *, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """For each unit-length query vector, the reference with the largest dot product (exact search).

    Args:
        queries: ``(n, d)`` normalised vectors.
        references: ``(m, d)`` normalised vectors, ``m >= 1``.
        chunk: Queries per matrix product (bounds memory to ``chunk * m`` floats).

    Returns:
        ``(index, similarity)``: the nearest reference of each query and their dot product.
    """
    index = np.zeros(len(queries), dtype=np.int64)
    similarity = np.zeros(len(queries), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ references.T
        best = scores.argmax(axis=1)
        index[start : start + chunk] = best
        similarity[start : start + chunk] = scores[np.arange(len(best)), best]
    return index, similarity
