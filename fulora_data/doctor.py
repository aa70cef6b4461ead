"""``fulora doctor``: what is installed and usable, and what each missing piece disables.

Checks the optional dependencies (by their installed metadata; torch is imported to ask for CUDA), the GPU,
accelerate's config, whether a Hugging Face token is present (never its value), offline switches, and the
cache folders with their free disk space.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from fulora_data import __version__
from fulora_data.errors import install_hint, redact

# distribution -> (extra, what fulora cannot do without it)
PACKAGES: dict[str, tuple[str, str]] = {
    "torch": ("train", "training, generation and evaluation of any model"),
    "torchvision": ("train", "the classifiers (ResNet18 and friends) and their image transforms"),
    "diffusers": ("train", "`fulora generate` and LoRA training (Stable Diffusion pipelines)"),
    "transformers": ("train", "the CLIP text encoder of generation and LoRA training"),
    "peft": ("train", "loading and training LoRA adapters"),
    "accelerate": ("train", "multi-GPU and multi-process training and generation"),
    "safetensors": ("train", "reading and writing adapters and checkpoints"),
    "bitsandbytes": (
        "train",
        "8-bit AdamW in LoRA training (the study's optimizer); plain AdamW is used instead",
    ),
    "scikit-learn": ("eval", "zero-shot evaluation metrics"),
    "evaluate": ("eval", "zero-shot evaluation metrics"),
    "matplotlib": ("eval", "figures in evaluation and audit reports"),
    "ImageHash": ("audit", "`fulora data audit` (duplicates, leakage and memorisation checks)"),
}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _gpu() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"ok": False, "detail": "torch is not installed", "devices": []}
    if not torch.cuda.is_available():
        return {
            "ok": False,
            "detail": f"no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda})",
            "devices": [],
        }
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "index": index,
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "bf16": bool(torch.cuda.is_bf16_supported()),
            }
        )
    return {"ok": True, "detail": f"CUDA {torch.version.cuda}, {len(devices)} device(s)", "devices": devices}


def _accelerate_config() -> dict[str, Any]:
    home = hf_home()
    path = Path(os.environ.get("ACCELERATE_CONFIG_FILE", home / "accelerate" / "default_config.yaml"))
    if not path.is_file():
        return {
            "ok": False,
            "detail": f"no accelerate config at {path}; `accelerate launch` uses its defaults (run `accelerate config`)",
        }
    try:
        import yaml

        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except Exception as err:  # a broken config is a finding, not a crash
        return {"ok": False, "detail": f"{path} is unreadable ({type(err).__name__})"}
    keys = ("distributed_type", "num_processes", "mixed_precision", "use_cpu")
    return {"ok": True, "detail": str(path), **{k: values.get(k) for k in keys if k in values}}


def hf_home() -> Path:
    """Hugging Face's home folder as its libraries find it: ``HF_HOME`` (``~`` expanded), else
    ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    cache = Path(os.environ["XDG_CACHE_HOME"]).expanduser() if os.environ.get("XDG_CACHE_HOME") else None
    return (cache or Path.home() / ".cache") / "huggingface"


def _token_present() -> bool:
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    try:
        import huggingface_hub

        return huggingface_hub.get_token() is not None
    except Exception:
        return False


def _free(path: Path) -> float | None:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return round(shutil.disk_usage(probe).free / 2**30, 1)
    except OSError:
        return None


def diagnose() -> dict[str, Any]:
    """Return what is installed and usable, as a JSON-ready dict (no secret in it).

    Returns:
        ``fulora``, ``python``, ``packages`` (name -> version, extra and what its absence disables),
        ``gpu``, ``accelerate_config``, ``hub`` (``token_present``, ``endpoint``, offline switches),
        ``caches`` (folder, exists, free GiB) and ``disabled`` (one line per missing piece).
    """
    packages = {}
    disabled = []
    for name, (extra, what) in PACKAGES.items():
        version = _version(name)
        packages[name] = {"version": version, "extra": extra, "disables": None if version else what}
        if version is None:
            disabled.append(f"{name} missing ({install_hint(extra)}): no {what}")
    gpu = _gpu()
    if not gpu["ok"]:
        disabled.append(f"no GPU ({gpu['detail']}): generation and training run on the CPU, slowly; no fp16")
        if packages["bitsandbytes"]["version"]:
            # Installed is not usable: its 8-bit optimizers run on CUDA only.
            disabled.append(
                "bitsandbytes is installed but its 8-bit optimizers (the study's AdamW8bit) need CUDA: "
                "LoRA training on this machine uses plain AdamW"
            )
    home = hf_home()
    caches = {
        "HF_HOME": home,
        "HF_HUB_CACHE": Path(os.environ.get("HF_HUB_CACHE", home / "hub")).expanduser(),
        "HF_DATASETS_CACHE": Path(os.environ.get("HF_DATASETS_CACHE", home / "datasets")).expanduser(),
    }
    offline = {name: os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    token = _token_present()
    if not token:
        disabled.append(
            "no Hugging Face token: pushing datasets and models (`fulora data push`) and gated repos"
        )
    if any(value.strip().lower() in ("1", "true", "yes", "on") for value in offline.values()):
        disabled.append("offline mode is on: nothing is downloaded from the Hub; only cached models and data")
    return {
        "fulora": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "packages": packages,
        "gpu": gpu,
        "accelerate_config": _accelerate_config(),
        "hub": {
            "token_present": token,
            "endpoint": redact(os.environ.get("HF_ENDPOINT", "https://huggingface.co")),
            "offline": offline,
        },
        "caches": {
            name: {"path": str(path), "exists": path.is_dir(), "free_gib": _free(path)}
            for name, path in caches.items()
        },
        "disabled": disabled,
    }


def format_report(report: dict[str, Any]) -> str:
    """Render ``diagnose()``'s result as lines for a terminal."""
    lines = [f"fulora {report['fulora']}, Python {report['python']}", f"platform: {report['platform']}", ""]
    lines.append("packages:")
    for name, info in report["packages"].items():
        state = info["version"] or f"MISSING (the [{info['extra']}] extra)"
        lines.append(f"  {name:<13} {state}")
    gpu = report["gpu"]
    lines += ["", f"GPU: {gpu['detail']}"]
    lines += [
        f"  cuda:{d['index']} {d['name']}, {d['memory_gib']} GiB, bf16 {d['bf16']}" for d in gpu["devices"]
    ]
    acc = report["accelerate_config"]
    lines.append(f"accelerate config: {acc['detail']}")
    hub = report["hub"]
    offline = ", ".join(f"{k}={v}" for k, v in hub["offline"].items() if v) or "off"
    lines.append(
        f"Hub: token {'present' if hub['token_present'] else 'absent'}, endpoint {hub['endpoint']}, offline {offline}"
    )
    lines.append("caches:")
    for name, info in report["caches"].items():
        free = "n/a" if info["free_gib"] is None else f"{info['free_gib']} GiB free"
        lines.append(
            f"  {name:<17} {info['path']} ({'exists' if info['exists'] else 'not created yet'}, {free})"
        )
    lines += ["", "disabled:" if report["disabled"] else "everything fulora uses is installed and usable"]
    lines += [f"  - {line}" for line in report["disabled"]]
    return "\n".join(lines)
