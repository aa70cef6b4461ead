"""The spanish and african builders on seeded tiny archives in the real layouts, every config, both sources."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import datasets
import pytest
from PIL import Image

from fulora_data import prepare as library
from fulora_data.builders.spanish import draw_per_plane
from fulora_data.errors import FuloraError
from fulora_data.samples import write_african_source, write_spanish_source
from fulora_data.taxonomy import PLANES, PROMPTS


@pytest.fixture(scope="module")
def spanish_folder(tmp_path_factory) -> Path:
    return write_spanish_source(tmp_path_factory.mktemp("es"), per_plane=6, test_per_plane=2, seed=1)


@pytest.fixture(scope="module")
def spanish_zip(tmp_path_factory) -> Path:
    return write_spanish_source(
        tmp_path_factory.mktemp("es_zip"), per_plane=6, test_per_plane=2, seed=1, archive=True
    )


@pytest.fixture(scope="module")
def african_folder(tmp_path_factory) -> Path:
    return write_african_source(tmp_path_factory.mktemp("af"), patients_per_country=4, seed=2)


@pytest.fixture(scope="module")
def african_archive(tmp_path_factory) -> Path:
    return write_african_source(
        tmp_path_factory.mktemp("af_tar"), patients_per_country=4, seed=2, archive=True
    )


def _csv_rows(folder: Path) -> list[dict]:
    with open(folder / "FETAL_PLANES_DB_data.csv", encoding="utf-8-sig") as handle:
        return [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(handle, delimiter=";")]


def _stored_bytes(dataset: datasets.Dataset) -> dict[str, bytes]:
    raw = dataset.cast_column("image", datasets.Image(decode=False))
    return {row["image_id"]: row["image"]["bytes"] for row in raw}


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_spanish_full_keeps_both_splits_and_six_classes(kind, spanish_folder, spanish_zip, tmp_path):
    source = spanish_folder if kind == "folder" else spanish_zip
    splits = library.prepare("spanish", "full", source=source, cache_dir=tmp_path)
    rows = _csv_rows(spanish_folder)
    assert set(splits) == {"train", "test"}
    assert len(splits["train"]) == sum(r["Train"] == "1" for r in rows)
    assert len(splits["test"]) == sum(r["Train"] == "0" for r in rows)
    names = splits["train"].features["label"].names
    assert names == [*PLANES, "Maternal cervix"]
    by_id = {r["Image_name"]: r for r in rows}
    for split in splits.values():
        for example in split.select_columns(
            ["image_id", "label", "text", "source", "patient_id", "operator"]
        ):
            row = by_id[example["image_id"]]
            assert names[example["label"]] == row["Plane"]
            assert example["text"] == PROMPTS[row["Plane"]]
            assert example["source"] == "real"
            assert example["patient_id"] == row["Patient_num"]
            assert example["operator"] == row["Operator"]


def test_spanish_es_is_train_without_cervix(spanish_folder, tmp_path):
    splits = library.prepare("spanish", "es", source=spanish_folder, cache_dir=tmp_path)
    rows = _csv_rows(spanish_folder)
    expected = {r["Image_name"] for r in rows if r["Train"] == "1" and r["Plane"] != "Maternal cervix"}
    assert list(splits) == ["train"]
    assert set(library.column(splits["train"], "image_id")) == expected
    assert splits["train"].features["label"].names == list(PLANES)


def test_png_bytes_are_stored_untouched_and_decode_to_grayscale(spanish_folder, tmp_path):
    splits = library.prepare("spanish", "es", source=spanish_folder, cache_dir=tmp_path)
    stored = _stored_bytes(splits["train"])
    for image_id, data in stored.items():
        source_bytes = (spanish_folder / "Images" / f"{image_id}.png").read_bytes()
        assert hashlib.sha256(data).digest() == hashlib.sha256(source_bytes).digest()
    image = splits["train"][0]["image"]
    assert isinstance(image, Image.Image) and image.mode == "L"


def test_lora_and_es1150_refuse_a_source_too_small(spanish_folder, tmp_path):
    with pytest.raises(FuloraError, match=r"has 6 .* images to draw from but 20 per plane"):
        library.prepare("spanish", "lora-100", source=spanish_folder, cache_dir=tmp_path)


def test_per_plane_draw_rule(spanish_folder, tmp_path):
    builder = library.make_builder("spanish", "es", source=spanish_folder, cache_dir=tmp_path)
    source = builder._resolve_source(None)
    records = builder._read_records(source)["train"]
    drawn = draw_per_plane(records, 3, seed=7)
    assert Counter(r.plane for r in drawn) == {plane: 3 for plane in PLANES}
    assert [r.image_id for r in drawn] == [r.image_id for r in draw_per_plane(records, 3, seed=7)]
    assert {r.image_id for r in drawn} != {r.image_id for r in draw_per_plane(records, 3, seed=8)}
    # the rule keeps the source order
    order = [r.image_id for r in records]
    assert [r.image_id for r in drawn] == sorted((r.image_id for r in drawn), key=order.index)


def test_subset_configs_draw_per_plane_from_es(tmp_path):
    source = write_spanish_source(
        tmp_path / "src", per_plane=21, test_per_plane=1, with_cervix=False, seed=4, sizes=((24, 20),)
    )
    lora = library.prepare("spanish", "lora-100", source=source, cache_dir=tmp_path / "cache")
    labels = Counter(
        lora["train"].features["label"].int2str(x) for x in library.column(lora["train"], "label")
    )
    assert labels == {plane: 20 for plane in PLANES}
    es = set(
        library.column(
            library.prepare("spanish", "es", source=source, cache_dir=tmp_path / "cache")["train"], "image_id"
        )
    )
    assert set(library.column(lora["train"], "image_id")) <= es
    again = library.prepare("spanish", "lora-100", source=source, cache_dir=tmp_path / "other", seed=0)
    assert library.column(again["train"], "image_id") == library.column(lora["train"], "image_id")
    reseeded = library.prepare("spanish", "lora-100", source=source, cache_dir=tmp_path / "cache", seed=5)
    assert set(library.column(reseeded["train"], "image_id")) != set(
        library.column(lora["train"], "image_id")
    )


def test_subset_csv_selects_exactly_the_listed_images(spanish_folder, tmp_path):
    rows = [r for r in _csv_rows(spanish_folder) if r["Train"] == "1"]
    listed = [r for r in rows if r["Plane"] != "Maternal cervix"][::2]
    cervix = next(r for r in rows if r["Plane"] == "Maternal cervix")
    subset = tmp_path / "subset.csv"
    with open(subset, "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image_name", "category", "Train"])
        for r in [*listed, cervix]:  # a cervix row is skipped by five-class configs, as in the study's list
            writer.writerow([r["Image_name"], r["Plane"].split()[-1].lower(), "1"])
    splits = library.prepare(
        "spanish", "lora-100", source=spanish_folder, cache_dir=tmp_path, subset_csv=subset
    )
    assert sorted(library.column(splits["train"], "image_id")) == sorted(r["Image_name"] for r in listed)
    recorded = library.info(
        "spanish", "lora-100", source=spanish_folder, cache_dir=tmp_path, subset_csv=subset
    )["provenance"]["subset"]
    # the list is identified by name and content, never by the publisher's local path
    assert recorded == {
        "method": "csv",
        "csv": "subset.csv",
        "csv_sha256": hashlib.sha256(subset.read_bytes()).hexdigest(),
    }


def test_african_splits_countries_and_modes(african_folder, african_archive, tmp_path):
    with open(african_folder / "African_planes_database.csv") as handle:
        rows = list(csv.DictReader(handle))
    for source in (african_folder, african_archive):
        splits = library.prepare("african", source=source, cache_dir=tmp_path)
        assert len(splits["test"]) == sum(r["Train"] == "0" for r in rows)
        assert len(splits["train"]) == sum(r["Train"] == "1" for r in rows)
        assert set(library.column(splits["test"], "country")) == {
            "Algeria",
            "Egypt",
            "Ghana",
            "Malawi",
            "Uganda",
        }
    # RGB files (Egypt) and grayscale files (Algeria) decode to the one declared mode
    test = splits["test"]
    stored_modes = set()
    for row in test.cast_column("image", datasets.Image(decode=False)).select(range(len(test))):
        import io

        stored_modes.add(Image.open(io.BytesIO(row["image"]["bytes"])).mode)
    assert stored_modes == {"L", "RGB"}
    assert {test[i]["image"].mode for i in range(len(test))} == {"L"}
    patient = test[0]["patient_id"]
    assert patient.split("-")[0] == test[0]["country"]


def test_african_country_config_and_option(african_folder, tmp_path):
    by_config = library.prepare("african", "Ghana", source=african_folder, cache_dir=tmp_path)
    by_option = library.prepare("african", "all", source=african_folder, cache_dir=tmp_path, country="ghana")
    for splits in (by_config, by_option):
        assert set(library.column(splits["test"], "country")) == {"Ghana"}
    assert library.column(by_config["test"], "image_id") == library.column(by_option["test"], "image_id")
    with pytest.raises(FuloraError, match="country must be one of .* got 'Narnia'"):
        library.prepare("african", source=african_folder, cache_dir=tmp_path, country="Narnia")


def test_info_reports_counts_and_reuses_the_cache(spanish_folder, tmp_path):
    summary = library.info("spanish", "full", source=spanish_folder, cache_dir=tmp_path)
    rows = _csv_rows(spanish_folder)
    expected = Counter(r["Plane"] for r in rows if r["Train"] == "0")
    assert summary["label_counts"]["test"] == {name: expected.get(name, 0) for name in summary["label_names"]}
    assert summary["splits"] == {"train": 36, "test": 12}
    assert summary["provenance"]["source"]["kind"] == "folder"
    cached = Path(summary["cache_path"])
    stamp = (cached / "dataset_info.json").stat().st_mtime_ns
    assert library.info("spanish", "full", source=spanish_folder, cache_dir=tmp_path)["cache_path"] == str(
        cached
    )
    assert (cached / "dataset_info.json").stat().st_mtime_ns == stamp


def test_metadata_edited_in_place_two_levels_down_is_rebuilt(tmp_path):
    # The builder finds its CSV up to two levels below the folder given; editing it in place leaves every
    # folder's modification time alone, so the cache key must see the file itself.
    folder = write_spanish_source(tmp_path / "data" / "zenodo", per_plane=3, test_per_plane=1, seed=5)
    given = tmp_path / "data"
    before = library.prepare("spanish", "full", source=given, cache_dir=tmp_path / "cache")
    csv_path = folder / "FETAL_PLANES_DB_data.csv"
    lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    cells = lines[1].split(";")
    assert cells[2] == "Other"
    cells[2] = "Fetal femur"
    lines[1] = ";".join(cells)
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    after = library.prepare("spanish", "full", source=given, cache_dir=tmp_path / "cache")
    ids, got = library.column(after["train"], "image_id"), library.column(after["train"], "label")
    labels = dict(zip(ids, got, strict=True))
    assert labels[cells[0]] == PLANES.index("Fetal femur")
    assert before["train"].cache_files != after["train"].cache_files


def test_archive_checksums_are_recorded(spanish_zip, tmp_path):
    summary = library.info("spanish", "es", source=spanish_zip, cache_dir=tmp_path)
    recorded = summary["provenance"]["source"]
    assert recorded["kind"] == "archive"
    assert recorded["md5"] == hashlib.md5(spanish_zip.read_bytes()).hexdigest()
    assert recorded["sha256"] == hashlib.sha256(spanish_zip.read_bytes()).hexdigest()


def test_matching_md5_is_accepted(spanish_zip, tmp_path):
    md5 = hashlib.md5(spanish_zip.read_bytes()).hexdigest()
    splits = library.prepare("spanish", "es", source=spanish_zip, cache_dir=tmp_path, archive_md5=md5.upper())
    assert len(splits["train"]) == 30


def test_complete_release_split_sizes_are_verified(tmp_path):
    """A source with the release's row count but a wrong train/test partition is refused."""
    from fulora_data.builders.african import AfricanBuilder

    source = write_african_source(tmp_path / "src", patients_per_country=1, seed=0)
    csv_path = source / "African_planes_database.csv"
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    template = rows[0]
    image = (source / template["Center"] / f"{template['Image_name']}.png").read_bytes()
    while len(rows) < AfricanBuilder.COMPLETE_ROWS:
        name = f"extra{len(rows):04d}"
        (source / template["Center"] / f"{name}.png").write_bytes(image)
        rows.append({**template, "Image_name": name, "Train": "0"})
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(FuloraError, match=r"has \d+ images but the published release has 2(17|33)"):
        library.prepare("african", source=source, cache_dir=tmp_path / "cache")


def test_bytes_are_stored_even_when_run_from_the_image_folder(spanish_folder, tmp_path, monkeypatch):
    """A relative image name that resolves to a file must not make datasets store a path instead of bytes."""
    monkeypatch.chdir(spanish_folder / "Images")
    splits = library.prepare("spanish", "es", source=spanish_folder, cache_dir=tmp_path)
    stored = _stored_bytes(splits["train"])
    assert all(data is not None for data in stored.values())
    for image_id, data in stored.items():
        assert data == (spanish_folder / "Images" / f"{image_id}.png").read_bytes()
