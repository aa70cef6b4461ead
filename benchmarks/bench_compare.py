"""Benchmark of ``fulora data compare``: feature extraction images/s, uncached against cached.

Run from the repository root::

    python benchmarks/bench_compare.py                       # study settings: 35 per plane, 224 px
    python benchmarks/bench_compare.py --weights inception_v3_google-0cc3c7bd.pth --out /tmp/compare

What it runs: the study's comparison (four planes, 35 images per plane and set, seed 1234, 224 px) of
three sets, twice with one feature cache:

- Spain: the 100 real FETAL_PLANES_DB images in ``../shared/data/fetal_planes_db_sample`` (``spanish/es``;
  20 per plane, so every plane is short of 35 and all 20 are used), or a procedural stand-in when absent;
- Africa: the test split of the procedural African stand-in (``fulora_data.samples``);
- Synthesis: a procedural generated folder, 35 images per plane.

The first run computes every drawn image's Inception-V3 features (decoding, resizing and the forward
pass); the second finds them all in the cache. It prints the images/s of feature extraction in each, the
whole comparison's wall time in each (t-SNE, FID/KID with bootstrap and the figures included), and the
ratio, which is what a new adapter compared against the same real sets saves on the real sets' images.

Measured on 2 shared CPU cores (load average about 5), random weights, 359 images (139 Africa, 140
Synthesis, 80 Spain): feature extraction 3.3 images/s uncached (110 s, decoding included), 555 images/s
cached (0.65 s), 171x; the whole comparison 139 s -> 48 s (t-SNE of five maps, loading the network and
200 bootstrap replicates per interval remain).

Without ``--weights`` the network has random weights (``random_inception_weights``): the timings are
those of the real network (same architecture and input size), the FID/KID values mean nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fulora_data import samples  # noqa: E402
from fulora_data.compare import CompareConfig, compare_sets  # noqa: E402
from fulora_data.compare.features import random_inception_weights  # noqa: E402

REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fetal_planes_db_sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="torchvision inception_v3 state dict")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--per-plane", type=int, default=35)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="keep the sources, cache and report here")
    args = parser.parse_args()

    work = args.out or Path(tempfile.mkdtemp(prefix="bench_compare."))
    work.mkdir(parents=True, exist_ok=True)
    sources = work / "sources"
    if not (sources / "african").is_dir():
        samples.write_african_source(sources / "african", patients_per_country=16, seed=1)
    if not (sources / "generated" / "fulora_generated.json").is_file():
        samples.write_generated_folder(
            sources / "generated", per_plane=args.per_plane, seed=2, size=(128, 128)
        )
    spanish = REAL_SAMPLE
    if not spanish.is_dir():
        spanish = sources / "spanish"
        if not spanish.is_dir():
            samples.write_spanish_source(spanish, per_plane=20, test_per_plane=0, with_cervix=False, seed=0)
    weights = args.weights
    if weights is None:
        weights = work / f"inception_random_{args.image_size}px.pth"
        if not weights.is_file():
            random_inception_weights(weights, seed=0, calibrate_size=args.image_size)
    features = work / "features"
    shutil.rmtree(features, ignore_errors=True)
    print(f"Spain: {spanish}{' (the real sample)' if spanish == REAL_SAMPLE else ' (procedural stand-in)'}")
    print(f"weights: {weights.name}{' (random: timings only)' if args.weights is None else ''}")

    runs = []
    for name in ("uncached", "cached"):
        started = time.perf_counter()
        config = CompareConfig(
            sets=["african:test", "synthetic/generated", "spanish/es"],
            sources=[sources / "african", sources / "generated", spanish],
            per_plane=args.per_plane,
            image_size=args.image_size,
            weights=weights,
            cache_dir=work / "cache",
            feature_cache=features,
            report=work / "report",
            bootstrap=args.bootstrap,
            device=args.device,
        )
        result = compare_sets(config, log=lambda _: None)
        wall = time.perf_counter() - started
        timing = result["features"]
        images = timing["computed"] + timing["cached"]
        rate = images / timing["seconds"] if timing["seconds"] else float("inf")
        runs.append((name, images, timing["computed"], timing["seconds"], rate, wall))
    print(f"{'run':<10} {'images':>7} {'computed':>9} {'feature s':>10} {'images/s':>9} {'whole run s':>12}")
    for name, images, computed, seconds, rate, wall in runs:
        print(f"{name:<10} {images:>7} {computed:>9} {seconds:>10.2f} {rate:>9.1f} {wall:>12.2f}")
    (_, _, _, s_uncached, r_uncached, w_uncached), (_, _, _, s_cached, r_cached, w_cached) = runs
    print(
        f"cached / uncached: feature extraction {r_cached / r_uncached:.0f}x faster "
        f"({s_uncached:.2f} s -> {s_cached:.2f} s); whole comparison {w_uncached / w_cached:.1f}x faster"
    )
    print(f"report: {work / 'report' / 'report.md'}")
    for plane, panel in result["planes"].items():
        print(f"{plane}: " + "; ".join(f"{p['a']}-{p['b']} FID {p['fid']:.4g}" for p in panel["pairs"]))


if __name__ == "__main__":
    main()
