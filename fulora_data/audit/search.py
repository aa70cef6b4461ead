"""Pair search over 64-bit perceptual hashes and thumbnails, and nearest neighbours over thumbnails.

Near duplicates must satisfy two conditions (``fulora_data.audit.thresholds``): pHashes at most ``t`` bits
apart **and** thumbnail similarity at least ``s``. ``hamming_pairs`` generates candidates that can satisfy
both without comparing all pairs, and is exact: it returns every pair within ``t`` bits that could reach
the similarity, i.e. no true near-duplicate pair is ever missed.

* **pHash bands.** The 64 bits are split into ``t + 1`` bands; two hashes that differ in at most ``t`` bits
  leave at least one band untouched (pigeonhole), so only hashes equal on some band are compared.
* **Principal-axis grid.** Thumbnails are unit vectors, so similarity ``>= s`` means Euclidean distance
  ``<= r = sqrt(2 - 2 s)`` (0.2 at 0.98). Along any unit axis two such vectors differ by at most ``r``
  (Cauchy-Schwarz), and on ``k`` orthonormal axes their projected distance is at most ``r`` too. Each image
  falls in a grid cell of side ``w >= r`` over its coordinates on the thumbnails' first ``k`` principal
  axes; two images within ``r`` lie in the same or a neighbouring cell on every axis (their cell indices
  differ by at most 1). So only images equal on a band **and** in neighbouring cells are compared, and a
  candidate is kept when its Hamming distance is at most ``t`` and its projected distance at most ``r``.
  The axes only need to be orthonormal for this to hold; being principal makes the cells selective.

The work is one sort and ``(3**k + 1) / 2`` sorted look-ups per band (linear up to a log factor), plus
the candidate pairs. The candidates (pairs close in bits and on the axes) grow with the square of the
set's density; what keeps the growth sub-quadratic at ES scale is that they are few. ``benchmarks/bench_audit.py``
measures it: on procedural planes varied as real scans vary (median pHash distance 30 bits, as in the
real FETAL_PLANES_DB sample) 16 candidates at 6,148 images and 386 at 24,592, and the search grows about
7x from 1x to 4x. On the unvaried procedural planes (one fan, median 22 bits) about 24,000 and 383,000
pairs lie within 4 bits, and they are close on the principal axes too, so the grid prunes almost none and
the search grows quadratically (still below the brute force at 1x).
"""

from __future__ import annotations

import numpy as np

from fulora_data.audit.thresholds import HASH_BITS


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the bitwise Hamming distances between two arrays of ``uint64`` hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


DEFAULT_AXES = 3
"""Principal axes of the thumbnail grid: (3**3 + 1) / 2 = 14 cell look-ups per band."""

MAX_AXES = 4
_MAX_CELLS = 256
"""Cells per axis at most: a tiny radius widens the cells (still exact) rather than overflow the keys."""


