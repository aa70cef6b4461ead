"""Benchmark ``fulora_data.prepare("spanish", "es")`` against ``load_dataset("imagefolder")``.

What it does, in one run:

1. Makes (or reuses, from ``--workdir``) a full-scale procedural FETAL_PLANES_DB folder: the real ES
   metadata (6,148 rows of ``../shared/data/upstream_lists/all_train_no_cer.csv``) written in the archive's
   dialect, and one grayscale PNG per row at the real image sizes and about the real file sizes. Rendering
   6,148 large PNGs is slow on a small machine, so a pool of distinct images is rendered and each file's
   bytes are taken from the pool in turn (per plane); every file is still a separate file on disk.
   The same images are hard-linked into ``<plane>/<name>.png`` folders, the layout imagefolder needs.
2. Reads every image once (warm page cache for both contenders) and hashes it.
3. Times, ``--repeats`` times in alternating order and each into a fresh cache folder:
   (a) ``prepare("spanish", "es", source=folder, cache_dir=...)``, and
   (b) ``load_dataset("imagefolder", data_dir=..., cache_dir=...)``.
   For context it also times (c) imagefolder written as Parquet, which embeds the image bytes as fulora
   does, whereas (b)'s Arrow cache stores only the paths of the source files.
4. Prints images/s (median) for each and the ratio fulora / imagefolder (target: >= 1.5 with every
   image's pixel stream inflated and checked, the checks in worker processes), and checks that
   every image stored by fulora has exactly the source file's bytes (sha256), i.e. nothing was decoded
   and re-encoded.

Run from the repository root::

    python benchmarks/bench_prepare.py                # ES size: 6,148 images
    python benchmarks/bench_prepare.py --rows 12400   # the full archive's size (issue 18's target)
    python benchmarks/bench_prepare.py --rows 500 --repeats 1
    python benchmarks/bench_prepare.py --profile      # also profile one fulora build (cProfile)
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import hashlib
import io
import json
import math
import os
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

# Nothing here may reach the network; set before ``datasets`` is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

from fulora_data.builders import checks as _checks  # noqa: E402
from fulora_data.builders.spanish import read_table  # noqa: E402
from fulora_data.prepare import prepare  # noqa: E402
from fulora_data.samples import (  # noqa: E402
    render_plane_image,
    spanish_rows,
    write_fetal_planes_csv,
    write_spanish_source,
)
from fulora_data.taxonomy import CERVIX, PLANES  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ES_LIST = SHARED_DATA / "upstream_lists" / "all_train_no_cer.csv"
REAL_SAMPLE = SHARED_DATA / "fetal_planes_db_sample" / "Images"
ES_ROWS = 6148
FULL_ARCHIVE_ROWS = 12400  # FETAL_PLANES_DB's images, both splits: issue 18's size for the speed target
TARGET = 1.5  # issue 18: prepare at >= 1.5x imagefolder in the same run, with every check kept
# Image sizes (width, height) and how often each occurs in the 100-image real sample in ../shared
# (745x559 is also common in the full archive).
SIZES = {
    (959, 661): 32,
    (1137, 787): 26,
    (640, 392): 22,
    (740, 448): 6,
    (961, 663): 5,
    (745, 559): 2,
    (1495, 787): 2,
    (384, 259): 2,
    (692, 480): 2,
    (647, 381): 1,
    (768, 519): 1,
    (961, 498): 1,
}
# ``render_plane_image`` speckles every pixel, which compresses to ~0.75 bytes/pixel; real scans have a
# black background and smoother speckle (~0.3 bytes/pixel). A light blur plus a black floor gets there.
BLUR_RADIUS = 1.0
BLACK_FLOOR = 12
COMPRESS_LEVEL = 6  # PIL's default, as most PNG writers
GENERATOR_VERSION = 2  # bump when the generated folder changes, so cached folders are not reused


# ----------------------------------------------------------------------------- the source folder
def es_metadata(rows: int, seed: int) -> tuple[list[dict[str, str]], str]:
    """Return ``rows`` metadata rows (keys without padding) and where they came from."""
    if ES_LIST.is_file():
        with open(ES_LIST, encoding="utf-8-sig", newline="") as handle:
            table = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(handle)]
        if rows > len(table):
            raise SystemExit(f"--rows must be at most {len(table)} (the rows of {ES_LIST}), got {rows}")
        return table[:rows], f"real ES metadata from {ES_LIST}"
    return _procedural_rows(rows, seed), f"PROCEDURAL metadata ({ES_LIST} is absent)"


def full_archive_metadata(seed: int) -> tuple[list[dict[str, str]], str]:
    """The full archive's shape (12,400 rows): ES's 6,148 train rows, 981 train rows of the maternal
    cervix and 5,271 test rows, the split sizes ``fulora`` checks a complete release against."""
    es, origin = es_metadata(ES_ROWS, seed)
    extra = spanish_rows(per_plane=981, test_per_plane=879, with_cervix=True, rng=np.random.default_rng(seed + 1))
    cervix = [r for r in extra if r["Train"] == "1" and r["Plane"] == CERVIX][:981]
    test = [r for r in extra if r["Train"] == "0"][:5271]
    for row in (*cervix, *test):
        row["Image_name"] = f"Extra_{row['Image_name']}"
        row["Patient_num"] = str(100000 + int(row["Patient_num"]))
    return es + cervix + test, f"{origin}, plus 6,252 PROCEDURAL cervix and test rows (the full archive's shape)"


def _procedural_rows(rows: int, seed: int) -> list[dict[str, str]]:
    """Procedural ES rows, equally many per plane, cut to ``rows``."""
    made = spanish_rows(
        per_plane=math.ceil(rows / len(PLANES)),
        test_per_plane=0,
        with_cervix=False,
        rng=np.random.default_rng(seed),
    )
    return made[:rows]


def realistic_png(plane: str, size: tuple[int, int], rng: np.random.Generator) -> bytes:
    """Render one plane image and encode it as a PNG of about a real scan's file size."""
    image = render_plane_image(plane, size, rng).filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    pixels = np.asarray(image).copy()
    pixels[pixels < BLACK_FLOOR] = 0
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=COMPRESS_LEVEL)
    return buffer.getvalue()


