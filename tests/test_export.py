"""Export: Hub-ready folders that load_dataset reads back row for row, several configs side by side."""

from __future__ import annotations

import json

import datasets
import pytest
from click.testing import CliRunner
from huggingface_hub import DatasetCard

from fulora_data import samples
from fulora_data.cli import main
from fulora_data.errors import ConfigError
from fulora_data.export import MANIFEST, export
from fulora_data.prepare import prepare


def _plain(dataset):
    return dataset.cast_column("image", datasets.Image(decode=False)).to_list()


def _same(built: datasets.DatasetDict, folder, config):
    loaded = datasets.load_dataset(str(folder), config)
    assert set(loaded) == set(built)
    for split in built:
        assert loaded[split].features == built[split].features
        assert loaded[split].column_names == built[split].column_names  # Features == ignores the order
        assert _plain(loaded[split]) == _plain(built[split])  # image bytes, labels, provenance, row order


def test_spanish_configs_share_one_folder(tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=4, test_per_plane=1)
    out = tmp_path / "out"
    export("spanish", ["full"], out, source=source, cache_dir=tmp_path / "cache")
    export("spanish", ["es"], out, source=source, cache_dir=tmp_path / "cache", max_shard_size=2000)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["name"] == "spanish" and manifest["version"] == "1.0.0"
    assert manifest["configs"] == ["full", "es"]
    shards = sorted(p.name for p in (out / "data" / "es").iterdir())
    assert len(shards) > 1 and shards[0] == f"train-00000-of-{len(shards):05d}.parquet"
    assert sorted(p.name for p in (out / "data" / "full").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
    ]
    card = DatasetCard.load(out / "README.md")
    assert sorted(c["config_name"] for c in card.data.configs) == ["es", "full"]
    for config in ("full", "es"):
        _same(prepare("spanish", config, source=source, cache_dir=tmp_path / "cache"), out, config)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary leftovers


def test_reexport_replaces_only_its_config(tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=3, test_per_plane=1)
    out = tmp_path / "out"
    export("spanish", ["full", "es"], out, source=source, cache_dir=tmp_path / "cache")
    full_before = {p.name: p.read_bytes() for p in (out / "data" / "full").iterdir()}
    export("spanish", ["es"], out, source=source, cache_dir=tmp_path / "cache", max_shard_size=1500)
    assert {p.name: p.read_bytes() for p in (out / "data" / "full").iterdir()} == full_before
    assert json.loads((out / MANIFEST).read_text())["configs"] == ["full", "es"]
    _same(prepare("spanish", "es", source=source, cache_dir=tmp_path / "cache"), out, "es")
    # "full" was rendered into the card again, from the manifest: same columns, same split order.
    _same(prepare("spanish", "full", source=source, cache_dir=tmp_path / "cache"), out, "full")
    full = next(c for c in DatasetCard.load(out / "README.md").data.configs if c["config_name"] == "full")
    assert [f["split"] for f in full["data_files"]] == ["train", "test"]


def test_synthetic_and_hybrid_round_trip(tmp_path):
    zip_path, _ = samples.write_synthetic_release(tmp_path / "syn", per_plane=3)
    generated = samples.write_generated_folder(tmp_path / "gen", per_plane=2)
    real = samples.write_spanish_source(tmp_path / "es", per_plane=5, test_per_plane=1)
    cache = tmp_path / "cache"
    export(
        "synthetic", ["release"], tmp_path / "out", source=zip_path, cache_dir=cache, verify_checksum=False
    )
    _same(
        prepare("synthetic", source=zip_path, cache_dir=cache, verify_checksum=False),
        tmp_path / "out",
        "release",
    )
    export("synthetic", ["generated"], tmp_path / "out", source=generated, cache_dir=cache)
    _same(prepare("synthetic", "generated", source=generated, cache_dir=cache), tmp_path / "out", "generated")
    options = dict(
        real_config="es",
        real_source=real,
        synthetic_source=zip_path,
        verify_checksum=False,
        synthetic_per_plane=2,
    )
    export("hybrid", None, tmp_path / "hb", cache_dir=cache, **options)
    _same(prepare("hybrid", cache_dir=cache, **options), tmp_path / "hb", "es1150-syn5000")


def test_cli_export_and_refusals(tmp_path):
    source = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=1)
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["--source", str(source), "--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(main, ["data", "export", "spanish", "-c", "lora-100", "--out", str(out), *args])
    assert result.exit_code == 1 and "Error: " in result.output  # 20 per plane needed, 2 available
    assert not (out / MANIFEST).exists()
    result = runner.invoke(main, ["data", "export", "spanish", "-c", "full", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    assert "spanish/full 1.0.0: train" in result.output
    # Without --config the default ("es") is exported and reported, not the manifest's last config.
    for extra in (["-c", "es"], ["-c", "full"], []):
        result = runner.invoke(
            main, ["data", "export", "spanish", *extra, "--out", str(tmp_path / "o2"), *args]
        )
    assert result.exit_code == 0, result.output
    assert "spanish/es 1.0.0: train 10\n" in result.output and "spanish/full" not in result.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = runner.invoke(main, ["data", "export", "spanish", "--out", str(foreign), *args])
    assert result.exit_code == 1
    assert "is not empty and is not a fulora export" in result.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(ConfigError, match="holds an export of 'spanish'"):
        export("synthetic", None, out, source=tmp_path, cache_dir=tmp_path / "cache")


def test_shards_written_by_the_fast_arrow_path_are_the_bytes_dataset_to_parquet_writes(tmp_path):
    """The export writes Parquet itself (faster), but the very bytes ``Dataset.to_parquet`` would write.

    Each shard says which path wrote it: the test fails if the export fell back to ``to_parquet`` (then the
    bytes would match trivially).
    """
    from fulora_data.export import write_parquet_shards

    spanish = samples.write_spanish_source(tmp_path / "es", per_plane=6, test_per_plane=0, seed=2)
    generated = samples.write_generated_folder(tmp_path / "gen", per_plane=4, seed=3)
    hybrid = prepare(
        "hybrid",
        "es1150-generated",
        cache_dir=tmp_path / "cache",
        real_source=spanish,
        real_config="es",
        synthetic_source=generated,
    )
    for split, dataset in hybrid.items():  # an indices mapping over two concatenated parts
        (tmp_path / split).mkdir()
        files = write_parquet_shards(dataset, tmp_path / split, split)
        dataset.to_parquet(str(tmp_path / f"{split}.parquet"))
        assert len(files) == 1 and files[0]["writer"] == "arrow"
        assert (tmp_path / split / files[0]["file"]).read_bytes() == (
            tmp_path / f"{split}.parquet"
        ).read_bytes()
    shards = write_parquet_shards(hybrid["train"], tmp_path / "train", "sharded", max_shard_size=1000)
    assert len(shards) > 1 and sum(f["num_rows"] for f in shards) == len(hybrid["train"])
    assert {shard["writer"] for shard in shards} == {"arrow"}
    for index, shard in enumerate(shards):
        part = hybrid["train"].shard(num_shards=len(shards), index=index, contiguous=True)
        part.to_parquet(str(tmp_path / "part.parquet"))
        assert (tmp_path / "train" / shard["file"]).read_bytes() == (tmp_path / "part.parquet").read_bytes()
