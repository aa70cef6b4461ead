"""The LoRA run's settings, the study's presets and the checks made before any long work.

The study (Wang et al., MICCAI PIPPI 2024; Zenodo 13228158) fine-tuned Stable Diffusion 1.5 with kohya's
trainer: batch size 2, UNet learning rate 1e-4, text-encoder learning rate 5e-5, 10,000 steps, rank
``r`` in {8, 32, 128} with alpha = r, fp16 mixed precision, a constant schedule without warm-up, 512 px
aspect-ratio buckets in 64 px steps without upscaling, cached latents, no flip or colour augmentation,
clip skip 2, 8-bit AdamW and seed 1234. ``PRESETS`` and ``training/configs/lora_r*.yaml`` hold exactly
these values.

Clip skip is counted as kohya and A1111 count it: 1 uses the text encoder's last layer, 2 the
penultimate one (then its final layer norm). diffusers' ``clip_skip`` argument counts the layers skipped
after the last one, so ``diffusers clip_skip = study clip_skip - 1``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fulora_data.errors import OptionValueError, require
from fulora_data.presets import RunConfig, field_error

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
"""The base model's Hub repository (the old ``runwayml/stable-diffusion-v1-5`` is gone)."""
SD15_REVISION = "451f4fe16113bff5a5d2269ed5ad43b0592e9a14"
"""The commit of ``SD15`` the presets pin, so a rerun trains on the same weights."""
SD15_LICENSE = "creativeml-openrail-m"

TARGETS = ("study", "attention")
MAX_SEED = 2**32 - 1
"""Seeds run from 0 to 2**32 - 1 (NumPy's seeding, through accelerate's ``set_seed``, takes no more)."""
MAX_CLIP_SKIP = 12
MAX_ALPHA_PER_RANK = 64
MAX_RANK = 1024
MAX_RESOLUTION = 4096
MIXED_PRECISION = ("no", "fp16", "bf16")
OPTIMIZERS = ("adamw8bit", "adamw")
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")

#: Settings that define a run: a checkpoint resumes only into a run that agrees on all of them.
RUN_FIELDS = (
    "base",
    "base_revision",
    "data",
    "data_config",
    "rank",
    "alpha",
    "targets",
    "resolution",
    "bucket_step",
    "clip_skip",
    "batch_size",
    "seed",
    "train_text_encoder",
)