def make_source(workdir: Path, rows: int, pool: int, seed: int) -> tuple[Path, Path, dict]:
    """Write (or reuse) the FETAL_PLANES_DB folder and its imagefolder twin.

    Returns:
        The FETAL_PLANES_DB folder, the imagefolder root and a description of what was generated.
    """
    table, origin = full_archive_metadata(seed) if rows == FULL_ARCHIVE_ROWS else es_metadata(rows, seed)
    tag = f"fetal_planes_v{GENERATOR_VERSION}_rows{rows}_pool{pool}_seed{seed}_{'real' if ES_LIST.is_file() else 'proc'}"
    root = workdir / tag
    manifest_path = root / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        print(f"reusing the generated folder {root}")
        return root / "FETAL_PLANES_DB", root / "imagefolder", manifest

    partial = workdir / f"{tag}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    source, linked = partial / "FETAL_PLANES_DB", partial / "imagefolder"
    (source / "Images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    size_list, weights = list(SIZES), np.array(list(SIZES.values()), dtype=float)
    # The pool is shared out between the planes in proportion to their rows (at least one each).
    plane_rows = Counter(row["Plane"] for row in table)
    pool_of: dict[str, list[bytes]] = {}
    started = time.perf_counter()
    for plane, count in sorted(plane_rows.items()):
        share = max(1, min(count, round(pool * count / len(table))))
        pool_of[plane] = [
            realistic_png(plane, size_list[rng.choice(len(size_list), p=weights / weights.sum())], rng)
            for _ in range(share)
        ]
    rendered = time.perf_counter() - started
    used: dict[str, int] = defaultdict(int)
    for row in table:
        plane = row["Plane"]
        data = pool_of[plane][used[plane] % len(pool_of[plane])]
        used[plane] += 1
        (source / "Images" / f"{row['Image_name']}.png").write_bytes(data)
    write_fetal_planes_csv(source / "FETAL_PLANES_DB_data.csv", table, bom=True)
    how_linked = link_planes(source, linked)
    sizes = [len(data) for images in pool_of.values() for data in images]
    manifest = {
        "rows": len(table),
        "metadata": origin,
        "pool_images": len(sizes),
        "pool_render_s": round(rendered, 1),
        "pool_mean_kb": round(statistics.mean(sizes) / 1024, 1),
        "imagefolder_layout": f"<plane>/<Image_name>.png {how_linked} to the same files",
    }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
    partial.rename(root)
    print(f"generated {root}")
    return root / "FETAL_PLANES_DB", root / "imagefolder", manifest


def link_planes(source: Path, dest: Path) -> str:
    """Lay a FETAL_PLANES_DB folder's images out as imagefolder wants (``dest/<Plane>/<name>.png``).

    The files are hard links (relative symbolic links where the file system has none), so both contenders
    read the very same bytes. Returns which kind of link was made.
    """
    _, rows = read_table(source / "FETAL_PLANES_DB_data.csv")
    how = "hard links"
    for row in rows:
        path = source / "Images" / f"{row['Image_name']}.png"
        twin = dest / row["Plane"] / path.name
        twin.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, twin)
        except OSError:
            twin.symlink_to(os.path.relpath(path, twin.parent))
            how = "symbolic links"
    return how


