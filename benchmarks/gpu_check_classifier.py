"""GPU check (for a lent GPU, e.g. one H200): one epoch of ResNet18 on an ES-sized set, images/s.

Not run in CI and needs no network. It makes an ES-sized procedural training set (default 6,148 images:
a pool of ``--pool`` images rendered at about FETAL_PLANES_DB's size by
``fulora_data.samples.render_plane_image``, resized to 224 px and repeated), then for each precision in
``--precisions`` runs the real ``fulora_data.classifier.train`` for one epoch with the study's settings
(batch 24, SGD, 200 images held out, DA on with ``--augment``) and random weights (``--weights none``, the
machine is offline). The 224 px copy is made before the clock starts, as it is made once per dataset.

It prints, per precision: seconds for the epoch (training + validation + checkpoint writes), training
images/s, and peak GPU memory; plus the projected time of the study's 20-epoch run. That figure calibrates
the grid's GPU-cost estimate in ``fulora_data.study``.

    python benchmarks/gpu_check_classifier.py                       # bf16, fp16 and fp32, with DA
    python benchmarks/gpu_check_classifier.py --precisions bf16 --workers 16
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path


def make_training_set(n: int, pool: int, seed: int = 0):
    """An in-memory ``datasets.Dataset`` of ``n`` 224 px PNGs in the five planes, made from ``pool`` renders."""
    import datasets
    import numpy as np
    from PIL import Image

    from fulora_data.samples import render_plane_image
    from fulora_data.taxonomy import PLANES, class_label

    rng = np.random.default_rng(seed)
    rendered = []
    for i in range(pool):
        plane = PLANES[i % len(PLANES)]
        image = render_plane_image(plane, (800, 600), rng).resize((224, 224), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        rendered.append((buffer.getvalue(), i % len(PLANES)))
    rows = [rendered[i % pool] for i in range(n)]
    features = datasets.Features({"image": datasets.Image(mode="L"), "label": class_label()})
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b, _ in rows], "label": [label for _, label in rows]},
        features=features,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6148, help="training images (ES has 6,148)")
    parser.add_argument("--pool", type=int, default=250, help="distinct rendered images")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument(
        "--precisions", nargs="+", default=["bf16", "fp16", "no"], choices=["bf16", "fp16", "no"]
    )
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=True, help="the study's DA"
    )
    args = parser.parse_args(argv)

    import torch

    from fulora_data.classifier import TrainConfig, prepare_image_cache, train

    if not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA GPU: this check is for a lent GPU (the CPU benchmark is bench_classifier_data.py)"
        )
    torch.backends.cudnn.benchmark = True
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    work = Path(tempfile.mkdtemp(prefix="fulora-gpu-check-"))
    start = time.perf_counter()
    dataset = make_training_set(args.images, args.pool)
    prepare_image_cache(dataset, 224, cache_dir=work / "img", progress=False)
    print(
        f"data: {len(dataset)} images at 224 px ({time.perf_counter() - start:.1f}s to make, not timed below)"
    )
    for precision in args.precisions:
        config = TrainConfig.preset(
            "paper",
            arch=args.arch,
            train_set="ES+DA" if args.augment else "ES",
            weights="none",
            epochs=1,
            batch_size=args.batch_size,
            num_workers=args.workers,
            mixed_precision=precision,
            image_cache_dir=str(work / "img"),
        )
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = train(
            config, work / f"run-{precision}", dataset=dataset, progress=False, log=lambda _m: None
        )
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        n_train = result["images"]["train"]
        peak = torch.cuda.max_memory_allocated() / 2**30
        label = {"no": "fp32/tf32-off"}.get(precision, precision)
        print(
            f"{args.arch} {label:>13}: one epoch {seconds:6.1f}s, {n_train / seconds:7.1f} train images/s "
            f"(incl. validation + checkpoint), peak {peak:.2f} GiB, 20 epochs ~{20 * seconds / 60:.1f} min, "
            f"train loss {result['history'][-1]['train_loss']:.3f}"
        )


if __name__ == "__main__":
    main()
