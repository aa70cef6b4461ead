"""Benchmark of the data audit: images/s on an ES-sized procedural set and the pair search's growth.

Run from the repository root::

    python benchmarks/bench_audit.py              # default: 6,148 images at 96x72, ~2 minutes on 2 cores
    python benchmarks/bench_audit.py --size 320x240 --num-proc 2

What it measures:

1. The whole audit (one decoding pass: digest, pHash, thumbnail; exact and near pair search; split summary)
   of 6,148 procedural images, the size of the study's ES set, as PNG bytes in an in-memory
   ``DatasetDict`` with the shared features. The images are ``fulora_data.samples.render_plane_image``
   planes at ``--size`` (default 96x72, much smaller than the real ~800x600: decoding cost grows with pixels,
   the pair search does not). Reported as images/s.
2. The near-duplicate pair search alone on 1x and 4x that set (6,148 and 24,592 images), as the audit
   runs it (pHash bands plus the principal-axis window, see ``fulora_data.audit.search``), and the
   all-pairs brute force on the same 1x set as a baseline. A quadratic search grows 16x from 1x to 4x; the
   printed ratio must stay well below that. The pHash bands alone are timed too: the procedural planes
   all share one fan, so their pHashes crowd together far more than real images' do (0.25% of distinct
   procedural pairs lie within 4 bits, 0.02% of the 100 real FETAL_PLANES_DB images in ../shared), and
   on them the bands alone approach quadratic growth.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import datasets
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fulora_data.audit import DEFAULT_SIMILARITY, audit, brute_force_hamming_pairs, hamming_pairs  # noqa: E402
from fulora_data.audit.features import image_features, normalise_thumbnails  # noqa: E402
from fulora_data.audit.search import principal_projection  # noqa: E402
from fulora_data.samples import png_bytes, render_plane_image  # noqa: E402
from fulora_data.taxonomy import PLANES, base_features  # noqa: E402

ES_SIZE = 6148


def procedural_pngs(n: int, size: tuple[int, int], seed: int) -> tuple[list[bytes], list[int]]:
    rng = np.random.default_rng(seed)
    labels = [k % len(PLANES) for k in range(n)]
    return [png_bytes(render_plane_image(PLANES[label], size, rng)) for label in labels], labels


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=ES_SIZE, help="Images in the 1x set (default: ES, 6148)."
    )
    parser.add_argument("--size", default="96x72", help="Procedural image size WxH (default 96x72).")
    parser.add_argument("--threshold", type=int, default=4, help="pHash Hamming threshold (default 4).")
    parser.add_argument("--num-proc", type=int, default=None, help="Decoding processes for the audit.")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    datasets.disable_progress_bars()

    start = time.perf_counter()
    pngs, labels = procedural_pngs(args.images, (width, height), seed=0)
    print(f"rendered {len(pngs)} procedural {width}x{height} PNGs in {time.perf_counter() - start:.1f}s")
    splits = as_dataset(pngs, labels)

    start = time.perf_counter()
    result = audit(splits, threshold=args.threshold, num_proc=args.num_proc)
    elapsed = time.perf_counter() - start
    print(
        f"audit of {args.images} images: {elapsed:.1f}s, {args.images / elapsed:.0f} images/s "
        f"(exact pairs {result['exact_duplicate_pairs']}, near pairs {result['near_duplicate_pairs']})"
    )

    # Features of the 4x set: the 1x images plus three more seeded batches (no dataset needed).
    start = time.perf_counter()
    rows = [image_features(data) for data in pngs]
    for seed in (1, 2, 3):
        more, _ = procedural_pngs(args.images, (width, height), seed=seed)
        rows += [image_features(data) for data in more]
    print(f"computed features of {len(rows)} images (1x + 3x new) in {time.perf_counter() - start:.1f}s")
    hashes = np.array([row["phash"] for row in rows], dtype=np.uint64)
    thumbnails = normalise_thumbnails(np.stack([np.frombuffer(row["thumbnail"], np.uint8) for row in rows]))
    radius = float(np.sqrt(2 - 2 * DEFAULT_SIMILARITY)) + 1e-4

    start = time.perf_counter()
    projections = {n: principal_projection(thumbnails[:n]) for n in (args.images, 4 * args.images)}
    print(
        f"principal axes of 1x and 4x thumbnails (linear in n, not timed below): {time.perf_counter() - start:.1f}s"
    )

    def search(n: int, window: bool):
        if window:
            return hamming_pairs(hashes[:n], args.threshold, projections[n], radius)
        return hamming_pairs(hashes[:n], args.threshold)

    def brute(n: int):
        first, second, distance = brute_force_hamming_pairs(hashes[:n], args.threshold)
        scores = np.einsum("ij,ij->i", thumbnails[first], thumbnails[second])
        return first, second, distance, scores

    n1, n4 = args.images, 4 * args.images
    t1, (a1, b1, _) = best_of(3, lambda: search(n1, True))
    t4, (a4, _, _) = best_of(3, lambda: search(n4, True))
    tb, (fb, sb, _, scores) = best_of(1, lambda: brute(n1))
    # The window may only drop pairs that fail the similarity test: check against the brute force.
    keep = scores >= DEFAULT_SIMILARITY - 1e-5
    found = set(zip(a1.tolist(), b1.tolist(), strict=True))
    if not set(zip(fb[keep].tolist(), sb[keep].tolist(), strict=True)) <= found:
        raise SystemExit("the windowed band search missed a pair the brute force finds")
    print(
        f"pair search 1x ({n1} images): {t1 * 1000:.1f} ms, {len(a1)} candidate pairs within {args.threshold} bits"
    )
    print(f"pair search 4x ({n4} images): {t4 * 1000:.1f} ms, {len(a4)} candidate pairs")
    print(
        f"brute force 1x (baseline, all {n1 * (n1 - 1) // 2} pairs): {tb * 1000:.1f} ms ({tb / t1:.1f}x the search)"
    )
    print(f"growth 1x -> 4x: {t4 / t1:.1f}x (quadratic would be 16x)")
    b1_time, _ = best_of(1, lambda: search(n1, False))
    b4_time, _ = best_of(1, lambda: search(n4, False))
    print(
        f"pHash bands alone: 1x {b1_time * 1000:.1f} ms, 4x {b4_time * 1000:.1f} ms, growth {b4_time / b1_time:.1f}x"
    )


if __name__ == "__main__":
    main()
