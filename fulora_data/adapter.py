"""The one on-disk format of fulora's LoRA adapters, with its writer and a reader that needs no diffusers.

An adapter folder holds::

    pytorch_lora_weights.safetensors   the adapter alone, diffusers format (``unet.…lora_A.weight`` /
                                       ``text_encoder.text_model.…``), fp32, with only the metadata a
                                       loader needs: ``pipe.load_lora_weights(folder)`` loads it
    NAME.safetensors                   the same weights as kohya's ``networks.lora`` saves them: kohya/A1111
                                       keys (``lora_unet_…``, ``lora_te_…``), fp16 (kohya's
                                       ``save_precision``), kohya's ``ss_*`` metadata and ``sshs_*`` hashes;
                                       NAME is the run's ``--name`` (kohya's ``output_name``)
    README.md                          the model card

Both safetensors files carry, in their header metadata, ``fulora_adapter``: a JSON object (``AdapterInfo``)
with the base model and revision, rank, alpha, targets, clip skip, resolution, prompts and training set, so
a generator can read how the adapter was trained from the file alone. Kohya-format files made elsewhere
(such as the study's ``fangyijie/fu-lora``) have no such entry; ``read_adapter`` then infers the format,
rank and alpha from the tensor names, shapes and ``.alpha`` scalars in the header.

Reading parses the safetensors header directly (8-byte length, JSON), so it needs neither torch nor
diffusers; writing needs torch and safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fulora_data.errors import DataError, SourceNotFoundError, require
from fulora_data.io import atomic_write_bytes, file_sha256  # noqa: F401  (an adapter file's identity, kept importable here)

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
METADATA_KEY = "fulora_adapter"
#: A run name (kohya's ``output_name``), the kohya file's name without ``.safetensors``: safe on every
#: file system and in A1111's ``<lora:NAME:1>`` prompt syntax.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
FORMAT_VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class AdapterInfo:
    """How an adapter was made: everything a generator needs besides the weights.

    Attributes:
        base_model: The base model's Hub repository or the local folder's name (never a local path).
        base_model_revision: The base model's commit hash (``""`` when unknown or local).
        rank: LoRA rank ``r``.
        alpha: LoRA alpha (the update is scaled by ``alpha / rank``).
        targets: ``"study"`` (kohya's standard LoRA modules) or ``"attention"`` (``to_q/to_k/to_v/to_out.0``),
            or ``"unknown"`` for a foreign file.
        text_encoder: Whether the text encoder has LoRA layers too.
        clip_skip: Clip skip in the study's (kohya's) sense: 1 uses the text encoder's last layer, 2 the
            penultimate one. diffusers' ``clip_skip`` argument is this minus one.
        resolution: Training resolution in pixels (``0`` when unknown).
        prompts: The prompt of each plane used in training (plane name -> prompt).
        dataset: The training set, e.g. ``"spanish/lora-100"`` (``""`` when unknown).
        format: ``"diffusers"`` or ``"kohya"``: the key layout of the file read.
        fulora_version: The fulora version that wrote it (``""`` for a foreign file).
        extra: Further facts (steps, learning rates, seed, ...), JSON values.
        name: The run's name (kohya's ``output_name``): the kohya file is ``NAME.safetensors`` (``""``
            for files written before names, or foreign files without ``ss_output_name``).
    """

    base_model: str
    base_model_revision: str
    rank: int
    alpha: float
    targets: str
    text_encoder: bool
    clip_skip: int
    resolution: int = 0
    prompts: dict[str, str] = field(default_factory=dict)
    dataset: str = ""
    format: str = "diffusers"
    fulora_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the info as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str) -> AdapterInfo:
        """Build the info from a dict read from a file.

        Raises:
            DataError: If a required field is missing or of the wrong type; ``where`` names the file.
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, spec in known.items():
            if name not in values:
                if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                    raise DataError(f"{where}: adapter metadata lacks {name!r}")
                continue
            kwargs[name] = values[name]
        for name in ("rank", "clip_skip", "resolution"):
            if name in kwargs and (isinstance(kwargs[name], bool) or not isinstance(kwargs[name], int)):
                raise DataError(
                    f"{where}: adapter metadata {name!r} must be an integer, got {kwargs[name]!r}"
                )
        if not isinstance(kwargs["alpha"], int | float) or isinstance(kwargs["alpha"], bool):
            raise DataError(f"{where}: adapter metadata 'alpha' must be a number, got {kwargs['alpha']!r}")
        kwargs["alpha"] = float(kwargs["alpha"])
        return cls(**kwargs)


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, dict], dict[str, str], int]:
    """Read a safetensors file's header without loading any tensor.

    Returns:
        The tensor entries (name -> ``dtype``, ``shape``, ``data_offsets``), the ``__metadata__`` strings,
        and the byte offset where the tensor data begins.

    Raises:
        DataError: If the file is not a safetensors file, naming it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) != 8:
                raise DataError(f"{path} is not a safetensors file (shorter than its header length)")
            (length,) = struct.unpack("<Q", raw)
            if length > _MAX_HEADER:
                raise DataError(f"{path} is not a safetensors file (header of {length} bytes)")
            header = json.loads(handle.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path} is not a safetensors file ({err})") from None
    if not isinstance(header, dict):
        raise DataError(f"{path} is not a safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    return header, dict(metadata), 8 + length


_SCALAR_FORMATS = {"F32": "<f", "F64": "<d", "F16": "<e"}


def _read_scalar(path: Path, entry: dict, data_start: int) -> float | None:
    """Read a one-element tensor's value (an ``.alpha``) straight from the file."""
    begin, end = entry["data_offsets"]
    with open(path, "rb") as handle:
        handle.seek(data_start + begin)
        raw = handle.read(end - begin)
    dtype = entry.get("dtype")
    if dtype == "BF16" and len(raw) == 2:
        return struct.unpack("<f", b"\x00\x00" + raw)[0]
    fmt = _SCALAR_FORMATS.get(dtype)
    if fmt is None or struct.calcsize(fmt) != len(raw):
        return None
    return struct.unpack(fmt, raw)[0]


