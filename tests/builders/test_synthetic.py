"""The synthetic builder: the study's release (zip or folder, with or without plane folders) and fulora's
generated folders, with every bad input the issue names."""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA, needs_shared

from fulora_data import generated, samples
from fulora_data.builders.spanish import read_table
from fulora_data.builders.synthetic import NAME_RE
from fulora_data.cli import main
from fulora_data.errors import ArchiveError, ChecksumError, ConfigError, DataError, SourceNotFoundError
from fulora_data.prepare import column, load_provenance, make_builder, prepare
from fulora_data.taxonomy import PLANES


def _built_dirs(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("dataset_info.json")] if cache.exists() else []


def test_release_zip_with_plane_folders(tmp_path):
    zip_path, labels = samples.write_synthetic_release(tmp_path / "src", per_plane=3, seed=1)
    ds = prepare("synthetic", source=zip_path, cache_dir=tmp_path / "cache", verify_checksum=False)["train"]
    assert len(ds) == 15
    _, rows = read_table(labels)
    expected = {r["Image_name"]: PLANES.index(r["Plane"]) for r in rows}
    assert dict(zip(column(ds, "image_id"), column(ds, "label"), strict=True)) == expected
    assert set(column(ds, "source")) == {"synthetic"} and set(column(ds, "patient_id")) == {""}
    for name, seed, index in zip(
        column(ds, "image_id"), column(ds, "seed"), column(ds, "generation_index"), strict=True
    ):
        match = re.fullmatch(r"(\d+)-(\d+)", name)
        assert (index, seed) == (int(match.group(1)), int(match.group(2)))
    assert set(column(ds, "sampler")) == {""}  # the release does not record it
    assert set(column(ds, "lora_rank")) == {None}
    with zipfile.ZipFile(zip_path) as zf:
        member = next(n for n in zf.namelist() if n.endswith(f"/{ds[0]['image_id']}.png"))
        assert ds.cast_column("image", __import__("datasets").Image(decode=False))[0]["image"][
            "bytes"
        ] == zf.read(member)
    builder = make_builder("synthetic", source=zip_path, cache_dir=tmp_path / "cache", verify_checksum=False)
    provenance = load_provenance(builder)
    assert provenance["source"]["checksum_verified"] is False
    assert provenance["labels_from"] == "per-plane folders"