@dataclass
class LoraConfig(RunConfig):
    """Every setting of a LoRA run; ``PRESETS`` and the YAML presets fill it, command-line options override.

    Attributes:
        base: The base model: a Hub repository id, a local diffusers folder, or a single ``.safetensors``
            checkpoint.
        base_revision: The Hub commit to load (ignored for local bases; ``None`` for the default branch).
        data: The training set's fulora dataset name (any dataset with ``image`` and ``text`` columns).
        data_config: Its config (``lora-100`` is the study's 100-image set).
        source: The dataset's archive or extracted folder (``None``: its builder's default).
        dataset_options: Further builder options (``fulora data list`` shows them).
        resolution: Training resolution: buckets hold about ``resolution**2`` pixels.
        bucket_step: Bucket sides are multiples of this (kohya: 64).
        bucket_no_upscale: Never enlarge an image smaller than ``resolution**2`` pixels (kohya's option).
        batch_size: Images per step on each process (the global batch is this times the processes).
        rank: LoRA rank ``r``.
        alpha: LoRA alpha (updates are scaled by ``alpha / rank``); ``None`` means alpha = rank.
        max_steps: Optimizer steps.
        learning_rate: Learning rate of the UNet's LoRA layers.
        text_encoder_lr: Learning rate of the text encoder's LoRA layers; 0 keeps the text encoder frozen.
        lr_scheduler: ``constant`` (the study), ``constant_with_warmup``, ``linear`` or ``cosine``.
        lr_warmup_steps: Warm-up steps (the study: none).
        targets: ``study`` (what kohya's standard LoRA adapts: every linear and 1x1 convolution of the
            UNet's transformer blocks, and the CLIP attention and MLP layers) or ``attention``
            (``to_q/to_k/to_v/to_out.0`` and CLIP's ``q/k/v/out_proj``, as diffusers' example).
        clip_skip: Clip skip in the study's sense (1 = last layer, 2 = penultimate).
        mixed_precision: ``no``, ``fp16`` (needs a GPU) or ``bf16``.
        optimizer: ``adamw8bit`` (bitsandbytes, GPU only; torch AdamW otherwise) or ``adamw``.
        max_grad_norm: Gradient clipping norm (0 disables clipping).
        seed: Seed of the data order, the noise and the latent samples.
        checkpoint_every: Write a resumable checkpoint every this many steps (0: only at the end).
        validation_every: Sample one image per plane every this many steps (0: only at the end).
        validation_inference_steps: Denoising steps of those samples.
        validation_seed: Seed of those samples.
        cache_dir: Where built datasets and the latent cache go (default: the usual caches).
        cpu: Train on the CPU even if a GPU is present.
        output_name: The run's name, ``--name`` (kohya's ``output_name``): the kohya file is
            ``NAME.safetensors`` and A1111 lists the adapter under it; ``None``: the output folder's name.
    """

    base: str = SD15
    base_revision: str | None = SD15_REVISION
    data: str = "spanish"
    data_config: str = "lora-100"
    source: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    resolution: int = 512
    bucket_step: int = 64
    bucket_no_upscale: bool = True
    batch_size: int = 2
    rank: int = 8
    alpha: float | None = None
    max_steps: int = 10_000
    learning_rate: float = 1e-4
    text_encoder_lr: float = 5e-5
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    targets: str = "study"
    clip_skip: int = 2
    mixed_precision: str = "fp16"
    optimizer: str = "adamw8bit"
    max_grad_norm: float = 1.0
    seed: int = 1234
    checkpoint_every: int = 500
    validation_every: int = 1000
    validation_inference_steps: int = 30
    validation_seed: int = 0
    cache_dir: str | None = None
    cpu: bool = False
    output_name: str | None = None

    @property
    def lora_alpha(self) -> float:
        """Alpha, with ``None`` meaning alpha = rank."""
        return float(self.rank if self.alpha is None else self.alpha)

    @property
    def train_text_encoder(self) -> bool:
        """Whether the text encoder gets LoRA layers (a positive ``text_encoder_lr``)."""
        return self.text_encoder_lr > 0

    @property
    def dataset_id(self) -> str:
        """``data/data_config``, e.g. ``spanish/lora-100``."""
        return f"{self.data}/{self.data_config}"

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict, with the derived values a checkpoint compares."""
        values = dataclasses.asdict(self)
        values["alpha"] = self.lora_alpha
        values["train_text_encoder"] = self.train_text_encoder
        return values

    KIND = "LoRA"

    def validate(self, *, cuda_available: bool | None = None) -> None:
        """Refuse bad values and bad combinations before anything is loaded.

        Raises:
            ConfigError: Quoting the first bad value and the option it came from.
        """
        for name in ("rank", "batch_size", "max_steps", "resolution", "bucket_step", "clip_skip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise field_error(name, f"must be a positive integer; got {value!r}")
        for name in ("checkpoint_every", "validation_every", "lr_warmup_steps", "validation_inference_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise field_error(name, f"must be 0 or a positive integer; got {value!r}")
        self._check_ranges()
        if self.resolution % 8:
            raise field_error(
                "resolution", f"must be divisible by 8 (the VAE's factor); got {self.resolution!r}"
            )
        if self.bucket_step % 8:
            raise field_error("bucket_step", f"must be divisible by 8; got {self.bucket_step!r}")
        if self.bucket_step > self.resolution:
            raise field_error(
                "bucket_step",
                f"({self.bucket_step}) cannot exceed the resolution; got resolution {self.resolution!r}",
            )
        if not (_finite(self.learning_rate) and self.learning_rate > 0):
            raise field_error(
                "learning_rate", f"must be a finite positive number; got {self.learning_rate!r}"
            )
        if not (_finite(self.text_encoder_lr) and self.text_encoder_lr >= 0):
            raise field_error(
                "text_encoder_lr",
                f"must be 0 (frozen) or a finite positive number; got {self.text_encoder_lr!r}",
            )
        if not (_finite(self.max_grad_norm) and self.max_grad_norm >= 0):
            raise field_error(
                "max_grad_norm",
                f"must be 0 (no clipping) or a finite positive number; got {self.max_grad_norm!r}",
            )
        if self.targets not in TARGETS:
            raise field_error("targets", f"must be one of {', '.join(TARGETS)}; got {self.targets!r}")
        if self.optimizer not in OPTIMIZERS:
            raise field_error("optimizer", f"must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.lr_scheduler not in SCHEDULERS:
            raise field_error(
                "lr_scheduler", f"must be one of {', '.join(SCHEDULERS)}; got {self.lr_scheduler!r}"
            )
        if self.mixed_precision not in MIXED_PRECISION:
            raise field_error(
                "mixed_precision",
                f"must be one of {', '.join(MIXED_PRECISION)}; got {self.mixed_precision!r}",
            )
        if self.mixed_precision == "fp16":
            if cuda_available is None:
                cuda_available = require("torch", "train").cuda.is_available()
            if self.cpu or not cuda_available:
                raise field_error(
                    "mixed_precision",
                    "fp16 needs a CUDA GPU and none is in use; pass `mixed_precision` no (or bf16) to train on the CPU",
                )
        if not isinstance(self.dataset_options, dict):
            raise field_error("dataset_options", f"must be a mapping; got {self.dataset_options!r}")
        if self.source is not None and not Path(self.source).expanduser().exists():
            raise field_error("source", f"{self.source} does not exist")
        check_base(self.base)
        layers = text_encoder_layers(self.base) if base_kind(self.base) == "folder" else None
        if layers is not None:
            check_clip_skip(self.clip_skip, layers, self.base)

    def _check_ranges(self) -> None:
        """Refuse numbers that are not finite or out of range (each would fail, or train nothing, later)."""
        if self.alpha is not None:
            if not _finite(self.alpha):
                raise field_error("alpha", f"must be a finite number; got {self.alpha!r}")
            if self.alpha <= 0:
                raise field_error("alpha", f"must be a positive number; got {self.alpha!r}")
            if self.alpha > MAX_ALPHA_PER_RANK * self.rank:
                raise field_error(
                    "alpha",
                    f"must be at most {MAX_ALPHA_PER_RANK} x rank ({MAX_ALPHA_PER_RANK * self.rank}): "
                    f"updates are scaled by alpha / rank; got {self.alpha!r}",
                )
        if self.rank > MAX_RANK:
            raise field_error("rank", f"must be at most {MAX_RANK}; got {self.rank!r}")
        if self.resolution > MAX_RESOLUTION:
            raise field_error("resolution", f"must be at most {MAX_RESOLUTION}; got {self.resolution!r}")
        if self.clip_skip > MAX_CLIP_SKIP:
            raise field_error(
                "clip_skip",
                f"must be 1 to {MAX_CLIP_SKIP} (SD 1.5's text encoder has 12 layers); got {self.clip_skip!r}",
            )
        for name in ("seed", "validation_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
                raise field_error(name, f"must be an integer from 0 to {MAX_SEED}; got {value!r}")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_clip_skip(clip_skip: int, layers: int, base: str) -> None:
    """Refuse a clip skip that reaches below the text encoder's first layer.

    Raises:
        ConfigError: Naming the base and its number of layers.
    """
    if clip_skip > layers:
        raise field_error(
            "clip_skip", f"{clip_skip} is more than the {layers} layers of the text encoder of --base {base}"
        )


def text_encoder_layers(base: str) -> int | None:
    """The number of layers of a local diffusers base's text encoder (from its config), or None if unknown."""
    import json

    path = Path(base).expanduser() / "text_encoder" / "config.json"
    try:
        layers = json.loads(path.read_text(encoding="utf-8")).get("num_hidden_layers")
    except (OSError, ValueError, AttributeError):
        return None
    return layers if isinstance(layers, int) and layers > 0 else None


