"""The options of a generation run, the samplers, the per-image seed rule and the plan. Needs no torch.

The plan is the ordered list of every image a run makes: planes in the order asked, then samplers, then
the image's index within its plane and sampler. Each image's seed is derived from (base seed, plane,
sampler, index) alone (``image_seed``), so it does not depend on how many images, planes or processes the
run has, and any one image can be regenerated alone. Images are sampled in fixed batches (``batches``):
consecutive images of one plane and sampler, cut every ``batch_size`` images. A batch is the unit of work
of every process and of every resume, so each image is always sampled in the same batch, which keeps its
pixels identical whether the run was interrupted, resumed or split across processes (batched and
one-by-one sampling agree only up to float rounding, see ``pipeline.sample``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from fulora_data.errors import ConfigError, DataError, OptionValueError
from fulora_data.presets import RunConfig, field_error
from fulora_data.taxonomy import CERVIX, PLANES, canonical_plane, prompt_for

SAMPLERS: dict[str, str] = {
    "euler": "EulerDiscreteScheduler",
    "unipc": "UniPCMultistepScheduler",
    "ddim": "DDIMScheduler",
    "dpmpp-2m": "DPMSolverMultistepScheduler",
}
"""Sampler names accepted by ``--samplers`` -> the diffusers scheduler class. All are deterministic given
the initial noise (no ancestral samplers), which the per-image seed rule relies on."""

MIXED_PRECISION = ("no", "fp16", "bf16")
SEED_SCHEME = "fulora-generate/v1"
"""Versions ``image_seed``'s rule; stored with the run's settings so a changed rule is never mixed in."""

DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 7.0
MAX_GUIDANCE = 30.0
"""A1111's CFG scale slider stops at 30; beyond it images only saturate."""
MAX_ADAPTER_SCALE = 10.0
"""fulora's bound on ``--adapter-scale`` (A1111 has none): ten times the trained strength only saturates."""
MAX_SIDE = 8192
"""The largest ``--width``/``--height`` (A1111's slider stops at 2048; SD 1.5 was trained at 512)."""

PRESETS: dict[str, dict[str, Any]] = {
    # The study (FU-LoRA) made 500 images per plane and sampler at 512 px with Euler and UniPC, from
    # the kohya adapter trained with clip skip 2. Steps and guidance were not recorded: these are the
    # defaults of the GUI it used (AUTOMATIC1111: 20 steps, CFG 7).
    "study": {
        "planes": PLANES,
        "per_plane": 500,
        "samplers": ("euler", "unipc"),
        "width": 512,
        "height": 512,
        "steps": DEFAULT_STEPS,
        "guidance_scale": DEFAULT_GUIDANCE,
        # The study's kohya config (kohya_lora_config_abdomen.json) trained with clip_skip 2, and the
        # images were sampled with it: an explicit --clip-skip still wins.
        "clip_skip": 2,
    },
}


def image_seed(seed: int, plane: str, sampler: str, index: int) -> int:
    """Return one image's seed, derived from the run's seed, its plane, sampler and index.

    The rule: the first 4 bytes (big-endian) of the sha256 of ``"fulora-generate/v1|{seed}|{plane}|
    {sampler}|{index}"``, a 32-bit integer. A hash, not a counter, so adding planes, samplers or images
    to a run leaves every other image's seed unchanged.
    """
    text = f"{SEED_SCHEME}|{int(seed)}|{plane}|{sampler}|{int(index)}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")


@dataclass(frozen=True)
class PlannedImage:
    """One image of the plan.

    Attributes:
        position: Its position in the plan (the record's ``generation_index``).
        plane: The canonical plane.
        sampler: The sampler name (a key of ``SAMPLERS``).
        index: Its index among the images of its plane and sampler.
        seed: Its seed (``image_seed``).
    """

    position: int
    plane: str
    sampler: str
    index: int
    seed: int

    @property
    def image_id(self) -> str:
        """The study's naming: generation index and seed, e.g. ``"00012-2671683618"``."""
        return f"{self.position:05d}-{self.seed}"