def test_wrong_checksum_is_refused_and_nothing_is_cached(tmp_path):
    zip_path, _ = samples.write_synthetic_release(tmp_path / "src", per_plane=1)
    with pytest.raises(ChecksumError, match="--no-verify"):
        prepare("synthetic", source=zip_path, cache_dir=tmp_path / "cache")
    result = CliRunner().invoke(
        main,
        ["data", "prepare", "synthetic", "--source", str(zip_path), "--cache-dir", str(tmp_path / "cache")],
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "af2aa250402ed01a09f3219ce050b9a1" in result.output
    assert "Traceback" not in result.output
    assert _built_dirs(tmp_path / "cache") == []
    result = CliRunner().invoke(
        main,
        [
            "data",
            "prepare",
            "synthetic",
            "--source",
            str(zip_path),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-verify",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "train 5" in result.output


def test_corrupt_zip(tmp_path):
    zip_path, _ = samples.write_synthetic_release(tmp_path / "src", per_plane=2)
    data = zip_path.read_bytes()
    zip_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="synthetic_train_5000.zip"):
        prepare("synthetic", source=zip_path, cache_dir=tmp_path / "cache", verify_checksum=False)
    assert _built_dirs(tmp_path / "cache") == []
    assert not list((tmp_path / "cache").rglob("*.partial*"))


def test_flat_release_needs_labels_csv(tmp_path):
    zip_path, labels = samples.write_synthetic_release(tmp_path / "src", per_plane=2, layout="flat")
    with pytest.raises(DataError, match="--labels"):
        prepare("synthetic", source=zip_path, cache_dir=tmp_path / "cache", verify_checksum=False)
    assert labels.read_bytes().startswith(b"\xef\xbb\xbf")  # a BOM, like the study's CSV
    ds = prepare(
        "synthetic", source=zip_path, cache_dir=tmp_path / "cache", verify_checksum=False, labels=labels
    )
    _, rows = read_table(labels)
    assert Counter(ds["train"]["label"]) == Counter(PLANES.index(r["Plane"]) for r in rows)


def test_labels_csv_and_archive_must_match(tmp_path):
    folder, labels = samples.write_synthetic_release(
        tmp_path / "src", per_plane=2, layout="flat", archive=False
    )
    text = labels.read_text(encoding="utf-8-sig")
    extra = tmp_path / "extra.csv"
    extra.write_text(text + "99999-1,Fetal brain,1\r\n", encoding="utf-8-sig")
    with pytest.raises(DataError, match=r"lists 1 images that are not in .*'99999-1'"):
        prepare("synthetic", source=folder, cache_dir=tmp_path / "c1", labels=extra)
    short = tmp_path / "short.csv"
    short.write_text("\r\n".join(text.splitlines()[:-1]) + "\r\n", encoding="utf-8-sig")
    with pytest.raises(DataError, match="holds 1 images that .* does not label"):
        prepare("synthetic", source=folder, cache_dir=tmp_path / "c2", labels=short)
    twice = tmp_path / "twice.csv"
    twice.write_text(text + text.splitlines()[1] + "\r\n", encoding="utf-8-sig")
    with pytest.raises(DataError, match="listed twice"):
        prepare("synthetic", source=folder, cache_dir=tmp_path / "c3", labels=twice)


def test_labels_csv_must_agree_with_plane_folders(tmp_path):
    folder, labels = samples.write_synthetic_release(tmp_path / "src", per_plane=2, archive=False)
    _, rows = read_table(labels)
    rows[0]["Plane"] = "Fetal femur" if rows[0]["Plane"] != "Fetal femur" else "Other"
    wrong = samples.write_synthetic_labels_csv(
        tmp_path / "wrong.csv", [(r["Image_name"], r["Plane"]) for r in rows]
    )
    with pytest.raises(DataError, match="sits in a"):
        prepare("synthetic", source=folder, cache_dir=tmp_path / "cache", labels=wrong)


def test_duplicate_image_names(tmp_path):
    folder, _ = samples.write_synthetic_release(tmp_path / "src", per_plane=2, archive=False)
    first = next((folder / "Fetal brain").glob("*.png"))
    (folder / "Other" / first.name).write_bytes(first.read_bytes())
    result = CliRunner().invoke(
        main,
        ["data", "prepare", "synthetic", "--source", str(folder), "--cache-dir", str(tmp_path / "cache")],
    )
    assert result.exit_code == 1
    assert f"image name {first.stem!r} appears twice" in result.output


def test_generated_folder(tmp_path):
    folder = samples.write_generated_folder(tmp_path / "gen", per_plane=3, shard_size=4)
    assert len(list(folder.glob("images-*.tar"))) == 4  # 15 images, 4 per shard
    ds = prepare("synthetic", "generated", source=folder, cache_dir=tmp_path / "cache")["train"]
    rows = [json.loads(line) for line in (folder / generated.METADATA).read_text().splitlines()]
    assert column(ds, "image_id") == [r["image_id"] for r in rows]
    for field in generated.PROVENANCE_FIELDS:
        assert column(ds, field) == [r[field] for r in rows], field
    assert column(ds, "label") == [PLANES.index(r["plane"]) for r in rows]


def test_generated_folder_refuses_a_labels_csv(tmp_path):
    folder = samples.write_generated_folder(tmp_path / "gen", per_plane=1)
    labels = tmp_path / "labels.csv"
    labels.write_text("Image_name,Plane\n")
    with pytest.raises(ConfigError, match="a generated folder labels its own images"):
        prepare("synthetic", "generated", source=folder, cache_dir=tmp_path / "cache", labels=labels)


def test_generated_folder_refused_by_release_config(tmp_path):
    folder = samples.write_generated_folder(tmp_path / "gen", per_plane=1)
    with pytest.raises(DataError, match="--config generated"):
        prepare("synthetic", source=folder, cache_dir=tmp_path / "cache")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(SourceNotFoundError, match="fulora_generated.json"):
        prepare("synthetic", "generated", source=plain, cache_dir=tmp_path / "cache")


def test_generated_metadata_must_match_shards(tmp_path):
    folder = samples.write_generated_folder(tmp_path / "gen", per_plane=2, shard_size=4)
    metadata = folder / generated.METADATA
    lines = metadata.read_text().splitlines()
    row = json.loads(lines[0])
    row["image_id"] = "00000-1"
    metadata.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    result = CliRunner().invoke(
        main,
        [
            "data",
            "prepare",
            "synthetic",
            "-c",
            "generated",
            "--source",
            str(folder),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 1
    assert "images-00000.tar does not match metadata.jsonl" in result.output
    assert _built_dirs(tmp_path / "c") == []


def test_generated_png_digest_is_checked(tmp_path):
    folder = samples.write_generated_folder(tmp_path / "gen", per_plane=1, shard_size=10)
    metadata = folder / generated.METADATA
    rows = [json.loads(line) for line in metadata.read_text().splitlines()]
    rows[2]["sha256"] = "0" * 64
    metadata.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="does not match its sha256"):
        prepare("synthetic", "generated", source=folder, cache_dir=tmp_path / "cache")
    assert _built_dirs(tmp_path / "cache") == []


def _record(i: int) -> generated.GenerationRecord:
    return generated.GenerationRecord(
        image_id=f"{i:05d}-{1000 + i}", plane=PLANES[i % 5], prompt="p", negative_prompt="", sampler="Euler",
        steps=2, guidance_scale=7.5, seed=1000 + i, width=16, height=16, base_model="b", base_model_revision="r",
        adapter="a", adapter_revision="", lora_rank=4, generation_index=i,
    )  # fmt: skip


def test_writer_resumes_after_a_crash(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    image = samples.png_bytes(samples.render_plane_image("Other", (16, 16), rng))
    folder = tmp_path / "gen"
    with pytest.raises(RuntimeError), generated.GeneratedWriter(folder, shard_size=3) as writer:
        for i in range(8):
            writer.add(image, _record(i))
        raise RuntimeError("the GPU went away")
    with pytest.raises(DataError, match="unfinished generation"):
        generated.read_generated(folder)
    (folder / "images-00002.tar.partial").write_bytes(b"half")  # a crash mid-shard
    writer = generated.GeneratedWriter(folder, shard_size=3)
    assert writer.done == {_record(i).image_id for i in range(6)}  # two committed shards
    assert not list(folder.glob("*.partial"))
    with pytest.raises(DataError, match="already written"):
        writer.add(image, _record(0))
    for i in range(10):
        if _record(i).image_id not in writer.done:
            writer.add(image, _record(i))
    writer.close()
    manifest, images = generated.read_generated(folder)
    assert manifest["complete"] and [im.record for im in images] == [_record(i) for i in range(10)]
    import webdataset

    keys = [s["__key__"] for s in webdataset.WebDataset(str(folder / "images-00000.tar"), shardshuffle=False)]
    assert keys == [_record(i).image_id for i in range(3)]


def test_writer_leaves_files_it_did_not_write(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "notes.tmp").write_text("mine")
    (folder / "download.partial").write_text("mine")
    generated.GeneratedWriter(folder).close(complete=False)
    assert (folder / "notes.tmp").read_text() == "mine"
    assert (folder / "download.partial").read_text() == "mine"
    for name in (generated.METADATA, "images-00000.tar"):
        foreign = tmp_path / name.replace(".", "_")
        foreign.mkdir()
        (foreign / name).write_text("someone else's\n")
        with pytest.raises(DataError, match=f"holds {name} but no fulora_generated.json"):
            generated.GeneratedWriter(foreign)
        assert (foreign / name).read_text() == "someone else's\n"
        assert not (foreign / generated.MANIFEST).exists()


def test_bad_image_id_refused(tmp_path):
    bad = generated.GenerationRecord(**{**_record(0).to_dict(), "image_id": "a.b"})
    with (
        pytest.raises(DataError, match="WebDataset key"),
        generated.GeneratedWriter(tmp_path / "g") as writer,
    ):
        writer.add(b"", bad)


@needs_shared
def test_study_labels_csv_reads():
    header, rows = read_table(SHARED_DATA / "upstream_lists" / "synthetic_train_5000.csv")
    assert header[:2] == ["Image_name", "Plane"] and len(rows) == 5000
    assert Counter(r["Plane"] for r in rows) == {plane: 1000 for plane in PLANES}
    assert all(NAME_RE.match(r["Image_name"]) for r in rows)
