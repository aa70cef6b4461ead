"""The training data: the fulora dataset, aspect-ratio buckets, the latent cache and the prompt embeddings.

Buckets follow kohya sd-scripts' ``BucketManager`` with ``enable_bucket``, ``bucket_no_upscale`` and
``random_crop`` off, the study's settings (``bucket_choice``). An image with more pixels than
``resolution**2`` is resized, keeping its aspect, to about that many pixels with one side a multiple of
``bucket_step`` (whichever of width or height, rounded so, keeps the aspect better) and the other side
derived from the aspect; an image at or under the budget keeps its size, never enlarged. The bucket is then
each side floored to a multiple of ``bucket_step`` and the resized image is centre-cropped to it: at most
``bucket_step - 1`` pixels of a side are cut, shared between both edges. Without ``bucket_no_upscale`` the
bucket is kohya's predefined resolution closest in aspect, the image scaled to cover it and centre-cropped.
A batch holds images of one bucket.

Latents are encoded once per image (each image has one bucket) and cached on disk under a key made of the
base model's identity, the VAE dtype, the resolution and bucket settings and the image's own bytes, so a
changed image, base model, resolution or precision never reuses a stale latent. As kohya does, the cached
latent is one sample of the VAE's posterior, drawn with a generator seeded by the image digest. When the
text encoder is frozen the prompts' embeddings are encoded once per run.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fulora_data.errors import ConfigError, DataError, require
from fulora_data.io import atomic_write_bytes
from fulora_data.lora.config import LoraConfig

CACHE_VERSION = 3  # 3: kohya's buckets (resize keeping the aspect, centre crop), was a stretch


@dataclass(frozen=True)
class Example:
    """One training image: its digest, bucket (width, height), prompt and the size it is resized to first.

    ``resized`` is the (width, height) the image is scaled to before the centre crop to ``bucket``;
    ``None`` means the image is already the bucket's size. ``size`` is the image's own (width, height).
    """

    index: int
    digest: str
    bucket: tuple[int, int]
    prompt: str
    resized: tuple[int, int] | None = None
    size: tuple[int, int] | None = None


#: kohya's defaults for the predefined buckets used without ``bucket_no_upscale`` (``--min_bucket_reso``,
#: ``--max_bucket_reso``); with ``bucket_no_upscale`` (the study) kohya ignores them.
MIN_BUCKET_RESO = 256
MAX_BUCKET_RESO = 1024


def _floor_to_step(value: float, step: int) -> int:
    """kohya's ``round_to_steps``: round to an integer, then floor to a multiple of ``step``."""
    number = int(value + 0.5)
    return number - number % step


def bucket_choice(
    width: int, height: int, resolution: int, step: int, no_upscale: bool = True
) -> tuple[tuple[int, int], tuple[int, int]]:
    """kohya's bucket for an image, and the size the image is resized to before its centre crop.

    Args:
        width, height: The image's size.
        resolution: Training resolution: the pixel budget is ``resolution**2``.
        step: Bucket sides are multiples of this (kohya's ``bucket_reso_steps``).
        no_upscale: kohya's ``bucket_no_upscale``: never enlarge an image (the study's setting).

    Returns:
        ``(bucket, resized)``: the bucket (width, height) and the resized (width, height), each side of
        ``resized`` at least the bucket's.

    Raises:
        DataError: If the image is smaller than one step on a side (it would have no bucket).
    """
    aspect = width / height
    if not no_upscale:
        return _predefined_bucket(width, height, resolution, step)
    budget = resolution * resolution
    if width * height > budget:
        # Shrink to the budget keeping the aspect; make one side a step multiple: the one whose rounding
        # distorts the aspect less (kohya compares both), the other side follows the aspect.
        ideal_width = math.sqrt(budget * aspect)
        ideal_height = budget / ideal_width
        by_width = _floor_to_step(ideal_width, step)
        by_height = _floor_to_step(ideal_height, step)
        width_error = abs(by_width / max(_floor_to_step(by_width / aspect, step), 1) - aspect)
        height_error = abs(_floor_to_step(by_height * aspect, step) / max(by_height, 1) - aspect)
        if width_error < height_error:
            resized = (by_width, int(by_width / aspect + 0.5))
        else:
            resized = (int(by_height * aspect + 0.5), by_height)
    else:
        resized = (width, height)
    bucket = (resized[0] - resized[0] % step, resized[1] - resized[1] % step)
    if min(bucket) < step:
        if resized == (width, height):
            raise DataError(
                f"an image of {width}x{height} pixels is smaller than one bucket step ({step} px) on a side"
            )
        raise DataError(
            f"an image of {width}x{height} pixels, scaled to the pixel budget of resolution {resolution}, is "
            f"smaller than one bucket step ({step} px) on a side: use a smaller bucket step"
        )
    return bucket, resized


