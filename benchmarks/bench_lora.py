"""How fast is fulora's LoRA training loop, against the UNet's own work measured in the same run?

Setting (the issue's): the tiny pipeline (``fulora_data.tiny_sd``: UNet blocks (32, 64), 2 layers per
block, cross-attention 32), 64 px, batch 2, rank 8, ``--targets attention``, text encoder frozen, the
100 real images of ``../shared/data/fetal_planes_db_sample`` (the study's LoRA set).

It runs ``train_lora`` twice (the first builds the latent cache, the second reuses it), then times the
floor any trainer pays: UNet forward + backward + optimizer step on ready tensors, with the same LoRA
layers and optimizer, before and after the training runs (the machine's load drifts). Figures:
start-up, cache building, ms per step in the loop, the floor, their ratio, and peak RSS.

The peer is diffusers' example ``examples/text_to_image/train_text_to_image_lora.py``. It is not installed
with diffusers, and this benchmark neither downloads nor ships it: pass a local copy with ``--peer`` and it
runs in the same run, interleaved with fulora's warm runs, on the same images (written as an
``imagefolder`` with a ``metadata.jsonl`` holding each image's study prompt) and settings
(``--resolution 64 --train_batch_size 2 --rank 8 --learning_rate 1e-4 --lr_scheduler constant``, no
validation, CPU, the same torch threads). Its loop is timed the way fulora's is, from its progress bar's
creation to its last step, by wrapping its ``tqdm``; its peak RSS is its own process's. Without
``--peer``, the figures measured for the issue are quoted instead (112 ms per step in its loop and 1.2 GB
peak RSS on a 2-core machine).

Usage::

    python benchmarks/bench_lora.py [--steps 60] [--images ../shared/data/fetal_planes_db_sample]
        [--peer path/to/train_text_to_image_lora.py]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
import warnings
from pathlib import Path

REFERENCE_MS = 112.0
REFERENCE_RSS_GB = 1.2
DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "fetal_planes_db_sample"


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def unet_floor_ms(base: Path, steps: int, resolution: int) -> float:
    """ms per UNet forward + backward + AdamW step with rank-8 attention LoRA, on ready tensors."""
    import torch

    from fulora_data.lora.config import LoraConfig
    from fulora_data.lora.model import add_lora, load_base, unet_targets

    config = LoraConfig(base=str(base), mixed_precision="no")
    unet = load_base(config)["unet"]
    unet.requires_grad_(False)
    torch.manual_seed(0)
    add_lora(unet, 8, 8.0, unet_targets(unet, "attention"), "UNet")
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    side = resolution // 2  # the tiny VAE's factor
    latents = torch.randn(2, 4, side, side)
    hidden = torch.randn(2, 77, unet.config.cross_attention_dim)
    timesteps = torch.tensor([100, 700])
    unet.train()

    def one() -> None:
        loss = torch.nn.functional.mse_loss(unet(latents, timesteps, hidden).sample, latents)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        one()
    started = time.perf_counter()
    for _ in range(steps):
        one()
    return 1000 * (time.perf_counter() - started) / steps


def _config(base: Path, images: Path, cache: Path, steps: int, resolution: int):
    from fulora_data.lora.config import LoraConfig

    return LoraConfig(
        base=str(base),
        data="spanish",
        data_config="lora-100",
        source=str(images),
        cache_dir=str(cache),
        resolution=resolution,
        # kohya's buckets keep the aspect and floor each side to the step: at 64 px a 64 px step leaves the
        # study's 4:3 images no bucket, so 8 px steps (a 647x381 image trains at 80x48, near the floor's 64x64).
        bucket_step=8,
        batch_size=2,
        rank=8,
        alpha=8,
        targets="attention",
        text_encoder_lr=0.0,
        max_steps=steps,
        mixed_precision="no",
        optimizer="adamw",
        checkpoint_every=0,
        validation_every=0,
        validation_inference_steps=1,
    )


def phase(name: str, work: Path, images: Path, steps: int, resolution: int, threads: int | None) -> dict:
    """Run one measurement in this process and return its figures (with this process's peak RSS)."""
    import torch

    from fulora_data.lora.train import train_lora

    if threads:
        torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    if name == "floor":
        result = {"ms_per_step": unet_floor_ms(work / "base", steps, resolution)}
    else:
        config = _config(work / "base", images, work / "cache", steps, resolution)
        summary = train_lora(config, work / name, progress=False, log=lambda message: None)
        result = dict(summary["timing"])
    result["peak_rss_gb"] = peak_rss_gb()
    result["threads"] = torch.get_num_threads()
    return result


def peer_imagefolder(images: Path, folder: Path) -> int:
    """Write the images as a datasets ``imagefolder``: copies plus ``metadata.jsonl`` with their prompts."""
    import csv
    import json

    from fulora_data.io import atomic_write_text
    from fulora_data.taxonomy import canonical_plane, prompt_for

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    with open(images / "FETAL_PLANES_DB_data.csv", newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle, delimiter=";"):
            row = {key.strip(): value for key, value in row.items() if key}
            name = f"{row['Image_name'].strip()}.png"
            # The sample folder holds a subset of the rows; the peer sees exactly the images fulora trains on.
            if not (images / "Images" / name).is_file():
                continue
            shutil.copyfile(images / "Images" / name, folder / name)
            prompt = prompt_for(canonical_plane(row["Plane"]))
            lines.append(json.dumps({"file_name": name, "text": prompt}))
    atomic_write_text(folder / "metadata.jsonl", "\n".join(lines) + "\n")
    return len(lines)


def peer_phase(script: Path, work: Path, name: str, steps: int, resolution: int, threads: int | None) -> dict:
    """Run diffusers' example script in this process, timing its loop through its own progress bar."""
    import os
    import runpy
    import sys

    import torch
    import tqdm.auto

    if threads:
        torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    marks: dict[str, float] = {}
    count = [0]
    original = tqdm.auto.tqdm

    class TimedBar(original):
        """The script's ``Steps`` bar, noting when its loop starts and when each step ends."""

        def __init__(self, *bar_args, **bar_kwargs):
            super().__init__(*bar_args, **bar_kwargs)
            if bar_kwargs.get("desc") == "Steps":
                self._timed = True
                marks["loop_started"] = time.perf_counter()

        def update(self, n=1):
            if getattr(self, "_timed", False):
                count[0] += n
                marks["last_step"] = time.perf_counter()
            return super().update(n)

    # The script binds ``from tqdm.auto import tqdm`` when it is imported, below.
    tqdm.auto.tqdm = TimedBar
    sys.argv = [str(script), "--pretrained_model_name_or_path", str(work / "base")]
    sys.argv += ["--train_data_dir", str(work / "peer-data"), "--cache_dir", str(work / "peer-cache")]
    sys.argv += ["--output_dir", str(work / name), "--resolution", str(resolution), "--train_batch_size", "2"]
    sys.argv += ["--rank", "8", "--max_train_steps", str(steps), "--learning_rate", "1e-4"]
    sys.argv += ["--lr_scheduler", "constant", "--seed", "1234", "--dataloader_num_workers", "0"]
    os.environ.update(CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    started = time.perf_counter()
    runpy.run_path(str(script), run_name="__main__")
    if count[0] != steps or "loop_started" not in marks:
        raise SystemExit(f"the peer ran {count[0]} timed steps, expected {steps}")
    loop_s = marks["last_step"] - marks["loop_started"]
    return {
        "startup_s": marks["loop_started"] - started,
        "ms_per_step": 1000 * loop_s / steps,
        "peak_rss_gb": peak_rss_gb(),
        "threads": torch.get_num_threads(),
    }


def _child(name: str, args, work: Path) -> dict:
    """Run a phase in a fresh process, so each peak RSS is that phase's own."""
    import json
    import subprocess
    import sys

    command = [sys.executable, __file__, "--phase", name, "--work", str(work), "--images", str(args.images)]
    command += ["--steps", str(args.steps), "--resolution", str(args.resolution)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.peer:
        command += ["--peer", str(args.peer)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60, help="Training steps per run.")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="A FETAL_PLANES_DB folder.")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    parser.add_argument("--repeats", type=int, default=2, help="Warm runs and floor runs, interleaved.")
    parser.add_argument(
        "--peer",
        type=Path,
        default=None,
        help="A local copy of diffusers' examples/text_to_image/train_text_to_image_lora.py to run as the peer.",
    )
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        import json

        if args.phase.startswith("peer"):
            result = peer_phase(args.peer, args.work, args.phase, args.steps, args.resolution, args.threads)
        else:
            result = phase(args.phase, args.work, args.images, args.steps, args.resolution, args.threads)
        print(json.dumps(result))
        return
    if not (args.images / "FETAL_PLANES_DB_data.csv").is_file():
        raise SystemExit(f"{args.images} is not a FETAL_PLANES_DB folder (pass --images)")
    if args.peer:
        args.peer = args.peer.resolve()
        if not args.peer.is_file():
            raise SystemExit(f"--peer: no such file, got {str(args.peer)!r}")

    from fulora_data.tiny_sd import save_tiny_pipeline

    work = Path(tempfile.mkdtemp(prefix="bench-lora-"))
    try:
        save_tiny_pipeline(work / "base")
        if args.peer:
            peer_imagefolder(args.images, work / "peer-data")
        cold = _child("cold", args, work)
        warm, floors, peers = [], [], []
        for repeat in range(args.repeats):
            floors.append(_child("floor", args, work))
            warm.append(_child(f"warm{repeat}", args, work))
            if args.peer:
                peers.append(_child(f"peer{repeat}", args, work))
        floors.append(_child("floor", args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # The machine's load drifts: the fastest of the interleaved repeats is the least disturbed figure.
    loop = min(w["ms_per_step"] for w in warm)
    floor = min(f["ms_per_step"] for f in floors)
    rss = max(w["peak_rss_gb"] for w in [cold, *warm])
    rows = [
        ("start-up (load base model)", f"{cold['startup_s']:.2f} s", "cold run"),
        ("cache building: 100 latents encoded", f"{cold['cache_s']:.2f} s", "cold run"),
        ("cache reuse: 0 encoded", f"{min(w['cache_s'] for w in warm):.2f} s", "warm runs"),
        ("loop, cold run", f"{cold['ms_per_step']:.1f} ms/step", ""),
        ("loop, warm runs", " / ".join(f"{w['ms_per_step']:.1f}" for w in warm) + " ms/step", "best is used"),
        (
            "UNet fwd+bwd+optimizer alone",
            " / ".join(f"{f['ms_per_step']:.1f}" for f in floors) + " ms/step",
            "before, between, after",
        ),
        ("loop / UNet alone", f"{loop / floor:.2f}x", "target <= 1.15x"),
    ]
    if peers:
        peer_loop = min(p["ms_per_step"] for p in peers)
        peer_rss = max(p["peak_rss_gb"] for p in peers)
        rows += [
            (
                "peer (diffusers' example): start-up",
                f"{min(p['startup_s'] for p in peers):.2f} s",
                "to its loop",
            ),
            (
                "peer loop, runs",
                " / ".join(f"{p['ms_per_step']:.1f}" for p in peers) + " ms/step",
                "after each warm run; best is used",
            ),
            ("peer loop / fulora loop", f"{peer_loop / loop:.2f}x", "target >= 1.4x"),
            ("peak RSS, fulora training process", f"{rss:.2f} GB", ""),
            ("peak RSS, peer process", f"{peer_rss:.2f} GB", f"peer / fulora {peer_rss / rss:.2f}x"),
        ]
    else:
        rows += [
            (
                "diffusers' example loop (reference)",
                f"{REFERENCE_MS:.0f} ms/step",
                f"fulora {REFERENCE_MS / loop:.2f}x faster on this machine now (target >= 1.4x, <= 80 ms)",
            ),
            ("peak RSS of a training process", f"{rss:.2f} GB", f"reference {REFERENCE_RSS_GB} GB"),
        ]
    print(
        f"LoRA training, tiny SD at {args.resolution} px, batch 2, rank 8, attention targets, frozen text "
        f"encoder, {args.steps} steps, {cold['threads']} torch thread(s)"
    )
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value | note |\n|{'-' * (width + 2)}|---:|---|")
    for name, value, note in rows:
        print(f"| {name.ljust(width)} | {value} | {note} |")


if __name__ == "__main__":
    main()