def base_kind(base: str) -> str:
    """Tell what ``--base`` names: ``"folder"`` (local diffusers folder), ``"file"`` (single checkpoint)
    or ``"hub"`` (a Hub repository id)."""
    path = Path(base).expanduser()
    if path.exists() or base.startswith((".", "/", "~")) or base.count("/") > 1 or os.sep + os.sep in base:
        return "file" if path.suffix in (".safetensors", ".ckpt") else "folder"
    return "hub"


def check_base(base: str) -> None:
    """Refuse a ``--base`` that cannot be a Stable Diffusion model, before anything is loaded.

    Raises:
        ConfigError: For a missing path, a folder without ``model_index.json``, or a file that is not a
            ``.safetensors``/``.ckpt`` checkpoint.
    """
    if not isinstance(base, str) or not base.strip():
        raise OptionValueError(f"--base must name a model; got {base!r}")
    kind = base_kind(base)
    path = Path(base).expanduser()
    if kind == "hub":
        return
    if not path.exists():
        raise OptionValueError(
            f"--base {base} does not exist (give a diffusers folder, a .safetensors file or a Hub id)"
        )
    if kind == "folder":
        if not path.is_dir():
            raise OptionValueError(
                f"--base {base} is not a diffusers model folder nor a .safetensors checkpoint"
            )
        if not (path / "model_index.json").is_file():
            raise OptionValueError(
                f"--base {base} is not a diffusers model folder (it has no model_index.json)"
            )
        for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
            if not (path / sub).is_dir():
                raise OptionValueError(f"--base {base} is not a Stable Diffusion folder (it has no {sub}/)")


PRESETS: dict[str, dict[str, Any]] = {
    # The study's three adapters: only the rank (and alpha = rank) differ.
    "r8": {"rank": 8, "alpha": 8},
    "r32": {"rank": 32, "alpha": 32},
    "r128": {"rank": 128, "alpha": 128},
    # A seconds-long run on the CPU, for tests and the demo: tiny steps, no 8-bit Adam, no fp16.
    "smoke": {
        "rank": 4,
        "alpha": 4,
        "resolution": 64,
        "bucket_step": 16,
        "max_steps": 6,
        "learning_rate": 1e-3,
        "text_encoder_lr": 0.0,
        "mixed_precision": "no",
        "optimizer": "adamw",
        "checkpoint_every": 0,
        "validation_every": 0,
        "validation_inference_steps": 2,
    },
}
"""Named presets. ``r8``/``r32``/``r128`` are the study's runs (the defaults above are its shared values);
``training/configs/lora_r*.yaml`` spell the same values out."""
LoraConfig.PRESETS = PRESETS