def _band_bounds(threshold: int) -> list[tuple[int, int]]:
    bands = threshold + 1
    return [(k * HASH_BITS // bands, (k + 1) * HASH_BITS // bands) for k in range(bands)]


def _ragged(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand ``counts[i]`` consecutive positions from ``starts[i]``: ``(owner, position)`` per element."""
    owners = np.repeat(np.arange(len(counts)), counts)
    ends = np.cumsum(counts)
    positions = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - counts - starts, counts)
    return owners, positions


def _grid(coords: np.ndarray, radius: float) -> tuple[np.ndarray, list[int]]:
    """Cell code of each row of ``coords`` and the code steps to its neighbouring cells.

    Each axis is cut into cells at least ``radius`` wide, so two rows at most ``radius`` apart on an axis
    have cell indices at most 1 apart there. Cell indices start at 1 and the code's radix leaves room for
    index 0 and ``cells + 1``, so a neighbour's code is the row's code plus one of the returned steps.
    Only half of the ``3**k - 1`` steps are returned (the first non-zero component positive): the other
    half finds the same pairs from the other side.
    """
    low = coords.min(axis=0)
    span = coords.max(axis=0) - low
    width = np.maximum(radius, span / _MAX_CELLS)
    width = np.where(width > 0, width, 1.0)
    cells = np.floor((coords - low) / width).astype(np.int64) + 1
    base = _MAX_CELLS + 3
    strides = base ** np.arange(coords.shape[1], dtype=np.int64)
    steps = []
    for offset in np.ndindex(*(3,) * coords.shape[1]):
        shift = np.asarray(offset) - 1
        nonzero = shift[shift != 0]
        if nonzero.size and nonzero[0] > 0:
            steps.append(int(shift @ strides))
    return cells @ strides, steps


def _neighbour_pairs(keys: np.ndarray, steps: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j``, whose keys are equal or differ by one of ``steps``.

    Sort once, then one ``searchsorted`` per step: the work is ``O(n log n)`` per step plus the pairs.
    """
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    n = len(keys)
    # Equal keys: each sorted position with the positions after it in its run.
    ends = np.searchsorted(ordered, ordered, side="right")
    firsts, seconds = [], []
    owner, partner = _ragged(np.arange(1, n + 1), ends - np.arange(1, n + 1))
    firsts.append(owner)
    seconds.append(partner)
    for step in steps:
        wanted = ordered + step
        lo = np.searchsorted(ordered, wanted, side="left")
        hi = np.searchsorted(ordered, wanted, side="right")
        owner, partner = _ragged(lo, hi - lo)
        firsts.append(owner)
        seconds.append(partner)
    a, b = order[np.concatenate(firsts)], order[np.concatenate(seconds)]
    return np.minimum(a, b), np.maximum(a, b)


def hamming_pairs(
    hashes: np.ndarray,
    threshold: int,
    projection: np.ndarray | None = None,
    radius: float = np.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find every pair of hashes at most ``threshold`` bits apart (and, optionally, close on projections).

    Args:
        hashes: ``uint64`` hashes, one per image.
        threshold: The largest Hamming distance reported (0 to 63).
        projection: Optional coordinates of each image on one axis (shape ``(n,)``) or on ``k``
            orthonormal axes (shape ``(n, k)``, ``k <= 4``); pairs whose projected Euclidean distance
            exceeds ``radius`` are left out, using the grid described in the module docstring. The audit
            passes ``principal_projection`` of the unit thumbnails with ``radius = sqrt(2 - 2 s)`` plus a
            margin for rounding: a pair with similarity at least ``s`` is never left out.
        radius: See ``projection``; ``inf`` (or no projection) searches the pHash bands alone.

    Returns:
        Arrays ``(i, j, distance)`` with ``i < j``, sorted by ``(i, j)``: exactly the pairs within
        ``threshold`` bits whose projected distance is at most ``radius``.

    Raises:
        ValueError: If ``projection`` does not have one row per hash or has more than 4 axes.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    empty = np.zeros(0, np.int64)
    if n < 2:
        return empty, empty, empty
    coords = None
    if projection is not None and np.isfinite(radius):
        coords = np.asarray(projection, dtype=np.float64)
        coords = coords[:, None] if coords.ndim == 1 else coords
        if coords.ndim != 2 or len(coords) != n or not 1 <= coords.shape[1] <= MAX_AXES:
            raise ValueError(
                f"projection must have shape ({n},) or ({n}, k) with 1 <= k <= {MAX_AXES}, "
                f"got {np.shape(projection)!r}"
            )
    if coords is not None:
        cell, steps = _grid(coords, radius)
        cell_count = int(cell.max()) + max(steps) + 1
    found = []
    for low, high in _band_bounds(threshold):
        mask = np.uint64((1 << (high - low)) - 1)
        keys = (hashes >> np.uint64(low)) & mask
        if coords is None:
            a, b = _neighbour_pairs(keys, [])
        else:
            # Band values ranked to 0..n-1, so band and cell fit in one int64 key.
            _, rank = np.unique(keys, return_inverse=True)
            a, b = _neighbour_pairs(rank.astype(np.int64) * cell_count + cell, steps)
        # Verify each band's candidates at once, so only true pairs are kept for de-duplication.
        close = hamming(hashes[a], hashes[b]) <= threshold
        if coords is not None:
            close &= np.square(coords[a] - coords[b]).sum(axis=1) <= radius * radius
        found.append(a[close] * n + b[close])
    codes = np.unique(np.concatenate(found))
    first, second = codes // n, codes % n
    return first, second, hamming(hashes[first], hashes[second])


def principal_projection(vectors: np.ndarray, axes: int = DEFAULT_AXES, *, sample: int = 4096) -> np.ndarray:
    """Each row's coordinates on (approximately) the rows' first ``axes`` principal axes.

    The axes are found by subspace iteration on at most ``sample`` evenly spaced rows, which costs far less
    than the eigen-decomposition of the full covariance. They are orthonormal to float64 precision (QR),
    which is all the search's no-miss guarantee needs; how close they are to the true principal axes only
    decides how much the grid prunes.

    Returns:
        A float64 array of shape ``(n, axes)`` (fewer columns if the rows have fewer dimensions).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    axes = min(axes, vectors.shape[1]) if vectors.ndim == 2 else axes
    if len(vectors) < 2:
        return np.zeros((len(vectors), axes), dtype=np.float64)
    rows = np.unique(np.linspace(0, len(vectors) - 1, min(sample, len(vectors))).astype(np.int64))
    centred = vectors[rows] - vectors[rows].mean(axis=0)
    width = min(axes + 6, vectors.shape[1])
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(vectors.shape[1], width)))[0]
    for _ in range(12):
        basis = np.linalg.qr(centred.T @ (centred @ basis))[0]
    # Rayleigh-Ritz: rotate the basis onto the sample's principal directions within it, largest first.
    reduced = centred @ basis
    _, rotation = np.linalg.eigh(reduced.T @ reduced)
    return vectors @ (basis @ rotation[:, ::-1][:, :axes])


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