def key_format(keys: list[str] | set[str]) -> str:
    """Tell a LoRA file's key layout: ``"kohya"`` (``lora_unet_…``), ``"diffusers"`` (``unet.…``) or ``"unknown"``."""
    keys = list(keys)
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_")) for k in keys):
        return "kohya"
    if any(k.startswith(("unet.", "text_encoder.")) for k in keys):
        return "diffusers"
    return "unknown"


def adapter_file(path: str | os.PathLike, weight_name: str | None = None) -> Path:
    """Resolve an adapter folder (or file) to its safetensors file.

    Args:
        path: An adapter folder or a ``.safetensors`` file.
        weight_name: The file to take inside the folder; default ``pytorch_lora_weights.safetensors``, else
            the folder's only ``.safetensors`` file.

    Raises:
        SourceNotFoundError: If nothing is there, or the folder has no single adapter file.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise SourceNotFoundError(f"adapter {str(path)!r} is neither a folder nor a .safetensors file")
    if weight_name:
        candidate = path / weight_name
        if not candidate.is_file():
            raise SourceNotFoundError(f"adapter folder {str(path)!r} has no {weight_name!r}")
        return candidate
    if (path / DIFFUSERS_FILE).is_file():
        return path / DIFFUSERS_FILE
    files = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise SourceNotFoundError(
            f"adapter folder {str(path)!r} has no {DIFFUSERS_FILE} and not exactly one .safetensors file "
            f"(found: {found}); pass --weight-name"
        )
    return files[0]


def read_adapter(path: str | os.PathLike, weight_name: str | None = None) -> AdapterInfo:
    """Read how an adapter was made, from its file's header alone (no torch, no diffusers).

    Files written by fulora carry ``fulora_adapter`` metadata. For other LoRA files (kohya/A1111 or
    diffusers format) the format comes from the key names, the rank from the down-projection shapes, the
    alpha from the ``.alpha`` scalars (kohya) or diffusers' ``lora_adapter_metadata`` (else alpha = rank,
    as diffusers assumes), and whether the text encoder is adapted from its keys.

    Args:
        path: An adapter folder or a ``.safetensors`` file.
        weight_name: The file inside a folder (see ``adapter_file``).

    Raises:
        SourceNotFoundError: If no adapter file is found.
        DataError: If the file is not a LoRA safetensors file, holds keys that are no LoRA weight, or was
            made for another base model family (SDXL, SD 2), naming it.
    """
    file = adapter_file(path, weight_name)
    tensors, metadata, data_start = read_safetensors_header(file)
    check_lora_keys(file, list(tensors), metadata)
    if METADATA_KEY in metadata:
        try:
            values = json.loads(metadata[METADATA_KEY])
        except ValueError as err:
            raise DataError(f"{file}: {METADATA_KEY} metadata is not valid JSON ({err})") from None
        if not isinstance(values, dict):
            raise DataError(f"{file}: {METADATA_KEY} metadata must be a JSON object")
        return AdapterInfo.from_dict(values, str(file))
    keys = list(tensors)
    kind = key_format(keys)
    if kind == "unknown":
        raise DataError(f"{file} holds no LoRA weights (no lora_unet_/lora_te_ or unet./text_encoder. keys)")
    ranks = sorted(
        {
            int(entry["shape"][0])
            for name, entry in tensors.items()
            if name.endswith(("lora_down.weight", "lora_A.weight", ".down.weight")) and entry.get("shape")
        }
    )
    if not ranks:
        raise DataError(f"{file} holds no LoRA down-projection weights (lora_down / lora_A)")
    rank = ranks[-1]
    alpha: float = float(rank)
    if kind == "kohya":
        alphas = [
            _read_scalar(file, entry, data_start)
            for name, entry in tensors.items()
            if name.endswith(".alpha")
        ]
        alphas = [a for a in alphas if a is not None]
        if alphas:
            alpha = float(max(set(alphas), key=alphas.count))
    elif "lora_adapter_metadata" in metadata:
        # diffusers' save_lora_weights stores each component's LoraConfig flat, prefixed: "unet.lora_alpha".
        try:
            packed = json.loads(metadata["lora_adapter_metadata"])
            # diffusers writes the peft configs flat, prefixed by component ("unet.lora_alpha").
            unet = packed.get("unet") or {k[5:]: v for k, v in packed.items() if k.startswith("unet.")}
            alpha = float(unet.get("lora_alpha", rank))
        except (ValueError, AttributeError, TypeError):
            pass
    text_encoder = any(k.startswith(("lora_te_", "lora_te1_", "text_encoder.")) for k in keys)
    name = metadata.get("ss_output_name", "")
    return AdapterInfo(
        name=name if NAME_PATTERN.fullmatch(name) else "",
        base_model=_kohya_base_model(metadata.get("ss_sd_model_name", "")),
        base_model_revision="",
        rank=rank,
        alpha=alpha,
        targets="unknown",
        text_encoder=text_encoder,
        clip_skip=_kohya_clip_skip(metadata.get("ss_clip_skip", "")),
        format=kind,
        extra={"ranks": ranks} if len(ranks) > 1 else {},
    )


def _kohya_clip_skip(value: str) -> int:
    """kohya's ``ss_clip_skip`` (``"2"``, or ``"None"`` when not set) as fulora's clip skip (0: unknown)."""
    try:
        number = int(str(value).strip())
    except ValueError:
        return 0
    return number if number >= 1 else 0


def _kohya_base_model(value: str) -> str:
    """kohya's ``ss_sd_model_name`` as a base model name: a Hub id as is, a file by its name alone.

    kohya stores whatever it was given, often a local path: only its last part is kept, so no local path
    is ever recorded.
    """
    value = str(value).strip()
    name = re.split(r"[\\/]", value)[-1]
    if re.fullmatch(r"[\w.-]+\.(safetensors|ckpt|bin|pt|pth)", name):
        return name
    return value if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value) else ""


_KOHYA_KEY = re.compile(r"lora_(unet|te)_\w+\.(lora_down\.weight|lora_up\.weight|alpha)")
# peft's lora_A/lora_B, and the older diffusers forms diffusers still loads (``to_q_lora.down``,
# ``lora.down``, ``lora_linear_layer.down``)
_DIFFUSERS_KEY = re.compile(
    r"(unet|text_encoder)\.[\w.]+\."
    r"(lora_[AB](\.\w+)?\.weight|(\w+_lora|lora|lora_linear_layer)\.(up|down)\.weight|alpha)"
)
_OTHER_BASE_PREFIXES = ("lora_te1_", "lora_te2_", "text_encoder_2.", "lora_unet_input_blocks_")


def check_lora_keys(file: str | os.PathLike, keys: list[str], metadata: dict[str, str]) -> None:
    """Refuse a LoRA file for another base model family or with keys that are no LoRA weight.

    An SD 1.x LoRA has ``lora_unet_…``/``lora_te_…`` (kohya) or ``unet.…``/``text_encoder.…``
    (diffusers) keys only, each a down or up weight or an alpha. SDXL files (``lora_te1_``/``lora_te2_``,
    ``text_encoder_2.``), kohya's ``ss_v2`` or an ``ss_base_model_version`` other than ``sd_v1`` are
    another base.

    Raises:
        DataError: One sentence naming the file and the first offending key or metadata value.
    """
    version = metadata.get("ss_base_model_version", "")
    if version and not version.startswith("sd_v1"):
        raise DataError(
            f"{file} is a LoRA for another base model (ss_base_model_version {version!r}); fulora's adapters "
            "are for Stable Diffusion 1.x"
        )
    if metadata.get("ss_v2") == "True":
        raise DataError(
            f"{file} is a LoRA for Stable Diffusion 2 (ss_v2 True); fulora's adapters are for 1.x"
        )
    other = [k for k in keys if k.startswith(_OTHER_BASE_PREFIXES)]
    if other:
        raise DataError(
            f"{file} is a LoRA for another base model (key {other[0]!r} is not in Stable Diffusion 1.x)"
        )
    unknown = [k for k in keys if not (_KOHYA_KEY.fullmatch(k) or _DIFFUSERS_KEY.fullmatch(k))]
    if unknown and key_format(keys) != "unknown":
        raise DataError(
            f"{file} holds {len(unknown)} key(s) that are no LoRA weight of a UNet or text encoder, "
            f"e.g. {unknown[0]!r}"
        )


@dataclass(frozen=True)
class ModuleMatch:
    """Where a LoRA file's modules land in a base model (``match_adapter_modules``).

    Attributes:
        matched: The file's module name -> (``"unet"`` or ``"text_encoder"``, the model's module name).
        unmatched: The file's module names that match no module of that name and shape, in file order.
    """

    matched: dict[str, tuple[str, str]]
    unmatched: list[str]

    def counts(self) -> dict[str, int]:
        """How many of the file's modules land in each component (``unet``, ``text_encoder``)."""
        out = {"unet": 0, "text_encoder": 0}
        for component, _ in self.matched.values():
            out[component] += 1
        return out

    def check(self, where: str) -> None:
        """Refuse a file with modules that land nowhere.

        Raises:
            DataError: One sentence naming ``where``, how many modules match nothing and the first few.
        """
        if self.unmatched:
            first = ", ".join(repr(name) for name in self.unmatched[:3])
            total = len(self.unmatched) + len(self.matched)
            raise DataError(
                f"{where}: {len(self.unmatched)} of its {total} LoRA modules match no module of this base "
                f"model (e.g. {first}); is it for another base?"
            )


