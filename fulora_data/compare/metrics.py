"""FID and KID between two sets of features, with bootstrap intervals.

FID (Heusel et al. 2017) follows pytorch-fid's ``calculate_frechet_distance``: the Fréchet distance
between Gaussians fitted to the two feature sets (mean, covariance with ``N - 1``),
``||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))``. Instead of ``scipy.linalg.sqrtm`` of the
2048 x 2048 product, the trace of its square root is computed exactly from eigenvalues: with centred
samples A (n1 x d) and B (n2 x d), the non-zero eigenvalues of S1 S2 are the squared singular values of
``A B^T / sqrt((n1 - 1)(n2 - 1))``, so ``Tr((S1 S2)^(1/2))`` is that matrix's nuclear norm (an n1 x n2
SVD: milliseconds for the study's 35 images, where sqrtm takes seconds and is unstable on the
rank-deficient covariances of so few images). With more images than feature dimensions it is
``sum(sqrt(eig(S1^(1/2) S2 S1^(1/2))))``. Tests check both against the sqrtm formula and a closed form.

KID (Bińkowski et al. 2018) is the unbiased estimate of the squared MMD with the cubic polynomial kernel
``k(x, y) = (x . y / d + 1)^3``, as in clean-fid and torch-fidelity, on all images of the two sets (those
libraries average it over random subsets of 1000 images, which sets this small never reach).

The interval of each is a percentile bootstrap: both sets are resampled with replacement, independently,
``bootstrap`` times. With fewer images than feature dimensions each replicate is computed from one Gram
matrix of the stacked sets (FID and KID need only inner products of the rows), which gives the plain
bootstrap's values (a test checks it) for a small fraction of its cost. Resampling repeats images, which pulls FID up and KID's diagonal-free sums off their
unbiased value: on a set compared with itself (FID 0) every replicate is far above 0, and the plain
percentile interval excluded the estimate it was meant to bracket. The interval is therefore the
replicates' spread around their median, placed around the estimate (the bootstrap's bias, median minus
estimate, is taken off both ends: ``[est - (median - q_low), est + (q_high - median)]``), which always
contains the estimate; FID's lower end is floored at 0, a distance. Read it as the estimate's spread, not
as a confidence interval for the population value.
"""

from __future__ import annotations

import numpy as np

from fulora_data.errors import ConfigError, DataError

FID_MIN_IMAGES = 2048
"""Below this many images per set FID is flagged. With fewer images than the 2048 pool dimensions the
covariance has rank at most N - 1, and FID's small-sample bias (which falls like 1/N, Chong & Forsyth 2020)
dominates differences between sets; pytorch-fid recommends at least 2048 images for this reason."""

KID_MIN_IMAGES = 100
"""Below this many images per set KID is flagged: it is unbiased at any size, but its spread at a few
dozen images is as large as the differences between adapters (the bootstrap interval shows it)."""

DEFAULT_BOOTSTRAP = 200
INTERVAL = 0.95


def _as_features(x, what: str) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise DataError(f"{what} needs at least 2 feature vectors, got an array of shape {array.shape}")
    return array