def _predefined_bucket(
    width: int, height: int, resolution: int, step: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """kohya's bucket without ``bucket_no_upscale``: the predefined resolution closest in aspect."""
    budget = resolution * resolution
    resos = {(int(math.sqrt(budget) // step) * step,) * 2}
    side = MIN_BUCKET_RESO
    while side <= MAX_BUCKET_RESO:
        other = min(MAX_BUCKET_RESO, int((budget // side) // step) * step)
        if other >= MIN_BUCKET_RESO:
            resos.update({(side, other), (other, side)})
        side += step
    aspect = width / height
    if (width, height) in resos:
        bucket = (width, height)
    else:
        bucket = min(sorted(resos), key=lambda r: abs(r[0] / r[1] - aspect))
    # Scale so the image covers the bucket: match the side that would otherwise fall short.
    scale = bucket[1] / height if aspect > bucket[0] / bucket[1] else bucket[0] / width
    return bucket, (int(width * scale + 0.5), int(height * scale + 0.5))


def bucket_for(
    width: int, height: int, resolution: int, step: int, no_upscale: bool = True
) -> tuple[int, int]:
    """The bucket (width, height) of an image, as kohya chooses it (see ``bucket_choice``)."""
    return bucket_choice(width, height, resolution, step, no_upscale)[0]


def bucket_histogram(examples: list[Example]) -> dict[str, int]:
    """How many images fall in each bucket, ``"WxH"`` -> count, largest bucket first."""
    counts: dict[tuple[int, int], int] = {}
    for example in examples:
        counts[example.bucket] = counts.get(example.bucket, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[0][0] * item[0][1], item[0]))
    return {f"{w}x{h}": n for (w, h), n in ordered}


def mean_aspect_error(examples: list[Example]) -> float:
    """kohya's ``mean_img_ar_error``: the mean |bucket aspect - image aspect| over the images."""
    errors = [abs(e.bucket[0] / e.bucket[1] - e.size[0] / e.size[1]) for e in examples if e.size]
    return sum(errors) / len(errors) if errors else 0.0


def _published(config: LoraConfig) -> bool:
    """Whether ``--data`` names a published fulora dataset (``ORG/NAME[@REV]``) rather than a builder."""
    from fulora_data.hub_pull import is_repo_spec

    return is_repo_spec(config.data)


def load_dataset(config: LoraConfig) -> tuple[Any, str, str | None]:
    """Build (or reuse, or download when ``--data`` is a Hub repo) the training set; return its training
    split, the data's version (a builder's ``VERSION``, or the Hub commit) and the Hub repo (or None).

    Raises:
        DataError: If the dataset has no ``image`` or ``text`` column, or no rows.
    """
    if _published(config):
        from fulora_data.hub_pull import open_repo_dataset

        splits, info = open_repo_dataset(config.data, config.data_config)
        _check_columns(config, splits[next(iter(splits))].features)
        version, repo = info["commit"] or info["revision"] or "main", info["repo"]
    else:
        from fulora_data.prepare import build

        builder = check_dataset(config)
        splits = build(builder)
        version, repo = str(builder.config.version), None
    split = "train" if "train" in splits else next(iter(splits))
    dataset = splits[split]
    if len(dataset) == 0:
        raise DataError(f"{config.dataset_id}: its {split!r} split has no images to train on")
    return dataset, version, repo


def check_dataset(config: LoraConfig):
    """Check, before building, that the training set has ``image`` and ``text`` columns; return its builder.

    A published dataset (``ORG/NAME[@REV]``) is already built: it takes no ``--source`` or builder option,
    and its columns are checked once it is downloaded.

    Raises:
        ConfigError: For an unknown dataset, config or option (from ``make_builder``), or local options
            given with a published dataset.
        DataError: If a column is missing.
    """
    if _published(config):
        from fulora_data.hub_pull import parse_repo_spec

        parse_repo_spec(config.data, what="--data")
        if config.source is not None or config.dataset_options:
            raise ConfigError(
                f"--data {config.data} is a published dataset, already built: it takes no --source or builder "
                "option"
            )
        return None
    from fulora_data.prepare import make_builder

    builder = make_builder(
        config.data,
        config.data_config,
        source=config.source,
        cache_dir=config.cache_dir,
        **dict(config.dataset_options),
    )
    _check_columns(config, builder.info.features or {})
    return builder


def _check_columns(config: LoraConfig, features) -> None:
    for column in ("image", "text"):
        if column not in features:
            raise DataError(
                f"--data {config.dataset_id} has no {column!r} column (it has {', '.join(features) or 'none'}); "
                "a LoRA training set needs images and their captions"
            )


def image_digests(dataset) -> list[tuple[str, bytes]]:
    """Each row's image digest (sha256 of its stored bytes) and bytes, without decoding."""
    import datasets

    raw = dataset.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    out = []
    for row in raw:
        image = row["image"]
        data = image.get("bytes")
        if data is None and image.get("path"):
            data = Path(image["path"]).read_bytes()
        if data is None:
            raise DataError("a training image has neither bytes nor a path")
        out.append((hashlib.sha256(data).hexdigest(), data))
    return out


def prepare_examples(dataset, config: LoraConfig) -> tuple[list[Example], list[bytes]]:
    """Give every image its digest, bucket and prompt.

    Returns:
        The examples, and the images' bytes (same order).
    """
    from PIL import Image

    texts = dataset.select_columns(["text"]).with_format(None)["text"][:]
    examples, blobs = [], []
    for index, ((digest, data), text) in enumerate(zip(image_digests(dataset), texts, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"training image {index} has no caption (text {text!r})")
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
        try:
            bucket, resized = bucket_choice(
                *size, config.resolution, config.bucket_step, config.bucket_no_upscale
            )
        except DataError as err:
            raise DataError(f"training image {index}: {err}") from None
        examples.append(Example(index, digest, bucket, text.strip(), resized, tuple(size)))
        blobs.append(data)
    return examples, blobs


def pixels(data: bytes, bucket: tuple[int, int], resized: tuple[int, int] | None = None):
    """Decode an image, resize it to ``resized``, centre-crop it to its bucket, make it RGB and scale it to
    [-1, 1] (a CHW tensor), as kohya's ``trim_and_resize_if_required`` with ``random_crop`` off.

    Shrinking uses an area average (PIL's box filter; kohya uses OpenCV's ``INTER_AREA``), enlarging
    (only without ``bucket_no_upscale``) Lanczos, as kohya does.
    """
    import numpy as np
    from PIL import Image

    from fulora_data.pixels import eight_bit

    torch = require("torch", "train")
    with Image.open(io.BytesIO(data)) as image:
        # Grayscale scans are resized before they become RGB: a third of the memory and work, same pixels.
        image = eight_bit(image)  # 16-bit scans scaled by value range, not clipped to white
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        resized = tuple(resized or image.size)
        if resized != image.size:
            shrinking = resized[0] <= image.size[0] and resized[1] <= image.size[1]
            method = Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS
            image = image.resize(resized, method)
        left = (resized[0] - bucket[0]) // 2
        top = (resized[1] - bucket[1]) // 2
        rgb = image.crop((left, top, left + bucket[0], top + bucket[1])).convert("RGB")
        array = np.asarray(rgb, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def cache_key(base_id: str, dtype: str, config: LoraConfig, digest: str) -> str:
    """The latent cache key: base model, VAE dtype, bucket settings and image bytes, hashed."""
    parts = [
        f"v{CACHE_VERSION}",
        base_id,
        dtype,
        str(config.resolution),
        str(config.bucket_step),
        str(config.bucket_no_upscale),
        digest,
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def base_identity(config: LoraConfig, revision: str) -> str:
    """What identifies the base model's VAE for the cache: the Hub id and commit, or the local weights' digest."""
    from fulora_data.adapter import file_sha256
    from fulora_data.lora.config import base_kind

    kind = base_kind(config.base)
    path = Path(config.base).expanduser()
    if kind == "hub":
        return f"hub:{config.base}@{revision or 'main'}"
    if kind == "file":
        stat = path.stat()
        return f"file:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    files = sorted((path / "vae").glob("*.safetensors")) or sorted((path / "vae").glob("*.bin"))
    return "folder:" + ",".join(file_sha256(f) for f in files)


def cache_folder(config: LoraConfig) -> Path:
    """Where latents are cached: ``CACHE_DIR/fulora-lora-latents`` or ``~/.cache/fulora/lora-latents``."""
    if config.cache_dir:
        return Path(config.cache_dir).expanduser() / "fulora-lora-latents"
    root = os.environ.get("FULORA_CACHE") or Path.home() / ".cache" / "fulora"
    return Path(root) / "lora-latents"


def encode_latents(
    vae,
    examples: list[Example],
    blobs: list[bytes],
    keys: list[str],
    folder: Path,
    *,
    device,
    dtype,
    batch_size: int = 8,
    progress: bool = False,
) -> int:
    """Encode the images whose latents are not cached yet and write them to ``folder``.

    Returns:
        How many images were encoded.
    """
    torch = require("torch", "train")
    safetensors_torch = require("safetensors.torch", "train")
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    todo = [i for i, key in enumerate(keys) if not _whole_latent(folder / f"{key}.safetensors")]
    by_bucket: dict[tuple[int, int], list[int]] = {}
    for i in todo:
        by_bucket.setdefault(examples[i].bucket, []).append(i)
    bar = tqdm(total=len(todo), desc="caching latents", disable=not progress or not todo, unit="img")
    scaling = vae.config.scaling_factor
    with torch.no_grad():
        for bucket, indices in sorted(by_bucket.items()):
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                images = [pixels(blobs[i], bucket, examples[i].resized) for i in chunk]
                batch = torch.stack(images).to(device, dtype=dtype)
                dist = vae.encode(batch).latent_dist
                for row, i in enumerate(chunk):
                    generator = torch.Generator(device="cpu").manual_seed(int(examples[i].digest[:15], 16))
                    noise = torch.randn(dist.mean[row].shape, generator=generator).to(
                        device, dtype=dist.mean.dtype
                    )
                    latent = (dist.mean[row] + dist.std[row] * noise) * scaling
                    data = safetensors_torch.save(
                        {"latent": latent.float().cpu().contiguous()},
                        metadata={"digest": examples[i].digest, "bucket": json.dumps(bucket)},
                    )
                    atomic_write_bytes(folder / f"{keys[i]}.safetensors", data)
                bar.update(len(chunk))
    bar.close()
    return len(todo)


def _whole_latent(path: Path) -> bool:
    """Whether a cached latent file can be read whole; a truncated or damaged one is encoded again."""
    if not path.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.get_tensor("latent")
    except Exception:  # safetensors raises its own error kinds for a truncated header or body
        return False
    return True


def read_latents(keys: list[str], folder: Path) -> list[Any]:
    """Read cached latents (fp32 CPU tensors) in ``keys`` order."""
    safetensors_torch = require("safetensors.torch", "train")
    return [safetensors_torch.load_file(str(folder / f"{key}.safetensors"))["latent"] for key in keys]


def encode_prompts(text_encoder, tokenizer, prompts: list[str], clip_skip: int, device):
    """Encode prompts as the UNet sees them, with clip skip in the study's sense.

    Clip skip 1 takes the text encoder's output (last layer, final layer norm); clip skip ``n`` takes the
    hidden state ``n - 1`` layers before the last and applies the final layer norm, as kohya and A1111 do
    and as diffusers' pipelines do with ``clip_skip=n - 1``.
    """
    ids = tokenize(tokenizer, prompts).to(device)
    return text_embeddings(text_encoder, ids, clip_skip)


def tokenize(tokenizer, prompts: list[str]):
    """Token ids padded to the tokenizer's window (77 for CLIP)."""
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def text_embeddings(text_encoder, ids, clip_skip: int):
    """The text encoder's embeddings of token ids with clip skip (see ``encode_prompts``)."""
    if clip_skip <= 1:
        return text_encoder(ids)[0]
    output = text_encoder(ids, output_hidden_states=True)
    model = text_encoder.module if hasattr(text_encoder, "module") else text_encoder
    norm = model.final_layer_norm if hasattr(model, "final_layer_norm") else model.text_model.final_layer_norm
    # With LoRA layers (fp32) in a half-precision encoder the hidden state is fp32: match the norm's dtype.
    return norm(output.hidden_states[-clip_skip].to(norm.weight.dtype))


class BucketBatches:
    """The data order: per epoch, a seeded shuffle of each bucket's images cut into batches, batches shuffled.

    The order of epoch ``e`` depends only on the seed and ``e``, so a checkpoint needs only the step to
    resume the same order. With several processes, each step takes the next ``num_processes`` batches,
    one per process; an epoch's leftover batches (fewer than the processes) are dropped.
    """

    def __init__(self, examples: list[Example], batch_size: int, seed: int, num_processes: int = 1):
        self.batch_size = batch_size
        self.seed = seed
        self.num_processes = num_processes
        self.buckets: dict[tuple[int, int], list[int]] = {}
        for example in examples:
            self.buckets.setdefault(example.bucket, []).append(example.index)
        self.steps_per_epoch = len(self.epoch(0)) // num_processes
        if self.steps_per_epoch == 0:
            raise DataError(
                f"{len(examples)} images in {len(self.buckets)} bucket(s) make fewer batches of "
                f"{batch_size} than there are processes ({num_processes})"
            )

    def epoch(self, number: int) -> list[list[int]]:
        """The batches of one epoch (index lists), in order."""
        if getattr(self, "_cached", (None,))[0] == number:
            return self._cached[1]
        rng = random.Random(f"{self.seed}:{number}")
        batches = []
        for bucket in sorted(self.buckets):
            indices = list(self.buckets[bucket])
            rng.shuffle(indices)
            batches.extend(indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size))
        rng.shuffle(batches)
        self._cached = (number, batches)
        return batches

    def batch(self, step: int, process_index: int) -> list[int]:
        """The image indices process ``process_index`` trains on at (0-based) ``step``."""
        number, position = divmod(step, self.steps_per_epoch)
        return self.epoch(number)[position * self.num_processes + process_index]
