"""Tiny Hub-ready folders for the publishing and pulling tests: a dataset export and a LoRA adapter.

Not a pytest plugin (unlike hub_fixtures.py): it imports ``datasets``, which must not happen before
``hub_fixtures.pytest_configure`` has pointed HF_ENDPOINT at the stand-in Hub, so test modules import it.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from fulora_data.taxonomy import PLANES

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(PLANES)),
        "text": datasets.Value("string"),
    }
)


def _png(rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 16), dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def make_export(
    folder: Path,
    *,
    version: str = "1.0.0",
    configs: dict | None = None,
    seed: int = 0,
) -> dict[str, dict[str, list[dict]]]:
    """Write a tiny Hub-ready export (card with YAML configs, Parquet shards, manifest); return its rows.

    ``configs`` maps config -> split -> number of shards (two rows per shard).
    """
    configs = configs or {"full": {"train": 2, "test": 1}}
    rng = np.random.default_rng(seed)
    rows: dict[str, dict[str, list[dict]]] = {}
    yaml = ["---", "license: cc-by-4.0", "configs:"]
    for config, splits in configs.items():
        yaml.append(f"- config_name: {config}\n  data_files:")
        rows[config] = {}
        for split, shards in splits.items():
            yaml.append(f"  - split: {split}\n    path: data/{config}/{split}-*.parquet")
            rows[config][split] = []
            for shard in range(shards):
                part = [
                    {
                        "image": {"bytes": _png(rng), "path": None},
                        "label": int(rng.integers(0, 5)),
                        "text": f"{split} {i}",
                    }
                    for i in range(2)
                ]
                path = folder / "data" / config / f"{split}-{shard:05d}-of-{shards:05d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                datasets.Dataset.from_list(part, features=FEATURES).to_parquet(path)
                rows[config][split].extend(part)
    yaml.append("---")
    (folder / "README.md").write_text(
        "\n".join(yaml) + "\n\n# Demo\n\nTiny seeded images.\n", encoding="utf-8"
    )
    manifest = {"name": "demo", "version": version, "configs": list(configs)}
    manifest["files"] = {  # the shard list `fulora data export` writes and push checks
        p.relative_to(folder).as_posix(): {"num_bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*.parquet"))
    }
    (folder / "fulora_export.json").write_text(json.dumps(manifest), encoding="utf-8")
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def make_model(folder: Path, seed: int = 0) -> Path:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    weights = {
        "lora_A.weight": rng.standard_normal((4, 32)).astype(np.float32),
        "lora_B.weight": np.zeros((32, 4), np.float32),
    }
    safetensors_numpy.save_file(
        weights, folder / "adapter_model.safetensors", metadata={"rank": "4", "alpha": "4"}
    )
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 4}), encoding="utf-8")
    (folder / "README.md").write_text(
        "---\nbase_model: stable-diffusion-v1-5\ntags: [lora]\n---\n# Adapter\n"
    )
    return folder / "adapter_model.safetensors"