def read_all(folder: Path) -> dict[str, str]:
    """Read every PNG once (so the page cache is warm) and return ``{stem: sha256}``."""
    return {path.stem: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.glob("*.png")}


def real_sample_kb() -> float | None:
    """Mean file size of the real sample's PNGs, for comparison, or None without ../shared."""
    files = list(REAL_SAMPLE.glob("*.png")) if REAL_SAMPLE.is_dir() else []
    return statistics.mean(p.stat().st_size for p in files) / 1024 if files else None


# ----------------------------------------------------------------------------- the contenders
def run_fulora(source: Path, cache: Path, config: str = "es") -> datasets.Dataset:
    """``prepare("spanish", config)``: every split in one dataset (``es`` has only train)."""
    splits = prepare("spanish", config, source=source, cache_dir=cache)
    return datasets.concatenate_datasets([splits[name] for name in sorted(splits)])


def run_imagefolder(folder: Path, cache: Path) -> datasets.Dataset:
    return datasets.load_dataset("imagefolder", data_dir=str(folder), cache_dir=str(cache))["train"]


def run_imagefolder_parquet(folder: Path, cache: Path) -> None:
    builder = datasets.load_dataset_builder("imagefolder", data_dir=str(folder), cache_dir=str(cache))
    builder.download_and_prepare(file_format="parquet")


def stored_matches(dataset: datasets.Dataset, source_digests: dict[str, str]) -> tuple[int, int, int]:
    """Compare the bytes fulora stored with the source files: (matching, differing, stored as path only)."""
    raw = dataset.select_columns(["image", "image_id"]).cast_column("image", datasets.Image(decode=False))
    match = differ = path_only = 0
    for batch in raw.iter(batch_size=256):
        for image, image_id in zip(batch["image"], batch["image_id"], strict=True):
            if image["bytes"] is None:
                path_only += 1
            elif hashlib.sha256(image["bytes"]).hexdigest() == source_digests.get(image_id):
                match += 1
            else:
                differ += 1
    return match, differ, path_only


