"""Benchmark the classifier's input pipeline: the cached 224 px copy against decoding PNGs every epoch.

What it does, in one run:

1. Writes a procedural ES-like set (``fulora_data.samples.write_spanish_source``, five planes, grayscale
   PNGs at realistic FETAL_PLANES_DB sizes around 800x600) and builds it with ``prepare("spanish", "es")``.
2. Times one epoch of each input pipeline, same DataLoader (batch 24, shuffled, same workers), same
   augmentation (the study's DA, seeded per image and epoch) and normalisation:
   (a) **decode**: every item decodes its PNG from the Arrow table and resizes it to 224 px, as a
       ``transforms.Resize((224, 224))`` pipeline over the original files does each epoch;
   (b) **cached**: every item reads the uint8 224 px copy made once by ``prepare_image_cache``.
   The one-off cost of making the copy is timed and printed separately (it is paid once per dataset, not
   per epoch or per run).
3. Checks that both pipelines deliver identical tensors for the same images (same resize, same draws).
4. Prints images/s for both and the ratio cached / decode (target: >= 3).

Run from the repository root::

    python benchmarks/bench_classifier_data.py                 # 300 images, 0 workers
    python benchmarks/bench_classifier_data.py --per-plane 100 --workers 2 --no-augment
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fulora_data.classifier.data import (
    CachedImages,
    _resize_png,
    augmentation,
    augmentation_seed,
    model_input,
    prepare_image_cache,
)
from fulora_data.prepare import prepare
from fulora_data.samples import write_spanish_source

SIZES = ((800, 600), (864, 648), (959, 661), (744, 562))  # (width, height), about FETAL_PLANES_DB's


class DecodingImages:
    """The baseline: decode and resize the original PNG on every access, then the same DA as training."""

    def __init__(self, dataset, image_size: int, *, augment: bool, seed: int = 0):
        import datasets

        self.raw = dataset.cast_column("image", datasets.Image(decode=False)).select_columns(
            ["image", "label"]
        )
        self.image_size = image_size
        self.transform = augmentation(image_size) if augment else None
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, row: int):
        item = self.raw[int(row)]
        pixels = _resize_png(item["image"]["bytes"], self.image_size)
        seed = augmentation_seed(self.seed, self.epoch, int(row)) if self.transform is not None else None
        return model_input(pixels, self.transform, seed), int(item["label"])


def one_epoch(images, *, batch_size: int, workers: int, seed: int) -> float:
    """Iterate one shuffled epoch of a map-style dataset; return images per second."""
    import torch

    loader = torch.utils.data.DataLoader(
        images,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )
    start, seen = time.perf_counter(), 0
    for batch, _labels in loader:
        seen += len(batch)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-plane", type=int, default=60, help="images per plane (x5 planes)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (both pipelines)")
    parser.add_argument("--repeats", type=int, default=2, help="epochs timed per pipeline (median)")
    parser.add_argument("--no-augment", action="store_true", help="time without the DA transforms")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse/keep the data here")
    args = parser.parse_args(argv)

    import torch

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fulora-bench-classifier-"))
    started = time.perf_counter()
    source = workdir / "FETAL_PLANES_DB"
    if not (source / "FETAL_PLANES_DB_data.csv").is_file():
        source = write_spanish_source(
            workdir, per_plane=args.per_plane, test_per_plane=0, with_cervix=False, sizes=SIZES
        )
    dataset = prepare("spanish", "es", source=source, cache_dir=workdir / "cache")["train"]
    print(
        f"data: {len(dataset)} PNGs at {', '.join(f'{w}x{h}' for w, h in SIZES)} ({time.perf_counter() - started:.1f}s to write and build)"
    )

    augment = not args.no_augment
    cache_root = Path(tempfile.mkdtemp(prefix="image-cache-", dir=workdir))  # fresh: time the copy for real
    start = time.perf_counter()
    folder = prepare_image_cache(dataset, args.image_size, cache_dir=cache_root, progress=False)
    made = time.perf_counter() - start
    cached = CachedImages(folder, augment=augment, seed=0)
    decoding = DecodingImages(dataset, args.image_size, augment=augment, seed=0)

    for row in (0, len(dataset) // 2, len(dataset) - 1):
        a, b = cached[row], decoding[row]
        if not (torch.equal(a[0], b[0]) and a[1] == b[1]):
            raise SystemExit(
                f"the two pipelines differ on image {row}: the benchmark would compare different work"
            )

    rates: dict[str, list[float]] = {"decode": [], "cached": []}
    for epoch in range(args.repeats):  # alternate, so that neither always runs on a warmer machine
        for name, images in (("decode", decoding), ("cached", cached)):
            images.epoch = epoch
            rates[name].append(
                one_epoch(images, batch_size=args.batch_size, workers=args.workers, seed=epoch)
            )
    decode_rate, cached_rate = statistics.median(rates["decode"]), statistics.median(rates["cached"])
    da = "with DA" if augment else "without DA"
    print(
        f"one epoch, {len(dataset)} images, batch {args.batch_size}, {args.workers} workers, {da}, torch threads {torch.get_num_threads()}:"
    )
    print(
        f"  decode PNG + resize each epoch: {decode_rate:8.1f} images/s  (runs: {', '.join(f'{r:.1f}' for r in rates['decode'])})"
    )
    print(
        f"  cached {args.image_size} px copy:           {cached_rate:8.1f} images/s  (runs: {', '.join(f'{r:.1f}' for r in rates['cached'])})"
    )
    print(f"  ratio cached / decode: {cached_rate / decode_rate:.2f}x (target >= 3x)")
    print(
        f"  one-off cost of the copy: {made:.1f}s ({len(dataset) / made:.1f} images/s, all CPU threads), paid once per dataset"
    )


if __name__ == "__main__":
    main()