@dataclass(frozen=True)
class GenerateConfig(RunConfig):
    """Everything a generation run needs; the options of ``fulora generate``.

    Attributes:
        base: The base model: a Hub repository or a local diffusers folder.
        base_revision: A branch, tag or commit of a Hub base (``None``: the default branch).
        adapter: A LoRA adapter: a fulora adapter folder, a ``.safetensors`` file (fulora's, diffusers' or
            kohya's) or a Hub repository; ``None`` samples the base alone.
        weight_name: The adapter file inside a folder or repository (e.g. the study's
            ``fetal_ultrasound_v1.0.safetensors``).
        adapter_revision: A branch, tag or commit of a Hub adapter.
        adapter_scale: The LoRA scale.
        planes: The planes to generate (canonical names).
        per_plane: Images per plane and sampler.
        samplers: Sampler names (keys of ``SAMPLERS``).
        steps: Inference steps.
        guidance_scale: Classifier-free guidance scale.
        negative_prompt: The negative prompt (``""``: none).
        clip_skip: Clip skip in the study's (kohya's) sense, 1 = last layer; ``None``: the adapter's own,
            else 1.
        width: Image width in pixels (a multiple of 8).
        height: Image height in pixels (a multiple of 8).
        seed: The run's seed, from which every image's seed is derived.
        batch_size: Images per pipeline call.
        shard_size: Images per WebDataset shard.
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"`` (ignored on CPU, which samples in fp32).
        cpu: Sample on the CPU even when a GPU is present.
        compile: ``torch.compile`` the UNet.
        channels_last: Use the channels-last memory format for the UNet and VAE.
        against: ``NAME/CONFIG`` of the adapter's training set for the memorisation check.
        against_source: Its source (archive or folder).
        cache_dir: Where the memorisation check caches built datasets.
        allow_unmatched: Sample even when some of the adapter's keys match no module of the base
            (otherwise refused, naming them).
    """

    base: str
    adapter: str | None = None
    base_revision: str | None = None
    weight_name: str | None = None
    adapter_revision: str | None = None
    adapter_scale: float = 1.0
    planes: tuple[str, ...] = PLANES
    per_plane: int = 10
    samplers: tuple[str, ...] = ("euler", "unipc")
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    negative_prompt: str = ""
    clip_skip: int | None = None
    width: int = 512
    height: int = 512
    seed: int = 0
    batch_size: int = 8
    shard_size: int = 1000
    mixed_precision: str = "fp16"
    cpu: bool = False
    compile: bool = False
    channels_last: bool = False
    against: str | None = None
    against_source: str | None = None
    cache_dir: str | None = None
    allow_unmatched: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    KIND = "generation"
    PRESETS = PRESETS

    def validate(self) -> None:
        """Refuse bad options (see :meth:`validated`, which also returns the canonical config)."""
        self.validated()

    def validated(self) -> GenerateConfig:
        """Check every option and return the config with planes and samplers in canonical form.

        Raises:
            ConfigError: Naming the first bad option and its value.
        """
        if not self.base:
            raise field_error("base", "is required: a Hub repository or a local diffusers folder")
        planes = []
        for value in self.planes:
            try:
                plane = canonical_plane(value)
            except DataError as err:
                raise field_error("planes", f": {err}") from None
            if plane == CERVIX:
                raise field_error(
                    "planes", f": {value!r} is not one of the study's five planes ({', '.join(PLANES)})"
                )
            if plane in planes:
                raise field_error("planes", f"names {plane!r} twice")
            planes.append(plane)
        if not planes:
            raise field_error("planes", "names no plane")
        samplers = []
        for value in self.samplers:
            name = str(value).strip().lower()
            if name not in SAMPLERS:
                from fulora_data.generation.samplers import a1111_sampler

                try:
                    a1111_sampler(name)  # raises, naming the A1111 samplers fulora has
                except ConfigError as err:
                    raise OptionValueError(str(err)) from None  # a bad --samplers value: exit 2
            if name in samplers:
                raise field_error("samplers", f"names {name!r} twice")
            samplers.append(name)
        if not samplers:
            raise field_error("samplers", "names no sampler")
        for name in ("per_plane", "steps", "batch_size", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise field_error(name, f"must be a positive integer, got {value!r}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 8 or value % 8:
                raise field_error(
                    name, f"must be a positive multiple of 8 (the VAE's latent grid), got {value!r}"
                )
        for name, low, high in (
            ("guidance_scale", 0.0, MAX_GUIDANCE),
            ("adapter_scale", -MAX_ADAPTER_SCALE, MAX_ADAPTER_SCALE),
        ):
            _check_number(name, getattr(self, name), low, high)
        for name in ("width", "height"):
            if getattr(self, name) > MAX_SIDE:
                raise field_error(name, f"must be at most {MAX_SIDE} pixels, got {getattr(self, name)!r}")
        if self.clip_skip is not None and (isinstance(self.clip_skip, bool) or self.clip_skip < 1):
            raise field_error(
                "clip_skip",
                f"counts from 1 (1 = the text encoder's last layer, 2 = the penultimate), got {self.clip_skip!r}",
            )
        if self.mixed_precision not in MIXED_PRECISION:
            raise field_error(
                "mixed_precision",
                f"must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}",
            )
        if self.against_source is not None and self.against is None:
            raise field_error("against_source", "needs `against` NAME/CONFIG (the adapter's training set)")
        if self.against is not None:
            from fulora_data.dataset_ref import DatasetRef

            against = DatasetRef.parse(self.against, option="against", split="none")
            if against.on_hub and self.against_source is not None:
                raise field_error(
                    "against_source",
                    f"does not apply to `against` {self.against!r}: it is a published dataset",
                )
        if self.adapter is None and (self.weight_name or self.adapter_revision):
            raise OptionValueError("--weight-name and --adapter-revision need --adapter")
        return dataclasses.replace(self, planes=tuple(planes), samplers=tuple(samplers))


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    """Refuse a field's number that is not finite or lies outside ``[low, high]``, quoting it."""
    import math

    if isinstance(value, bool) or not isinstance(value, int | float):
        raise field_error(name, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise field_error(name, f"must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise field_error(name, f"must be between {low:g} and {high:g}, got {value!r}")


def plan(config: GenerateConfig) -> list[PlannedImage]:
    """Return every image of a run, in order: planes, then samplers, then index."""
    images = []
    for plane in config.planes:
        for sampler in config.samplers:
            for index in range(config.per_plane):
                seed = image_seed(config.seed, plane, sampler, index)
                images.append(PlannedImage(len(images), plane, sampler, index, seed))
    return images


def batches(images: list[PlannedImage], batch_size: int) -> list[list[PlannedImage]]:
    """Cut a plan into batches of consecutive images of one plane and sampler, ``batch_size`` at most."""
    out: list[list[PlannedImage]] = []
    for image in images:
        last = out[-1] if out else None
        if (
            last
            and len(last) < batch_size
            and (last[0].plane, last[0].sampler) == (image.plane, image.sampler)
        ):
            last.append(image)
        else:
            out.append([image])
    return out


def prompt(plane: str) -> str:
    """The study's prompt for a plane (``fulora_data.taxonomy.PROMPTS``)."""
    return prompt_for(plane)