def fid_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
    """FID between two Gaussians given by means and covariances (the pytorch-fid formula).

    ``Tr((S1 S2)^(1/2))`` is computed as ``sum(sqrt(eig(S1^(1/2) S2 S1^(1/2))))``, which equals it for
    symmetric positive semi-definite matrices and needs no complex arithmetic.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    values, vectors = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = root @ sigma2 @ root
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * cross
    return float(max(value, 0.0))  # a distance; rounding can leave -1e-12


def frechet_distance(x, y, *, route: str = "auto") -> float:
    """FID between two feature sets (rows are images).

    Args:
        x: Features of the first set, ``(n1, d)``.
        y: Features of the second set, ``(n2, d)``.
        route: ``"samples"`` (SVD of the n1 x n2 cross product), ``"features"`` (d x d covariances) or
            ``"auto"`` (the cheaper one). Both give the same value.

    Raises:
        DataError: If a set has fewer than 2 images.
    """
    x, y = _as_features(x, "FID"), _as_features(y, "FID")
    if x.shape[1] != y.shape[1]:
        raise DataError(f"FID needs features of one size, got {x.shape[1]} and {y.shape[1]}")
    n1, n2, d = x.shape[0], y.shape[0], x.shape[1]
    if route == "auto":
        route = "samples" if n1 * n2 * min(n1, n2) <= d**3 else "features"
    a, b = x - x.mean(axis=0), y - y.mean(axis=0)
    if route == "features":
        return fid_from_statistics(x.mean(axis=0), a.T @ a / (n1 - 1), y.mean(axis=0), b.T @ b / (n2 - 1))
    if route != "samples":
        raise ConfigError(f"route must be 'auto', 'samples' or 'features', got {route!r}")
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    diff = x.mean(axis=0) - y.mean(axis=0)
    value = diff @ diff + (a * a).sum() / (n1 - 1) + (b * b).sum() / (n2 - 1) - 2 * cross
    return float(max(value, 0.0))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel ``(x . y / d + 1)^3`` between every row of ``x`` and every row of ``y``."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_inception_distance(x, y) -> float:
    """KID: the unbiased estimate of MMD^2 with the cubic polynomial kernel (may be slightly negative).

    Raises:
        DataError: If a set has fewer than 2 images or the feature sizes differ.
    """
    x, y = _as_features(x, "KID"), _as_features(y, "KID")
    if x.shape[1] != y.shape[1]:
        raise DataError(f"KID needs features of one size, got {x.shape[1]} and {y.shape[1]}")
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def _interval_around(
    values, estimate: float, *, level: float = INTERVAL, floor: float | None = None
) -> tuple[float, float]:
    """The replicates' percentile spread around their median, moved onto ``estimate`` (bias removed).

    Resampling with replacement repeats images, which moves every replicate of FID (and of KID's
    diagonal-free sums) away from the estimate; the raw percentiles can then exclude the estimate itself
    (a set against itself: FID 0, replicates all far above). Shifting by ``median - estimate`` removes that
    bias and keeps the spread, so the interval always contains the estimate.
    """
    tail = (1 - level) / 2 * 100
    low, median, high = np.percentile(values, [tail, 50, 100 - tail])
    low, high = estimate - (median - low), estimate + (high - median)
    if floor is not None:
        low = max(low, floor)
    return float(low), float(high)


def bootstrap_interval(
    x,
    y,
    statistic,
    *,
    replicates: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = INTERVAL,
    floor: float | None = None,
) -> tuple[float, float] | None:
    """Bootstrap interval of ``statistic(x, y)``, resampling both sets with replacement.

    The interval is the replicates' percentile spread re-centred on the estimate (see
    ``_interval_around``), so it always contains ``statistic(x, y)``.

    Args:
        floor: A lower bound for the interval (0 for a distance such as FID), or ``None``.

    Returns:
        ``(low, high)``, or ``None`` for 0 replicates.
    """
    if replicates < 0:
        raise ConfigError(f"--bootstrap must be 0 or more, got {replicates!r}")
    if not replicates:
        return None
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rng = np.random.default_rng(seed)
    values = [
        statistic(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))])
        for _ in range(replicates)
    ]
    return _interval_around(values, statistic(x, y), level=level, floor=floor)


def _fid_from_gram(gxx: np.ndarray, gyy: np.ndarray, gxy: np.ndarray) -> float:
    """``frechet_distance``'s "samples" route from inner products alone (rows' Gram blocks)."""
    n1, n2 = len(gxx), len(gyy)
    means = gxx.sum() / n1**2 + gyy.sum() / n2**2 - 2 * gxy.sum() / (n1 * n2)
    trace1 = (np.trace(gxx) - gxx.sum() / n1) / (n1 - 1)
    trace2 = (np.trace(gyy) - gyy.sum() / n2) / (n2 - 1)
    centred = gxy - gxy.mean(axis=1, keepdims=True) - gxy.mean(axis=0, keepdims=True) + gxy.mean()
    small = centred @ centred.T if n1 <= n2 else centred.T @ centred
    # The nuclear norm from a symmetric eigenproblem: several times faster than an SVD in the bootstrap.
    values = np.linalg.eigvalsh(small)
    # Centring leaves a zero eigenvalue that rounding makes +-1e-13: its square root would add 3e-7.
    values = np.where(values > values.max() * len(values) * np.finfo(float).eps, values, 0.0)
    cross = np.sqrt(values).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    return float(max(means + trace1 + trace2 - 2 * cross, 0.0))


def _kid_from_gram(gxx: np.ndarray, gyy: np.ndarray, gxy: np.ndarray, d: int) -> float:
    m, n = len(gxx), len(gyy)
    kxx, kyy, kxy = ((g / d + 1.0) ** 3 for g in (gxx, gyy, gxy))
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def _gram_bootstrap(
    gram: np.ndarray, n1: int, statistic, replicates: int, seed: int, floor: float | None = None
) -> tuple[float, float]:
    """``bootstrap_interval`` (same draws, same values) on the Gram matrix of the stacked sets.

    Every resample's FID and KID need only inner products of its rows, so one (n1 + n2)^2 Gram matrix
    replaces a product over the 2048 features in every replicate.
    """
    n2 = len(gram) - n1
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(replicates):
        ix = rng.integers(0, n1, n1)
        iy = n1 + rng.integers(0, n2, n2)
        values.append(statistic(gram[np.ix_(ix, ix)], gram[np.ix_(iy, iy)], gram[np.ix_(ix, iy)]))
    estimate = statistic(gram[:n1, :n1], gram[n1:, n1:], gram[:n1, n1:])
    return _interval_around(values, estimate, floor=floor)


def compare_features(x, y, *, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """FID and KID between two feature sets, their intervals, the image counts and any small-sample flag.

    The intervals are ``bootstrap_interval``'s (same draws: seed ``seed`` for FID, ``seed + 1`` for KID),
    computed from Gram matrices where there are fewer images than feature dimensions.
    """
    x, y = _as_features(x, "FID"), _as_features(y, "FID")
    n1, n2, d = len(x), len(y), x.shape[1]
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 or more, got {bootstrap!r}")
    fid_interval = kid_interval = None
    if bootstrap and n1 + n2 <= d:
        stacked = np.concatenate([x, y])
        centred = stacked - stacked.mean(axis=0)  # FID ignores a common shift; centring keeps digits
        fid_interval = _gram_bootstrap(centred @ centred.T, n1, _fid_from_gram, bootstrap, seed, floor=0.0)
        kid_interval = _gram_bootstrap(
            stacked @ stacked.T, n1, lambda a, b, c: _kid_from_gram(a, b, c, d), bootstrap, seed + 1
        )
    elif bootstrap:
        fid_interval = bootstrap_interval(
            x, y, frechet_distance, replicates=bootstrap, seed=seed, floor=0.0
        )
        kid_interval = bootstrap_interval(
            x, y, kernel_inception_distance, replicates=bootstrap, seed=seed + 1
        )
    warnings = []
    if min(n1, n2) < FID_MIN_IMAGES:
        warnings.append(f"FID on {min(n1, n2)} images (< {FID_MIN_IMAGES}) is dominated by small-sample bias")
    if min(n1, n2) < KID_MIN_IMAGES:
        warnings.append(f"KID on {min(n1, n2)} images (< {KID_MIN_IMAGES}) has a wide spread")
    return {
        "images": [n1, n2],
        "fid": frechet_distance(x, y),
        "fid_interval": list(fid_interval) if fid_interval else None,
        "kid": kernel_inception_distance(x, y),
        "kid_interval": list(kid_interval) if kid_interval else None,
        "warnings": warnings,
    }