def timed(run, *args) -> tuple[float, float, object]:
    """Run once; return wall-clock seconds, CPU seconds (this process's threads and the worker processes it
    waited for) and the result."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = run(*args)
    return time.perf_counter() - wall, _cpu_seconds() - cpu, result


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def settle(cache: Path) -> None:
    """Remove a run's cache and flush written pages, so one run's write-back does not slow the next."""
    shutil.rmtree(cache, ignore_errors=True)
    os.sync()


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=ES_ROWS, help=f"images in the source (default 6148; {FULL_ARCHIVE_ROWS}: the full archive)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fulora_bench_prepare",
        help="where the generated source is cached between runs (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each contender (default 3)")
    parser.add_argument("--pool", type=int, default=300, help="distinct images rendered (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="also profile one fulora build (cProfile)")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error(f"--rows must be positive, got {args.rows}")
    if args.repeats < 1:
        parser.error(f"--repeats must be positive, got {args.repeats}")
    if args.pool < 1:
        parser.error(f"--pool must be positive, got {args.pool}")

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    args.workdir.mkdir(parents=True, exist_ok=True)
    source, linked, manifest = make_source(args.workdir, args.rows, args.pool, args.seed)
    # At the full archive's size the source is the whole archive, so fulora builds all of it (config
    # full: both splits, six classes) and imagefolder reads the same 12,400 files.
    config = "full" if args.rows == FULL_ARCHIVE_ROWS else "es"
    digests = read_all(source / "Images")
    for plane_folder in linked.iterdir():  # same pages as the source files; warms the folder entries
        read_all(plane_folder)
    n = len(digests)
    total_mb = sum(p.stat().st_size for p in (source / "Images").glob("*.png")) / 2**20
    real_kb = real_sample_kb()
    print(f"source: {source}")
    print(f"  {n} images, {total_mb:.0f} MiB, mean {total_mb * 1024 / n:.0f} KiB/file", end="")
    print(f" (real sample: mean {real_kb:.0f} KiB/file)" if real_kb else "")
    print(f"  metadata: {manifest['metadata']}")
    print(
        f"  pixels: {manifest['pool_images']} distinct procedural images (rendered in "
        f"{manifest['pool_render_s']} s), each file's bytes cycled from that pool per plane"
    )
    print(f"  imagefolder copy: {manifest['imagefolder_layout']}")
    print(f"  page cache warmed by reading every file once; {args.repeats} repeat(s), alternating order\n")

    runs = args.workdir / "runs"
    shutil.rmtree(runs, ignore_errors=True)

    def contenders_for(source: Path, linked: Path) -> dict:
        return {
            f"fulora prepare (spanish/{config})": lambda cache: run_fulora(source, cache, config),
            "imagefolder (arrow, paths only)": lambda cache: run_imagefolder(linked, cache),
            "imagefolder (parquet, bytes embedded)": lambda cache: run_imagefolder_parquet(linked, cache),
        }

    # One untimed round on a tiny source, so one-off costs (imports, first use) fall on no contender.
    full = config == "full"
    tiny = write_spanish_source(runs / "warm-up", per_plane=2, test_per_plane=int(full), with_cervix=full)
    link_planes(tiny, runs / "warm-up" / "imagefolder")
    for index, run in enumerate(contenders_for(tiny, runs / "warm-up" / "imagefolder").values()):
        run(runs / f"warm-up-cache-{index}")
    shutil.rmtree(runs, ignore_errors=True)

    contenders = contenders_for(source, linked)
    times: dict[str, list[float]] = defaultdict(list)
    cpu_times: dict[str, list[float]] = defaultdict(list)
    check = None
    for repeat in range(args.repeats):
        order = list(contenders) if repeat % 2 == 0 else list(reversed(contenders))
        for label in order:
            cache = runs / f"{label.split()[0]}-{repeat}"
            seconds, cpu, result = timed(contenders[label], cache)
            if isinstance(result, datasets.Dataset) and len(result) != n:
                raise SystemExit(f"{label} built {len(result)} rows, expected {n}")
            if label.startswith("fulora") and check is None:
                check = stored_matches(result, digests)
            times[label].append(seconds)
            cpu_times[label].append(cpu)
            print(f"  run {repeat + 1} {label:<38} {seconds:7.2f} s wall {cpu:7.2f} s CPU")
            del result
            settle(cache)

    print()
    # Wall clock is what a user waits; CPU time is steadier on a shared machine, so both are shown.
    rates = {label: n / statistics.median(seconds) for label, seconds in times.items()}
    cpu_rates = {label: n / statistics.median(seconds) for label, seconds in cpu_times.items()}
    for label, rate in rates.items():
        print(
            f"{label:<38} median {statistics.median(times[label]):7.2f} s wall {rate:7.1f} images/s | "
            f"{statistics.median(cpu_times[label]):7.2f} s CPU {cpu_rates[label]:7.1f} images/CPU-s"
        )
    fulora, *baselines = rates
    for baseline in baselines:
        print(
            f"ratio fulora / {baseline}: {rates[fulora] / rates[baseline]:.2f} (wall), "
            f"{cpu_rates[fulora] / cpu_rates[baseline]:.2f} (CPU)"
        )
    ratio = rates[fulora] / rates["imagefolder (arrow, paths only)"]
    print(
        f"target (fulora at least 1.5x imagefolder, every image's pixel stream checked; "
        f"{_checks.check_processes(n)} check processes on {os.cpu_count()} cores): "
        f"{'MET' if ratio >= TARGET else 'MISSED'} ({ratio:.2f}x)"
    )
    match, differ, path_only = check
    print(
        f"stored PNG bytes identical to the source files (sha256): {match}/{n}"
        f"{f', {differ} differ' if differ else ''}{f', {path_only} stored as paths only' if path_only else ''}"
    )

    if args.profile:
        cache = runs / "profile"
        profiler = cProfile.Profile()
        profiler.runcall(run_fulora, source, cache, config)
        print("\nprofile of one fulora build (top 25 by internal time):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        settle(cache)
    shutil.rmtree(runs, ignore_errors=True)
    print(f"\n(the generated source stays in {args.workdir} for reruns; delete it when done)")
    return 0 if match == n else 1


if __name__ == "__main__":
    sys.exit(main())
