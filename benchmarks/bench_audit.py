"""Benchmark of the data audit: images/s on an ES-sized procedural set and the pair search's growth.

Run from the repository root::

    python benchmarks/bench_audit.py              # default: 6,148 images at 96x72, ~2 minutes on 2 cores
    python benchmarks/bench_audit.py --size 320x240 --num-proc 2

What it measures:

1. The whole audit (one decoding pass: digest, pHash, thumbnail; exact and near pair search; split summary)
   of 6,148 procedural images, the size of the study's ES set, as PNG bytes in an in-memory
   ``DatasetDict`` with the shared features, at ``--size`` (default 96x72, much smaller than the real
   ~800x600: decoding cost grows with pixels, the pair search does not). Reported as images/s.
2. The near-duplicate pair search alone (pHash bands intersected with the principal-axis grid, see
   ``fulora_data.audit.search``) on 1x and 4x that set (6,148 and 24,592 images), its growth (16x would be
   quadratic), the candidate counts, and the all-pairs brute force on the same 1x set as a baseline; the
   search's result is checked against the brute force's true near duplicates.

The image sets. ``fulora_data.samples.render_plane_image`` draws every plane in one fixed fan with
structures of one size near the centre, so its images crowd together far more than real scans do. The
benchmark's default ("varied") set draws each image with ``render_plane_image`` and then varies it the
ways real scans vary: speckle grain (rendered smaller, enlarged), zoom and crop (which moves and scales the
structures), flip and probe rotation, fan geometry (apex, opening, tilt, depth), overall gain, gamma and
depth gain. It prints the median pHash distance, the share of pairs within the threshold and the median
thumbnail similarity of each set next to those of the real FETAL_PLANES_DB sample in ``../shared``
(when present), so the realism is shown, not claimed; the unvaried ("plain") set is timed too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fulora_data.audit import DEFAULT_SIMILARITY, audit, brute_force_hamming_pairs, hamming_pairs  # noqa: E402
from fulora_data.audit.features import image_features, normalise_thumbnails  # noqa: E402
from fulora_data.audit.search import hamming, principal_projection  # noqa: E402
from fulora_data.samples import png_bytes, render_plane_image  # noqa: E402
from fulora_data.taxonomy import PLANES, base_features  # noqa: E402

ES_SIZE = 6148
REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fetal_planes_db_sample"


def varied_plane_image(plane: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """``render_plane_image`` varied as real scans vary: speckle grain, zoom/crop, probe, fan and gain."""
    width, height = size
    zoom, grain = rng.uniform(1.0, 1.8), rng.uniform(0.5, 1.0)
    drawn = render_plane_image(
        plane, (max(16, int(width * zoom * grain)), max(12, int(height * zoom * grain))), rng
    )
    image = drawn.resize((int(width * zoom), int(height * zoom)), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.rotate(rng.uniform(-25, 25), resample=Image.Resampling.BILINEAR)
    left, top = int(rng.uniform(0, image.width - width)), int(rng.uniform(0, image.height - height))
    pixels = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float64)
    rows, cols = np.mgrid[0:height, 0:width]
    apex_x, apex_y = width * rng.uniform(0.3, 0.7), height * rng.uniform(-0.3, 0.1)
    angle = np.arctan2(cols - apex_x, rows - apex_y) - np.deg2rad(rng.uniform(-15, 15))
    fan = (np.abs(angle) <= np.deg2rad(rng.uniform(25, 50))) & (
        np.hypot(cols - apex_x, rows - apex_y) <= height * rng.uniform(0.7, 1.3)
    )
    depth_gain = 1 + rng.uniform(-0.6, 0.6) * rows / height
    pixels = np.clip(pixels * rng.uniform(0.6, 1.8) * depth_gain, 0, 255)
    pixels = 255 * (pixels / 255) ** rng.uniform(0.6, 1.5)
    return Image.fromarray(np.where(fan, pixels, 0).astype(np.uint8), mode="L")


def procedural_pngs(n: int, size: tuple[int, int], seed: int, varied: bool) -> tuple[list[bytes], list[int]]:
    rng = np.random.default_rng(seed)
    labels = [k % len(PLANES) for k in range(n)]
    draw = varied_plane_image if varied else render_plane_image
    return [png_bytes(draw(PLANES[label], size, rng)) for label in labels], labels


def as_dataset(pngs: list[bytes], labels: list[int]) -> datasets.DatasetDict:
    features = datasets.Features(base_features())
    n = len(pngs)
    table = {
        "image": [{"bytes": data, "path": None} for data in pngs],
        "label": labels,
        "text": [""] * n,
        "source": ["real"] * n,
        "image_id": [f"img{k:05d}" for k in range(n)],
        "patient_id": [f"P{k // 10}" for k in range(n)],
    }
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict(table, features=features)})


def best_of(repeats: int, func) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def features_of(pngs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    rows = [image_features(data) for data in pngs]
    hashes = np.array([row["phash"] for row in rows], dtype=np.uint64)
    thumbnails = normalise_thumbnails(np.stack([np.frombuffer(row["thumbnail"], np.uint8) for row in rows]))
    return hashes, thumbnails


def crowding(hashes: np.ndarray, thumbnails: np.ndarray, threshold: int, at_most: int = 2000) -> str:
    """Median pHash distance, share of pairs within ``threshold`` bits, median similarity (all pairs)."""
    keep = np.random.default_rng(0).permutation(len(hashes))[:at_most]
    hashes, thumbnails = hashes[keep], thumbnails[keep]
    upper = np.triu_indices(len(hashes), 1)
    distance = hamming(hashes[:, None], hashes[None, :])[upper]
    similarity = (thumbnails @ thumbnails.T)[upper]
    return (
        f"{len(hashes)} images: median pHash distance {np.median(distance):.0f} bits, "
        f"{(distance <= threshold).mean():.4%} of pairs within {threshold} bits, "
        f"median thumbnail similarity {np.median(similarity):.2f}"
    )


def time_search(name: str, hashes: np.ndarray, thumbnails: np.ndarray, n1: int, threshold: int) -> None:
    n4 = 4 * n1
    radius = float(np.sqrt(2 - 2 * DEFAULT_SIMILARITY)) + 1e-4
    axes_time = {}
    projections = {}
    for n in (n1, n4):
        axes_time[n], projections[n] = best_of(1, lambda n=n: principal_projection(thumbnails[:n]))

    def search(n: int):
        return hamming_pairs(hashes[:n], threshold, projections[n], radius)

    def brute(n: int):
        first, second, _ = brute_force_hamming_pairs(hashes[:n], threshold)
        scores = np.einsum("ij,ij->i", thumbnails[first], thumbnails[second])
        keep = scores >= DEFAULT_SIMILARITY - 1e-5
        return first, second, keep

    t1, (a1, b1, _) = best_of(3, lambda: search(n1))
    t4, (a4, _, _) = best_of(3, lambda: search(n4))
    tb, (fb, sb, keep) = best_of(1, lambda: brute(n1))
    found = set(zip(a1.tolist(), b1.tolist(), strict=True))
    if not set(zip(fb[keep].tolist(), sb[keep].tolist(), strict=True)) <= found:
        raise SystemExit(f"{name}: the grid search missed a near-duplicate pair the brute force finds")
    band1, _, _ = hamming_pairs(hashes[:n1], threshold)
    band4, _, _ = hamming_pairs(hashes[:n4], threshold)
    print(
        f"[{name}] pair search (pHash bands x principal-axis grid, threshold {threshold} bits, r={radius:.4f}):"
    )
    print(f"  1x ({n1} images): {t1 * 1000:.1f} ms, {len(a1)} candidates within the bits and the radius")
    print(f"  4x ({n4} images): {t4 * 1000:.1f} ms, {len(a4)} candidates")
    print(f"  growth 1x -> 4x: {t4 / t1:.1f}x (quadratic would be 16x, linear 4x)")
    print(
        f"  brute force 1x (baseline, all {n1 * (n1 - 1) // 2} pairs): {tb * 1000:.1f} ms, "
        f"{tb / t1:.1f}x the search; {int(keep.sum())} true near-duplicate pairs, all found by the search"
    )
    print(f"  pairs within {threshold} bits (the bands' output alone): 1x {len(band1)}, 4x {len(band4)}")
    print(
        f"  principal axes (once per audit, not in the times above): "
        f"1x {axes_time[n1] * 1000:.0f} ms, 4x {axes_time[n4] * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=ES_SIZE, help="Images in the 1x set (default: ES, 6148)."
    )
    parser.add_argument("--size", default="96x72", help="Procedural image size WxH (default 96x72).")
    parser.add_argument("--threshold", type=int, default=4, help="pHash Hamming threshold (default 4).")
    parser.add_argument("--num-proc", type=int, default=None, help="Decoding processes for the audit.")
    parser.add_argument("--skip-plain", action="store_true", help="Time the search on the varied set only.")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    datasets.disable_progress_bars()

    start = time.perf_counter()
    pngs, labels = procedural_pngs(args.images, (width, height), seed=0, varied=True)
    print(
        f"rendered {len(pngs)} varied procedural {width}x{height} PNGs in {time.perf_counter() - start:.1f}s"
    )
    splits = as_dataset(pngs, labels)
    start = time.perf_counter()
    result = audit(splits, threshold=args.threshold, num_proc=args.num_proc)
    elapsed = time.perf_counter() - start
    print(
        f"audit of {args.images} images: {elapsed:.1f}s, {args.images / elapsed:.0f} images/s "
        f"(exact pairs {result['exact_duplicate_pairs']}, near pairs {result['near_duplicate_pairs']})"
    )

    if REAL_SAMPLE.is_dir():
        real = [path.read_bytes() for path in sorted((REAL_SAMPLE / "Images").glob("*.png"))]
        print(f"real FETAL_PLANES_DB sample, {crowding(*features_of(real), args.threshold)}")
    else:
        print(f"(no real sample at {REAL_SAMPLE}: its crowding figures are not printed)")

    sets = [("varied", True)] + ([] if args.skip_plain else [("plain", False)])
    for name, varied in sets:
        start = time.perf_counter()
        batches = [pngs] if varied else []
        for seed in range(len(batches), 4):
            batches.append(procedural_pngs(args.images, (width, height), seed=seed, varied=varied)[0])
        hashes, thumbnails = features_of([data for batch in batches for data in batch])
        print(f"[{name}] rendered and featurised {len(hashes)} images in {time.perf_counter() - start:.1f}s")
        print(
            f"[{name}] procedural set, {crowding(hashes[: args.images], thumbnails[: args.images], args.threshold)}"
        )
        time_search(name, hashes, thumbnails, args.images, args.threshold)


if __name__ == "__main__":
    main()
