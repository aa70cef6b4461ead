"""Training checkpoints shared by every fulora trainer (classifier, LoRA).

A checkpoint is a folder written whole (``fulora_data.io.atomic_folder``) holding whatever the trainer
needs to resume exactly: weights, optimizer, scheduler and gradient-scaler states, the RNG states of
Python, NumPy and torch (CPU and CUDA), the data order and the step, plus ``state.json`` with the run's
config. This module owns the parts every trainer shares: writing and finding the folder, capturing and
restoring RNG states, and checking that a resumed run is the same run.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fulora_data.errors import ConfigError, DataError, require
from fulora_data.io import atomic_folder, atomic_write_json, file_sha256, find_folder

STATE_FILE = "state.json"
RNG_FILE = "rng.pt"
REPORT_TO = ("tensorboard", "wandb", "none")
"""Where a trainer's ``--report-to`` may log (accelerate's trackers), or nowhere."""

__all__ = [
    "RNG_FILE",
    "STATE_FILE",
    "atomic_folder",
    "check_same_run",
    "find_checkpoint",
    "load_rng_state",
    "read_state",
    "rng_state",
    "save_rng_state",
    "set_rng_state",
    "tracker_name",
    "weights_digest",
]


def rng_state() -> dict[str, Any]:
    """Capture the RNG states of Python, NumPy and torch (and every CUDA device, when present)."""
    torch = require("torch", "train")
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore RNG states captured by ``rng_state``."""
    torch = require("torch", "train")
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_rng_state(folder: str | os.PathLike, name: str = RNG_FILE) -> Path:
    """Write ``rng_state()`` into a checkpoint folder (``torch.save``). Returns the file."""
    torch = require("torch", "train")
    path = Path(folder) / name
    torch.save(rng_state(), path)
    return path


def load_rng_state(folder: str | os.PathLike, name: str = RNG_FILE) -> None:
    """Restore the RNG states saved by ``save_rng_state``."""
    torch = require("torch", "train")
    set_rng_state(torch.load(Path(folder) / name, weights_only=False))


def find_checkpoint(folder: str | os.PathLike) -> Path | None:
    """Return a whole checkpoint folder (or its previous version after a crash mid-swap), or ``None``."""
    return find_folder(folder)


def read_state(folder: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint's ``state.json``.

    Raises:
        DataError: If it is missing or not valid JSON, naming the file.
    """
    path = Path(folder) / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing: {Path(folder)} is not a fulora checkpoint") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path} is not valid JSON ({err})") from err


def check_same_run(
    saved: Mapping[str, Any], current: Mapping[str, Any], fields: Iterable[str], *, where: str
) -> None:
    """Refuse to resume a run whose defining settings differ from the checkpoint's.

    Args:
        saved: The config stored in the checkpoint.
        current: The config of the run being started.
        fields: The settings that must agree (e.g. rank, base model, dataset).
        where: The run folder, for the message.

    Raises:
        ConfigError: Naming the first setting that differs, with both values.
    """
    for name in fields:
        if saved.get(name) != current.get(name):
            raise ConfigError(
                f"--resume: {where} was trained with {name}={saved.get(name)!r}, not {current.get(name)!r}"
            )


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx")
_FILE_DIGESTS: dict[str, str] = {}
"""Per-file sha256 by ``"<resolved path>|<size>|<mtime ns>"``, loaded from and saved to ``digest_cache()``."""


def digest_cache() -> Path:
    """The file that keeps per-file digests across runs: ``<HF home>/fulora/file-digests.json``.

    The HF home as the Hub libraries find it (the rule of ``fulora_data.doctor.hf_home``, a higher layer).
    """
    if os.environ.get("HF_HOME"):
        home = Path(os.environ["HF_HOME"]).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME")
        home = (Path(cache).expanduser() if cache else Path.home() / ".cache") / "huggingface"
    return home / "fulora" / "file-digests.json"


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in _FILE_DIGESTS:
        _FILE_DIGESTS[key] = file_sha256(path)
    return _FILE_DIGESTS[key]


def _cached_weights_digest(path: Path) -> str:
    """:func:`weights_digest` with each file's digest kept in ``digest_cache()`` across runs."""
    cache = digest_cache()
    try:
        stored = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
    except (OSError, ValueError):  # a damaged cache costs a rehash, nothing else
        stored = {}
    if isinstance(stored, dict):
        _FILE_DIGESTS.update(
            {k: v for k, v in stored.items() if isinstance(v, str) and k not in _FILE_DIGESTS}
        )
    known = len(_FILE_DIGESTS)
    digest = weights_digest(path, file_digest=_file_digest)
    if len(_FILE_DIGESTS) > known:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cache, dict(_FILE_DIGESTS), indent=None)
        except OSError:  # a read-only home: the digests are recomputed next time
            pass
    return digest


def weights_digest(path: str | os.PathLike, *, file_digest: Callable[[Path], str] | None = None) -> str:
    """The content identity of a local model: ``sha256:<hex>``.

    A single checkpoint file is its own sha256; a diffusers folder is the sha256 of the sorted lines
    ``<relative path> <sha256>`` of its ``model_index.json`` and weight files. This is the one rule: the
    LoRA trainer's resume check and generation's local-base identity (``generation.pipeline.folder_digest``)
    record the same digest. By default each file's digest is kept by (path, size, mtime) in
    ``digest_cache()``, so no run reads an unchanged weight twice (an SD 1.5 base is 4 GB, and the trainer
    checks it at every start and resume).

    Args:
        path: A weights file or a diffusers folder.
        file_digest: How one file's sha256 (hex) is had; default: the cache kept in ``digest_cache()``.
    """
    import hashlib

    path = Path(path)
    if file_digest is None:
        return _cached_weights_digest(path)
    digest = file_digest
    if path.is_file():
        return "sha256:" + digest(path)
    lines = []
    for child in sorted(path.rglob("*")):
        relative = child.relative_to(path).as_posix()
        if child.is_file() and (relative == "model_index.json" or child.name.endswith(_WEIGHT_SUFFIXES)):
            lines.append(f"{relative} {digest(child)}")
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def tracker_name(report_to: str | None) -> str | None:
    """The accelerate tracker for ``report_to`` (None: TensorBoard when installed, else none).

    Raises:
        ConfigError: For an unknown value, or a tracker whose package is not installed.
    """
    import importlib.util

    if report_to is None:
        return "tensorboard" if importlib.util.find_spec("tensorboard") is not None else None
    if report_to not in REPORT_TO:
        raise ConfigError(f"--report-to must be one of {', '.join(REPORT_TO)}; got {report_to!r}")
    if report_to == "none":
        return None
    if importlib.util.find_spec(report_to) is None:
        raise ConfigError(f"--report-to {report_to} needs the {report_to} package: pip install {report_to}")
    return report_to
