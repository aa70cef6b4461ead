"""`fulora train lora --data ORG/NAME[@REV]`: an adapter trained on a published fulora dataset."""

from __future__ import annotations

import uuid
import warnings

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from fulora_data import samples  # noqa: E402
from fulora_data.adapter import read_adapter  # noqa: E402
from fulora_data.errors import ConfigError  # noqa: E402
from fulora_data.export import export  # noqa: E402
from fulora_data.hub import push_dataset  # noqa: E402
from fulora_data.lora.config import LoraConfig  # noqa: E402
from fulora_data.lora.train import train_lora  # noqa: E402
from fulora_data.tiny_sd import save_tiny_pipeline  # noqa: E402


def _config(base, **values) -> LoraConfig:
    settings = {
        "base": str(base),
        "resolution": 32,
        "bucket_step": 8,
        "batch_size": 2,
        "max_steps": 2,
        "checkpoint_every": 2,
        "text_encoder_lr": 0.0,
        "seed": 3,
    }
    settings.update(values)
    return LoraConfig.preset("smoke", **settings)


def test_train_lora_on_a_published_dataset_records_the_repo_and_commit(hub_server, tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=1, seed=0)
    export("spanish", ["es"], tmp_path / "export", source=source, cache_dir=tmp_path / "cache")
    repo = f"fulora/spanish-{uuid.uuid4().hex[:8]}"
    push_dataset(tmp_path / "export", repo, token=hub_server.token)
    base = save_tiny_pipeline(tmp_path / "base")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train_lora(
            _config(base, data=f"{repo}@v1.0.0", data_config="es"),
            tmp_path / "run",
            progress=False,
            log=lambda m: None,
        )
    assert summary["steps"] == 2
    info = read_adapter(tmp_path / "run" / "adapter")
    assert info.dataset == f"{repo}@v1.0.0/es" and info.extra["num_images"] == 10
    assert info.extra["dataset_repo"] == repo
    assert info.extra["dataset_version"] == hub_server.tags(repo)["v1.0.0"]
    card = (tmp_path / "run" / "adapter" / "README.md").read_text()
    assert f"- {repo}\n" in card.split("---")[1]

    with pytest.raises(ConfigError, match="published dataset, already built"):
        train_lora(
            _config(base, data=f"{repo}@v1.0.0", source=str(source)), tmp_path / "other", progress=False
        )
