"""The one on-disk format of fulora's LoRA adapters, with its writer and a reader that needs no diffusers.

An adapter folder holds::

    pytorch_lora_weights.safetensors   the adapter alone, diffusers format (``unet.…lora_A.weight`` /
                                       ``text_encoder.…``): ``pipe.load_lora_weights(folder)`` loads it
    fulora_lora_kohya.safetensors      the same weights in kohya/A1111 format (``lora_unet_…``, ``lora_te_…``)
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
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fulora_data.errors import DataError, SourceNotFoundError, require
from fulora_data.io import atomic_write_bytes, file_sha256  # noqa: F401  (an adapter file's identity, kept importable here)

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
KOHYA_FILE = "fulora_lora_kohya.safetensors"
METADATA_KEY = "fulora_adapter"
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
        DataError: If the file is not a LoRA safetensors file, naming it.
    """
    file = adapter_file(path, weight_name)
    tensors, metadata, data_start = read_safetensors_header(file)
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
            if name.endswith(("lora_down.weight", "lora_A.weight")) and entry.get("shape")
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
    return AdapterInfo(
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
