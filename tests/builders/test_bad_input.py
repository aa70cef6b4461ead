"""Every bad source gives one clear sentence naming the file, a non-zero exit, and an untouched cache."""

from __future__ import annotations

import csv
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import datasets
import pytest
from click.testing import CliRunner

from fulora_data.cli import main
from fulora_data.samples import write_african_source, write_spanish_source


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_spanish_source(tmp_path_factory.mktemp("pristine"), per_plane=3, test_per_plane=1, seed=5)


@pytest.fixture
def spanish(pristine, tmp_path) -> Path:
    """A private, writable copy of a tiny FETAL_PLANES_DB folder."""
    return Path(shutil.copytree(pristine, tmp_path / "FETAL_PLANES_DB"))


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_fails_cleanly(result, cache: Path, *, names: str, says: str) -> None:
    """The command failed with one 'Error:' line naming the file, and the cache holds no partial build."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert names in errors[0], errors[0]
    assert says in errors[0], errors[0]
    leftovers = [p for p in cache.rglob("*") if ".incomplete" in p.name or ".partial" in p.name]
    assert leftovers == []
    assert list(cache.rglob("dataset_info.json")) == []


def prepare(source: Path, cache: Path, *extra: str):
    return run(
        "data",
        "prepare",
        "spanish",
        "--config",
        "full",
        "--source",
        str(source),
        "--cache-dir",
        str(cache),
        *extra,
    )


def rewrite_csv(folder: Path, edit) -> None:
    path = folder / "FETAL_PLANES_DB_data.csv"
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    rows = edit(rows)
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(rows)


def test_missing_source_says_what_to_pass(tmp_path):
    result = prepare(tmp_path / "nowhere.zip", tmp_path / "cache")
    assert_fails_cleanly(
        result, tmp_path / "cache", names="nowhere.zip", says="pass --source with the FETAL_PLANES_ZENODO.zip"
    )


def test_failed_download_says_where_to_get_the_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    result = run("data", "prepare", "african", "--cache-dir", str(tmp_path / "cache"))
    assert_fails_cleanly(result, tmp_path / "cache", names="Zenodo_dataset.tar.xz", says="--source PATH")


def test_folder_that_is_not_the_dataset(tmp_path):
    (tmp_path / "empty").mkdir()
    result = prepare(tmp_path / "empty", tmp_path / "cache")
    assert_fails_cleanly(result, tmp_path / "cache", names="empty", says="has no FETAL_PLANES_DB_data.csv")


def test_missing_image_then_a_fixed_source_builds(spanish, tmp_path):
    victim = sorted((spanish / "Images").iterdir())[3]
    kept = victim.read_bytes()
    victim.unlink()
    result = prepare(spanish, tmp_path / "cache")
    assert_fails_cleanly(result, tmp_path / "cache", names=victim.name, says="is missing")
    victim.write_bytes(kept)
    assert prepare(spanish, tmp_path / "cache").exit_code == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_image_that_does_not_decode(spanish, tmp_path, damage):
    victim = sorted((spanish / "Images").iterdir())[5]
    data = victim.read_bytes()
    victim.write_bytes(b"not a png at all" if damage == "garbage" else data[: len(data) // 2])
    result = prepare(spanish, tmp_path / "cache")
    assert_fails_cleanly(result, tmp_path / "cache", names=victim.name, says="does not decode")


def test_unknown_plane(spanish, tmp_path):
    def edit(rows):
        rows[2][2] = "Fetal heart"
        return rows

    rewrite_csv(spanish, edit)
    result = prepare(spanish, tmp_path / "cache")
    assert_fails_cleanly(
        result,
        tmp_path / "cache",
        names="FETAL_PLANES_DB_data.csv line 3",
        says="unknown plane 'Fetal heart'",
    )


def test_csv_missing_a_column(spanish, tmp_path):
    rewrite_csv(spanish, lambda rows: [row[:4] + row[5:] for row in rows])
    result = prepare(spanish, tmp_path / "cache")
    assert_fails_cleanly(
        result, tmp_path / "cache", names="FETAL_PLANES_DB_data.csv", says="has no column 'Operator'"
    )


def test_bad_train_flag(spanish, tmp_path):
    def edit(rows):
        rows[1][6] = "yes"
        return rows

    rewrite_csv(spanish, edit)
    result = prepare(spanish, tmp_path / "cache")
    assert_fails_cleanly(result, tmp_path / "cache", names="line 2", says="Train must be 0 or 1, got 'yes'")


def test_csv_row_with_too_few_cells(spanish, tmp_path):
    def edit(rows):
        rows[3] = rows[3][:2]
        return rows

    rewrite_csv(spanish, edit)
    result = prepare(spanish, tmp_path / "cache")
    assert_fails_cleanly(
        result,
        tmp_path / "cache",
        names="FETAL_PLANES_DB_data.csv line 4",
        says="2 cells but the header names 7 columns",
    )


def test_subset_csv_with_an_unknown_plane_names_the_list(spanish, tmp_path):
    subset = tmp_path / "subset.csv"
    first = (spanish / "FETAL_PLANES_DB_data.csv").read_text(encoding="utf-8-sig").splitlines()[1]
    subset.write_text(f"Image_name,Plane\n{first.split(';')[0]},Fetal heart\n")
    result = run(
        "data", "prepare", "spanish", "--config", "lora-100", "--source", str(spanish),
        "--subset-csv", str(subset), "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert_fails_cleanly(
        result, tmp_path / "cache", names="subset.csv line 2", says="unknown plane 'Fetal heart'"
    )


@pytest.mark.parametrize("per_plane", [0, -1, "20"])
def test_bad_per_plane_is_a_config_error(spanish, tmp_path, per_plane):
    from fulora_data.errors import ConfigError
    from fulora_data.prepare import prepare as build

    with pytest.raises(
        ConfigError, match=f"per_plane must be a whole number of at least 1, got {per_plane!r}"
    ):
        build("spanish", "es", source=spanish, cache_dir=tmp_path / "cache", per_plane=per_plane)
    assert not list((tmp_path / "cache").rglob("dataset_info.json"))


def _zip_folder(folder: Path, archive: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return archive


@pytest.mark.parametrize("member", ["../escaped.txt", "Images/../../escaped.txt", "/tmp/escaped.txt"])
def test_zip_member_escaping_the_target_is_refused(spanish, tmp_path, member):
    archive = _zip_folder(spanish, tmp_path / "FETAL_PLANES_ZENODO.zip", {member: b"owned"})
    result = prepare(archive, tmp_path / "cache")
    assert_fails_cleanly(result, tmp_path / "cache", names=repr(member), says="outside the extraction folder")
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped.txt").exists()
    assert not (tmp_path / "cache" / "fulora_extracted").exists() or not any(
        (tmp_path / "cache" / "fulora_extracted").iterdir()
    )


@pytest.mark.parametrize("member", ["../escaped.txt", "/tmp/escaped-abs.txt"])
def test_tar_member_escaping_the_target_is_refused(tmp_path, member):
    folder = write_african_source(tmp_path / "src", patients_per_country=1)
    archive = tmp_path / "Zenodo_dataset.tar.xz"
    with tarfile.open(archive, "w:xz") as tf:
        tf.add(folder, arcname="Zenodo_dataset")
        info = tarfile.TarInfo(member)
        info.size = 5
        tf.addfile(info, io.BytesIO(b"owned"))
    cache = tmp_path / "cache"
    result = run("data", "prepare", "african", "--source", str(archive), "--cache-dir", str(cache))
    assert_fails_cleanly(result, cache, names=repr(member), says="outside the extraction folder")
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped-abs.txt").exists()


def test_tar_link_escaping_the_target_is_refused(tmp_path):
    folder = write_african_source(tmp_path / "src", patients_per_country=1)
    archive = tmp_path / "Zenodo_dataset.tar.xz"
    with tarfile.open(archive, "w:xz") as tf:
        tf.add(folder, arcname="Zenodo_dataset")
        link = tarfile.TarInfo("Zenodo_dataset/Algeria/link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../../etc/passwd"
        tf.addfile(link)
    cache = tmp_path / "cache"
    result = run("data", "prepare", "african", "--source", str(archive), "--cache-dir", str(cache))
    assert_fails_cleanly(result, cache, names="link.png", says="points outside the extraction folder")


def test_wrong_checksum_then_right_checksum(spanish, tmp_path):
    archive = _zip_folder(spanish, tmp_path / "FETAL_PLANES_ZENODO.zip")
    result = prepare(archive, tmp_path / "cache", "--md5", "0" * 32)
    assert_fails_cleanly(
        result, tmp_path / "cache", names="FETAL_PLANES_ZENODO.zip", says="but the published file has 000"
    )
    import hashlib

    right = hashlib.md5(archive.read_bytes()).hexdigest()
    assert prepare(archive, tmp_path / "cache", "--md5", right).exit_code == 0


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_truncated_archive(tmp_path, kind):
    if kind == "zip":
        archive = write_spanish_source(tmp_path / "src", per_plane=3, test_per_plane=1, archive=True)
        name = "spanish"
    else:
        archive = write_african_source(tmp_path / "src", patients_per_country=2, archive=True)
        name = "african"
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    cache = tmp_path / "cache"
    result = run("data", "prepare", name, "--source", str(archive), "--cache-dir", str(cache))
    assert_fails_cleanly(result, cache, names=archive.name, says="corrupt or truncated")
    extracted = cache / "fulora_extracted"
    assert not extracted.exists() or list(extracted.iterdir()) == []


def test_unknown_config_and_option_are_refused(spanish, tmp_path):
    result = run("data", "info", "spanish", "--config", "es-9999", "--source", str(spanish))
    assert result.exit_code != 0 and "spanish has no config 'es-9999'" in result.output
    result = run("data", "info", "spanish", "--country", "Ghana", "--source", str(spanish))
    assert result.exit_code != 0 and "spanish has no option 'country'" in result.output
    result = run("data", "info", "nonsense")
    assert result.exit_code != 0 and "unknown dataset 'nonsense'" in result.output
