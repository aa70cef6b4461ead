"""The hybrid builder: real + synthetic, assembled by row selection, with a patient-safe validation split."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest
from click.testing import CliRunner

from fulora_data import samples
from fulora_data.builders.hybrid import hybrid_features
from fulora_data.cli import main
from fulora_data.errors import ConfigError, DataError
from fulora_data.prepare import column, info, prepare
from fulora_data.splits import hold_out_groups
from fulora_data.taxonomy import PLANES


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("hybrid_sources")
    spanish = samples.write_spanish_source(root / "es", per_plane=8, test_per_plane=1, seed=3)
    synthetic, _ = samples.write_synthetic_release(root / "syn", per_plane=4, seed=4)
    generated = samples.write_generated_folder(root / "gen", per_plane=2, seed=5)
    return {"real_source": spanish, "synthetic_source": synthetic, "generated": generated}


def _options(sources, **extra):
    return {
        "real_config": "es",
        "real_source": sources["real_source"],
        "synthetic_source": sources["synthetic_source"],
        "verify_checksum": False,
        "synthetic_per_plane": 3,
        **extra,
    }


def _by_id(dataset):
    plain = dataset.cast_column("image", datasets.Image(decode=False))
    return {row["image_id"]: row for row in plain}


def test_counts_per_class_and_source(tmp_path, sources):
    hybrid = prepare("hybrid", cache_dir=tmp_path, **_options(sources))
    real = prepare("spanish", "es", source=sources["real_source"], cache_dir=tmp_path)["train"]
    rows = {**_by_id(hybrid["train"]), **_by_id(hybrid["validation"])}
    assert len(rows) == len(hybrid["train"]) + len(hybrid["validation"])  # no row in both splits
    by_source = Counter(row["source"] for row in rows.values())
    assert by_source == {"real": len(real), "synthetic": 3 * len(PLANES)}
    real_counts = Counter(column(real, "label"))
    for label in range(len(PLANES)):
        assert (
            sum(1 for r in rows.values() if r["label"] == label and r["source"] == "real")
            == real_counts[label]
        )
        assert sum(1 for r in rows.values() if r["label"] == label and r["source"] == "synthetic") == 3
    # The default validation size: the study's 200, capped at a tenth of the set.
    assert len(hybrid["validation"]) == min(200, len(rows) // 10)
    summary = info("hybrid", cache_dir=tmp_path, **_options(sources))
    assert summary["splits"] == {"train": len(hybrid["train"]), "validation": len(hybrid["validation"])}


def test_rows_equal_their_parts(tmp_path, sources):
    hybrid = prepare("hybrid", cache_dir=tmp_path, **_options(sources))
    real = _by_id(prepare("spanish", "es", source=sources["real_source"], cache_dir=tmp_path)["train"])
    synthetic = _by_id(
        prepare("synthetic", source=sources["synthetic_source"], cache_dir=tmp_path, verify_checksum=False)[
            "train"
        ]
    )
    assert hybrid["train"].features == hybrid_features()
    for image_id, row in _by_id(hybrid["train"]).items():
        part = real if row["source"] == "real" else synthetic
        for name, value in part[image_id].items():
            assert row[name] == value, (image_id, name)
        if row["source"] == "real":
            assert row["sampler"] == "" and row["seed"] is None and row["lora_rank"] is None
        else:
            assert row["brain_plane"] == row["operator"] == row["us_machine"] == row["patient_id"] == ""


def test_patients_never_straddle_and_split_is_seeded(tmp_path, sources):
    first = prepare("hybrid", cache_dir=tmp_path, **_options(sources, validation_size=9))
    train_patients = {p for p in column(first["train"], "patient_id") if p}
    val_patients = {p for p in column(first["validation"], "patient_id") if p}
    assert len(first["validation"]) == 9
    assert val_patients and not train_patients & val_patients
    again = prepare("hybrid", cache_dir=tmp_path / "again", **_options(sources, validation_size=9))
    assert column(again["validation"], "image_id") == column(first["validation"], "image_id")
    other = prepare("hybrid", cache_dir=tmp_path, **_options(sources, validation_size=9, seed=7))
    assert column(other["validation"], "image_id") != column(first["validation"], "image_id")


def test_split_validation_keeps_groups_whole():
    groups = ["a", "a", "a", "b", "c", "c", "d"]
    chosen = hold_out_groups(groups, 3, seed=0)
    assert len(chosen) == 3
    taken = {groups[i] for i in chosen}
    assert all(groups.count(g) == sum(1 for i in chosen if groups[i] == g) for g in taken)


def test_no_validation_split(tmp_path, sources):
    hybrid = prepare("hybrid", cache_dir=tmp_path, **_options(sources, validation_size=0))
    assert list(hybrid) == ["train"]


def test_generated_synthetic_part(tmp_path, sources):
    hybrid = prepare(
        "hybrid",
        "es1150-generated",
        cache_dir=tmp_path,
        real_config="es",
        real_source=sources["real_source"],
        synthetic_source=sources["generated"],
    )
    rows = [*_by_id(hybrid["train"]).values(), *_by_id(hybrid["validation"]).values()]
    synthetic = [r for r in rows if r["source"] == "synthetic"]
    assert len(synthetic) == 10 and {r["sampler"] for r in synthetic} == {"EulerDiscreteScheduler"}


def test_more_synthetic_than_the_source_has(tmp_path, sources):
    result = CliRunner().invoke(
        main,
        [
            "data", "prepare", "hybrid", "--real-config", "es", "--real-source", str(sources["real_source"]),
            "--synthetic-source", str(sources["synthetic_source"]), "--no-verify", "--synthetic-per-plane", "5",
            "--cache-dir", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "has 4 Other images but synthetic_per_plane=5" in result.output
    assert not list(tmp_path.glob("hybrid/*/*/dataset_info.json"))


def test_more_real_than_the_source_has(tmp_path, sources):
    with pytest.raises(DataError, match="230 per plane are needed"):
        prepare("hybrid", cache_dir=tmp_path, **{**_options(sources), "real_config": "es-1150"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"real_config": "full"}, "five-class parts"),
        ({"validation_size": 10_000}, "validation_size must be between 0 and"),
        ({"synthetic_per_plane": -1}, "synthetic_per_plane must be at least 0"),
        ({"archive_md5": "0" * 32}, "hybrid checks no archive itself"),
        ({"drop_test_duplicates": True}, "--drop-test-duplicates does not apply"),
    ],
)
def test_bad_options(tmp_path, sources, options, message):
    with pytest.raises(ConfigError, match=message):
        prepare("hybrid", cache_dir=tmp_path, **{**_options(sources), **options})


def test_source_option_refused(tmp_path, sources):
    with pytest.raises(ConfigError, match="--real-source and --synthetic-source"):
        prepare("hybrid", source=sources["real_source"], cache_dir=tmp_path, **_options(sources))