_KOHYA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
_DIFFUSERS_SUFFIX = re.compile(r"\.(lora_[AB](\.\w+)?\.weight|alpha)$")


def _file_modules(tensors: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A LoRA file's modules: name -> component, the key under it to look up and its down/up shapes."""
    modules: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        shape = list(value["shape"] if isinstance(value, dict) else value.shape)
        if key.startswith(("lora_unet_", "lora_te_")):
            suffix = next((s for s in _KOHYA_SUFFIXES if key.endswith(s)), None)
            if suffix is None:
                modules.setdefault(key, {"component": None, "lookup": key})
                continue
            name = key[: -len(suffix)]
            component = "unet" if name.startswith("lora_unet_") else "text_encoder"
            lookup = name.removeprefix("lora_unet_").removeprefix("lora_te_").removeprefix("text_model_")
            entry = modules.setdefault(name, {"component": component, "lookup": "k:" + lookup})
            kind = {"lora_down.weight": "down", "lora_up.weight": "up"}.get(suffix[1:])
        else:
            found = _DIFFUSERS_SUFFIX.search(key)
            component, _, rest = key.partition(".")
            if found is None or component not in ("unet", "text_encoder"):
                modules.setdefault(key, {"component": None, "lookup": key})
                continue
            name = key[: found.start()]
            lookup = rest[: found.start() - len(component) - 1].removeprefix("text_model.")
            entry = modules.setdefault(name, {"component": component, "lookup": "d:" + lookup})
            kind = {"A": "down", "B": "up"}.get(found.group(1)[5:6]) if found.group(1) != "alpha" else None
        if kind:
            entry[kind] = shape
    return modules


def _model_modules(model) -> dict[str, tuple[str, int, int]]:
    """A model's LoRA-able modules by lookup key (``k:`` kohya-style, ``d:`` dotted): name, in, out."""
    torch = require("torch", "train")
    out: dict[str, tuple[str, int, int]] = {}
    for name, module in model.named_modules():
        layer = getattr(module, "base_layer", module)  # a module peft already gave a LoRA layer
        if name.endswith(".base_layer"):
            continue
        if isinstance(layer, torch.nn.Linear):
            sizes = (layer.in_features, layer.out_features)
        elif isinstance(layer, torch.nn.Conv2d):
            sizes = (layer.in_channels, layer.out_channels)
        else:
            continue
        bare = name.removeprefix("text_model.")
        out["d:" + bare] = (name, int(sizes[0]), int(sizes[1]))
        out["k:" + bare.replace(".", "_")] = (name, int(sizes[0]), int(sizes[1]))
    return out


def match_adapter_modules(tensors: dict[str, Any], unet, text_encoder=None) -> ModuleMatch:
    """Map a LoRA file's modules (kohya or diffusers keys) to a base model's modules, by name and shape.

    Diffusers keys are peft's (``….lora_A.weight``/``….lora_B.weight``, what diffusers writes today);
    the older ``to_q_lora.down`` forms count as unmatched.

    This is what a loader must account for: a module that matches no module of the base (another base,
    a typo, an SDXL or SD 2 file) or one of another shape would be dropped silently by diffusers.

    Args:
        tensors: The file's tensors, or its header entries (``read_safetensors_header``: name -> entry
            with ``shape``), so no weight need be loaded.
        unet: The base's UNet (a torch module; LoRA layers already injected are fine).
        text_encoder: The base's CLIP text encoder, or ``None`` (then every text-encoder module is
            unmatched).

    Returns:
        A ``ModuleMatch``; ``.check(where)`` raises one sentence if anything is unmatched.
    """
    models = {"unet": _model_modules(unet)}
    models["text_encoder"] = _model_modules(text_encoder) if text_encoder is not None else {}
    matched: dict[str, tuple[str, str]] = {}
    unmatched: list[str] = []
    for name, entry in _file_modules(tensors).items():
        target = models.get(entry["component"] or "", {}).get(entry["lookup"])
        down, up = entry.get("down"), entry.get("up")
        fits = (
            target is not None
            and down is not None
            and up is not None
            and down[1] == target[1]
            and up[0] == target[2]
            and down[0] == up[1]
        )
        if fits:
            matched[name] = (entry["component"], target[0])
        else:
            unmatched.append(name)
    return ModuleMatch(matched, unmatched)


def check_output_name(name: str, *, option: str = "--name") -> str:
    """Refuse a run name that cannot be the kohya file's name; return it.

    Raises:
        ConfigError: Naming ``option`` and quoting the value.
    """
    from fulora_data.errors import ConfigError

    if (
        not isinstance(name, str)
        or not NAME_PATTERN.fullmatch(name)
        or name.lower().endswith(".safetensors")
    ):
        raise ConfigError(
            f"{option} must be a file name of letters, digits, '.', '_' and '-' (at most 100, starting with "
            f"a letter or digit, without .safetensors); got {name!r}"
        )
    if f"{name}.safetensors" == DIFFUSERS_FILE:
        raise ConfigError(f"{option} {name!r} would overwrite the diffusers file; choose another name")
    return name


def kohya_file_name(name: str) -> str:
    """The kohya file of the run ``name``: ``NAME.safetensors``, as kohya names it after ``output_name``."""
    return f"{check_output_name(name)}.safetensors"


def find_kohya_file(folder: str | os.PathLike) -> Path | None:
    """The kohya-format file of an adapter folder: its one ``.safetensors`` file other than the diffusers
    file with kohya keys (``NAME.safetensors``, or ``fulora_lora_kohya.safetensors`` of older fulora)."""
    folder = Path(folder)
    found = []
    for file in sorted(folder.glob("*.safetensors")):
        if file.name == DIFFUSERS_FILE or not file.is_file():
            continue
        try:
            tensors, _, _ = read_safetensors_header(file)
        except DataError:
            continue
        if key_format(list(tensors)) == "kohya":
            found.append(file)
    return found[0] if len(found) == 1 else None


#: fulora's optimizer name -> the class kohya names in ``ss_optimizer`` (module + class).
_KOHYA_OPTIMIZERS = {"adamw8bit": "bitsandbytes.optim.adamw.AdamW8bit", "adamw": "torch.optim.adamw.AdamW"}


def kohya_metadata(info: AdapterInfo) -> dict[str, str]:
    """kohya's ``ss_*`` metadata for an adapter, values as kohya writes them (``str()`` of each value).

    The names and formats are those of kohya's ``train_network.py`` for one dataset without a
    ``--dataset_config``; the values come from ``info`` and its ``extra`` (what the trainer recorded).
    Left out: ``ss_session_id`` and the ``ss_training_*_at`` timestamps (they would make the same adapter
    different bytes), ``ss_sd_scripts_commit_hash`` (no sd-scripts ran) and ``ss_tag_frequency``.
    """
    extra = info.extra
    buckets = extra.get("buckets") or {}
    sizes = sorted((tuple(int(v) for v in key.split("x")), count) for key, count in buckets.items())
    bucket_info = {
        "buckets": {
            str(i): {"resolution": list(size), "count": count} for i, (size, count) in enumerate(sizes)
        },
        "mean_img_ar_error": extra.get("mean_img_ar_error", 0.0),
    }
    images = extra.get("num_images")
    steps_per_epoch = extra.get("steps_per_epoch")
    steps = extra.get("steps")
    epochs = math.ceil(steps / steps_per_epoch) if steps and steps_per_epoch else None
    batch = extra.get("batch_size")
    values: dict[str, Any] = {
        "ss_output_name": info.name,
        "ss_sd_model_name": info.base_model,
        "ss_network_module": "networks.lora",
        "ss_network_dim": info.rank,
        "ss_network_alpha": float(info.alpha),
        "ss_network_dropout": None,
        "ss_base_model_version": "sd_v1",
        "ss_v2": False,
        "ss_clip_skip": info.clip_skip,
        "ss_resolution": (info.resolution, info.resolution),
        "ss_learning_rate": extra.get("learning_rate"),
        "ss_unet_lr": extra.get("learning_rate"),
        "ss_text_encoder_lr": extra.get("text_encoder_lr") if info.text_encoder else None,
        "ss_num_train_images": images,
        "ss_num_reg_images": 0,
        "ss_num_batches_per_epoch": steps_per_epoch,
        "ss_num_epochs": epochs,
        "ss_epoch": epochs,
        "ss_steps": steps,
        "ss_max_train_steps": extra.get("max_steps", steps),
        "ss_batch_size_per_device": batch,
        "ss_total_batch_size": extra.get("global_batch_size", batch),
        "ss_gradient_checkpointing": False,
        "ss_gradient_accumulation_steps": 1,
        "ss_lr_warmup_steps": extra.get("lr_warmup_steps"),
        "ss_lr_scheduler": extra.get("lr_scheduler"),
        "ss_optimizer": _KOHYA_OPTIMIZERS.get(extra.get("optimizer"), extra.get("optimizer")),
        "ss_max_grad_norm": extra.get("max_grad_norm"),
        "ss_mixed_precision": extra.get("mixed_precision"),
        "ss_full_fp16": False,
        "ss_seed": extra.get("seed"),
        "ss_cache_latents": True,
        "ss_max_token_length": None,
        "ss_noise_offset": None,
        "ss_zero_terminal_snr": False,
        "ss_min_snr_gamma": None,
        "ss_prior_loss_weight": 1.0,
        "ss_caption_dropout_rate": 0.0,
        "ss_enable_bucket": True,
        "ss_bucket_no_upscale": bool(extra.get("bucket_no_upscale", True)),
        "ss_min_bucket_reso": 256,
        "ss_max_bucket_reso": 1024,
        "ss_bucket_info": json.dumps(bucket_info),
        "ss_color_aug": False,
        "ss_flip_aug": False,
        "ss_random_crop": False,
        "ss_shuffle_caption": False,
        "ss_keep_tokens": 0,
        "ss_dataset_dirs": json.dumps({info.dataset or "dataset": {"n_repeats": 1, "img_count": images}}),
        "ss_reg_dataset_dirs": json.dumps({}),
        "ss_training_comment": (
            f"fulora {info.fulora_version or 'unknown'}, dataset {info.dataset or 'unknown'}"
        ),
    }
    return {key: str(value) for key, value in values.items()}


def kohya_hashes(tensors: dict[str, Any], metadata: dict[str, str]) -> tuple[str, str]:
    """``sshs_model_hash`` and ``sshs_legacy_hash`` as kohya's ``precalculate_safetensors_hashes``.

    Both are taken over the file safetensors writes with the ``ss_*`` metadata only: the model hash is
    the sha256 of everything after the header (the tensor data), the legacy hash the first 8 hex digits of
    the sha256 of the 64 KiB at offset 1 MiB (of nothing, for a file shorter than 1 MiB).
    """
    import hashlib

    safetensors_torch = require("safetensors.torch", "train")
    data = safetensors_torch.save(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    (length,) = struct.unpack("<Q", data[:8])
    model_hash = hashlib.sha256(data[8 + length :]).hexdigest()
    legacy_hash = hashlib.sha256(data[0x100000 : 0x100000 + 0x10000]).hexdigest()[:8]
    return model_hash, legacy_hash


def save_kohya_file(
    folder: str | os.PathLike, diffusers_layout: dict[str, Any], info: AdapterInfo
) -> Path:
    """Write the adapter as kohya's ``networks.lora`` saves it: ``NAME.safetensors`` in ``folder``.

    Kohya/A1111 keys, every tensor (alphas too) in fp16 (the study's ``save_precision``), kohya's ``ss_*``
    metadata and ``sshs_*`` hashes, plus ``fulora_adapter`` (``info`` with ``format`` kohya).

    Args:
        folder: Where to write.
        diffusers_layout: The adapter's tensors in diffusers' layout (``unet.…``, ``text_encoder.…``).
        info: How the adapter was made; ``info.name`` names the file.

    Returns:
        The path written.
    """
    torch = require("torch", "train")
    kohya_info = dataclasses.replace(info, format="kohya")
    tensors = {
        key: value.detach().to("cpu", dtype=torch.float16).contiguous()
        for key, value in kohya_tensors(diffusers_layout, info.alpha).items()
    }
    metadata = kohya_metadata(kohya_info)
    model_hash, legacy_hash = kohya_hashes(tensors, metadata)
    metadata.update({"sshs_model_hash": model_hash, "sshs_legacy_hash": legacy_hash})
    return save_adapter_file(
        Path(folder) / kohya_file_name(info.name), tensors, kohya_info, extra_metadata=metadata
    )


def diffusers_metadata(info: AdapterInfo, tensors: dict[str, Any]) -> dict[str, str]:
    """The metadata a diffusers loader needs: diffusers' ``lora_adapter_metadata`` with each component's
    rank, alpha and target modules, and the empty rank and alpha patterns diffusers 0.35 requires; nothing
    else (peft 0.17's ``LoraConfig`` refuses fields newer peft writes, such as ``alora_invocation_tokens``).

    Text-encoder targets are named without CLIP's ``text_model.`` so that peft's suffix match finds them
    in transformers 4's CLIP (``text_model.encoder…``) and in transformers 5's (``encoder…``).
    """
    packed: dict[str, Any] = {}
    for component in ("unet", "text_encoder"):
        prefix = component + "."
        modules = sorted(
            {
                key[len(prefix) :].rsplit(".lora_", 1)[0].removeprefix("text_model.")
                for key in tensors
                if key.startswith(prefix) and ".lora_" in key
            }
        )
        if modules:
            packed[f"{prefix}r"] = info.rank
            packed[f"{prefix}lora_alpha"] = float(info.alpha)
            packed[f"{prefix}target_modules"] = modules
            # diffusers 0.35 reads these two and fails without them (KeyError); one rank and alpha for all
            packed[f"{prefix}rank_pattern"] = {}
            packed[f"{prefix}alpha_pattern"] = {}
    return {"lora_adapter_metadata": json.dumps(packed, sort_keys=True)}

def save_adapter_file(
    path: str | os.PathLike,
    tensors: dict[str, Any],
    info: AdapterInfo,
    *,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write LoRA tensors as a safetensors file with ``info`` in its metadata, atomically.

    Args:
        path: The file to write (``DIFFUSERS_FILE`` or ``KOHYA_FILE`` in an adapter folder).
        tensors: Tensor name -> tensor, already in the file's key layout (diffusers or kohya).
        info: How the adapter was made; its ``format`` must match the key layout.
        extra_metadata: More string metadata, e.g. diffusers' ``lora_adapter_metadata`` (rank and alpha per
            component, read by ``load_lora_weights``) or kohya's ``ss_network_dim``/``ss_network_alpha``.

    Returns:
        The path written.

    Raises:
        DataError: If the key layout is not ``info.format``.
    """
    safetensors_torch = require("safetensors.torch", "train")
    found = key_format(list(tensors))
    if found != info.format:
        raise DataError(f"adapter tensors are in {found} layout but the info says {info.format!r}")
    metadata = {
        "format": "pt",
        **(extra_metadata or {}),
        METADATA_KEY: json.dumps(info.to_dict(), sort_keys=True),
    }
    contiguous = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    data = _canonical_header(safetensors_torch.save(contiguous, metadata=metadata))
    return atomic_write_bytes(path, data)


def _canonical_header(data: bytes) -> bytes:
    """Rewrite a safetensors file's header in one fixed order, so the same adapter is the same bytes.

    safetensors writes its metadata in hash-map order, which changes from one process to the next; an
    adapter's sha256 (what a generated image records, and what a resumed generation compares) would then
    change every time the same weights are saved. Tensor offsets are relative to the data section, so
    reordering the header's keys leaves the data untouched.
    """
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    ordered.update(sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]))
    text = json.dumps(ordered, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(text)) + text + data[8 + length :]


def kohya_tensors(tensors: dict[str, Any], alpha: float) -> dict[str, Any]:
    """Convert diffusers-layout LoRA tensors (``unet.…lora_A.weight``) to the SD1.5 kohya/A1111 layout.

    The key mapping is diffusers' ``convert_state_dict_to_kohya``; two things are then set right for SD1.5:
    text-encoder keys take kohya's SD1.5 prefix ``lora_te_text_model_…`` (diffusers writes the SDXL
    ``lora_te1_`` and, with transformers 5's CLIP, drops ``text_model``), and each ``.alpha`` holds the
    adapter's alpha as a float (diffusers writes the rank).

    Args:
        tensors: The adapter in diffusers' layout (``unet.`` and ``text_encoder.`` keys).
        alpha: The LoRA alpha.

    Returns:
        Kohya key -> tensor (``lora_down``/``lora_up`` weights and one ``.alpha`` per module).
    """
    torch = require("torch", "train")
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    converted = convert_state_dict_to_kohya(dict(tensors))
    out: dict[str, Any] = {}
    for key, value in converted.items():
        if key.startswith("lora_te1_"):
            rest = key[len("lora_te1_") :]
            key = "lora_te_" + (rest if rest.startswith("text_model_") else f"text_model_{rest}")
        if key.endswith(".alpha"):
            value = torch.tensor(float(alpha), dtype=torch.float32)
        out[key] = value
    return out
