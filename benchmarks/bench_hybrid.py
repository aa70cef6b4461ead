"""Benchmark: hybrid assembly time at 1x and 10x the study's size, and export throughput.

The study's hybrid set is 1,150 real + 5,000 synthetic images. Parts are prepared first (not timed): a
procedural Spanish source with 230 (1x) or 2,300 (10x) images per plane and a synthetic release folder with
1,000 or 10,000 per plane, with PNG bytes drawn from a small pool of procedural images so that writing the
sources stays quick. Then, timed: building the hybrid (its plan) and assembling its splits, at each scale;
and exporting the 1x hybrid (``fulora_data.export.export``: cached build, card statistics, Parquet shards,
manifest and card) against the baseline ``datasets.Dataset.to_parquet`` writing the same rows (the built
splits) in the same run, and against a plain copy of the Parquet bytes. Export and baseline alternate
``--repeats`` times and the best of each is compared, so that load from other processes hits both alike.

Usage: python benchmarks/bench_hybrid.py [--workdir DIR] [--scales 1 10] [--size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from fulora_data import samples
from fulora_data.builders.hybrid import HybridBuilder
from fulora_data.export import export
from fulora_data.prepare import build, make_builder, prepare
from fulora_data.taxonomy import PLANES


def _pool(size: int, n: int = 40) -> dict[str, list[bytes]]:
    rng = np.random.default_rng(0)
    return {
        p: [samples.png_bytes(samples.render_plane_image(p, (size, size), rng)) for _ in range(n)]
        for p in PLANES
    }


def write_parts(root: Path, scale: int, pool: dict[str, list[bytes]]) -> tuple[Path, Path]:
    """Write a Spanish source (230*scale per plane, train only) and a synthetic folder (1000*scale per plane)."""
    rng = np.random.default_rng(scale)
    rows = samples.spanish_rows(per_plane=230 * scale, test_per_plane=0, with_cervix=False, rng=rng)
    spanish = root / "FETAL_PLANES_DB"
    (spanish / "Images").mkdir(parents=True)
    for i, row in enumerate(rows):
        (spanish / "Images" / f"{row['Image_name']}.png").write_bytes(
            pool[row["Plane"]][i % len(pool[row["Plane"]])]
        )
    samples.write_fetal_planes_csv(spanish / "FETAL_PLANES_DB_data.csv", rows)
    synthetic = root / "synthetic_train_5000"
    for name, plane in samples.synthetic_names(1000 * scale, rng):
        folder = synthetic / plane
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.png").write_bytes(pool[plane][hash(name) % len(pool[plane])])
    return spanish, synthetic


def timed(func):
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="export/baseline rounds (best of each kept)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-hybrid-"))
    pool = _pool(args.size)
    results = {}
    for scale in args.scales:
        root = work / f"x{scale}"
        cache = root / "cache"
        (spanish, synthetic), t_write = timed(lambda root=root, scale=scale: write_parts(root, scale, pool))
        options = dict(
            real_config="es",
            real_source=spanish,
            synthetic_source=synthetic,
            synthetic_per_plane=1000 * scale,
        )
        _, t_parts = timed(
            lambda cache=cache, spanish=spanish, synthetic=synthetic: (
                prepare("spanish", "es", source=spanish, cache_dir=cache),
                prepare("synthetic", source=synthetic, cache_dir=cache),
            )
        )
        builder = make_builder("hybrid", cache_dir=cache, **options)
        _, t_plan = timed(builder.download_and_prepare)
        fresh = make_builder("hybrid", cache_dir=cache, **options)  # a new process would start here
        splits, t_assemble = timed(lambda fresh=fresh: build(fresh))
        n = sum(len(d) for d in splits.values())
        results[scale] = {
            "rows": n,
            "plan": t_plan,
            "assemble": t_assemble,
            "options": options,
            "cache": cache,
        }
        print(
            f"{scale:>3}x: {n:>6} images; sources written {t_write:.1f}s, parts prepared {t_parts:.1f}s; "
            f"hybrid build (plan) {t_plan:.2f}s, assembly of its splits {t_assemble:.2f}s"
        )
    if len(results) > 1:
        lo, hi = min(results), max(results)
        rows_ratio = results[hi]["rows"] / results[lo]["rows"]
        for key in ("plan", "assemble"):
            ratio = results[hi][key] / results[lo][key]
            print(f"{key}: {hi}x/{lo}x time ratio {ratio:.2f} for {rows_ratio:.1f}x the images")
    first = results[min(results)]
    out = work / "export"
    baseline_dir = work / "to_parquet"
    built = prepare("hybrid", cache_dir=first["cache"], **first["options"])
    t_export = t_baseline = float("inf")
    for _ in range(args.repeats):
        shutil.rmtree(out, ignore_errors=True)
        _, t = timed(lambda: export("hybrid", None, out, cache_dir=first["cache"], **first["options"]))
        t_export = min(t_export, t)
        shutil.rmtree(baseline_dir, ignore_errors=True)
        baseline_dir.mkdir()
        _, t = timed(lambda: [d.to_parquet(str(baseline_dir / f"{s}.parquet")) for s, d in built.items()])
        t_baseline = min(t_baseline, t)
    parquet = sorted((out / "data").rglob("*.parquet"))
    total = sum(p.stat().st_size for p in parquet)
    copy_dir = work / "copy"
    shutil.rmtree(copy_dir, ignore_errors=True)
    copy_dir.mkdir()
    _, t_copy = timed(lambda: [shutil.copyfile(p, copy_dir / p.name) for p in parquet])
    mb = total / 1e6
    baseline_mb = sum(p.stat().st_size for p in baseline_dir.iterdir()) / 1e6
    print(
        f"export {HybridBuilder.DEFAULT_CONFIG_NAME} at {min(results)}x: {mb:.1f} MB of Parquet in {t_export:.2f}s "
        f"= {mb / t_export:.1f} MB/s (cached build, card and image statistics, manifest and card included)"
    )
    print(
        f"baseline Dataset.to_parquet on the same rows: {baseline_mb:.1f} MB in {t_baseline:.2f}s "
        f"= {baseline_mb / t_baseline:.1f} MB/s; export speed / to_parquet speed = {t_baseline / t_export:.2f} "
        f"(best of {args.repeats}); plain copy of the export's bytes {mb / t_copy:.0f} MB/s"
    )
    print(f"workdir: {work}")


if __name__ == "__main__":
    main()
