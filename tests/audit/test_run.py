"""The data audit: planted exact, near and cross-split duplicates, memorisation, reports and bad input."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fulora_data.audit import (
    audit,
    brute_force_hamming_pairs,
    hamming_pairs,
    memorisation,
    write_report,
)
from fulora_data.audit.search import principal_projection
from fulora_data.cli import main
from fulora_data.errors import ConfigError, DataError
from fulora_data.pixels import pixel_digest
from fulora_data.prepare import load_provenance, make_builder, prepare
from fulora_data.samples import png_bytes, render_plane_image, write_african_source, write_spanish_source
from fulora_data.taxonomy import PLANES, base_features

FEATURES = datasets.Features(base_features())


def _brighter(image: Image.Image, shift: int = 10) -> Image.Image:
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + shift, 0, 255).astype(np.uint8))


def _noisy(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    noise = np.random.default_rng(seed).normal(0, sigma, (image.height, image.width))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def _split(rows: list[tuple[bytes, int, str, str]], source: str = "real") -> datasets.Dataset:
    """Rows of ``(png bytes, label, image_id, patient_id)`` as a dataset with the shared features."""
    return datasets.Dataset.from_dict(
        {
            "image": [{"bytes": data, "path": None} for data, *_ in rows],
            "label": [label for _, label, _, _ in rows],
            "text": ["" for _ in rows],
            "source": [source for _ in rows],
            "image_id": [image_id for _, _, image_id, _ in rows],
            "patient_id": [patient for *_, patient in rows],
        },
        features=FEATURES,
    )


def _distinct_images(n: int, seed: int, size=(96, 72)) -> list[tuple[Image.Image, int]]:
    rng = np.random.default_rng(seed)
    return [(render_plane_image(PLANES[k % 5], size, rng), k % 5) for k in range(n)]


@pytest.fixture(scope="module")
def planted() -> datasets.DatasetDict:
    """Twelve train and eight test images with two exact, two near and two cross-split duplicate pairs.

    train/t05 is train/t00 stored as RGB (same gray pixels, other bytes); train/t06 is train/t01 ten grey
    levels brighter; test/s00 is train/t02's bytes under another patient; test/s01 is train/t03 with noise
    (sigma 3) and another label.
    """
    images = _distinct_images(18, seed=7)
    train = [(png_bytes(im), label, f"t{k:02d}", f"P{k // 2}") for k, (im, label) in enumerate(images[:12])]
    train[5] = (png_bytes(images[0][0].convert("RGB")), images[0][1], "t05", "P0")
    train[6] = (png_bytes(_brighter(images[1][0])), images[1][1], "t06", "P0")
    test = [(png_bytes(im), label, f"s{k:02d}", f"Q{k}") for k, (im, label) in enumerate(images[12:])]
    test.insert(0, (train[2][0], train[2][1], "s00", "Q-other"))
    test.insert(1, (png_bytes(_noisy(images[3][0], 3, seed=1)), (images[3][1] + 1) % 5, "s01", "P1"))
    return datasets.DatasetDict({"train": _split(train), "test": _split(test)})


def _ids(pair: dict) -> tuple[str, str]:
    return (f"{pair['a']['split']}/{pair['a']['image_id']}", f"{pair['b']['split']}/{pair['b']['image_id']}")


def test_audit_finds_exactly_the_planted_duplicates(planted):
    result = audit(planted)
    exact = {_ids(p) for p in result["pairs"] if p["kind"] == "exact"}
    near = {_ids(p) for p in result["pairs"] if p["kind"] == "near"}
    assert exact == {("train/t00", "train/t05"), ("train/t02", "test/s00")}
    assert near == {("train/t01", "train/t06"), ("train/t03", "test/s01")}
    assert result["exact_duplicate_pairs"] == 2
    assert result["near_duplicate_pairs"] == 2
    assert result["cross_split_duplicate_pairs"] == 2
    assert {_ids(p) for p in result["pairs"] if p["cross_split"]} == {
        ("train/t02", "test/s00"),
        ("train/t03", "test/s01"),
    }
    # test/s01 carries another label than its near copy; test/s00 another patient than its exact copy.
    assert [_ids(p) for p in result["pairs"] if p["label_disagrees"]] == [("train/t03", "test/s01")]
    assert [_ids(p) for p in result["pairs"] if p["patient_disagrees"]] == [("train/t02", "test/s00")]
    assert result["label_disagreement_pairs"] == result["patient_disagreement_pairs"] == 1
    for pair in result["pairs"]:
        assert pair["hamming"] <= result["thresholds"]["phash_hamming"]
        assert pair["similarity"] >= result["thresholds"]["thumbnail_similarity"]
    json.dumps(result)  # JSON-ready


def test_exact_duplicates_are_pixel_equal_not_byte_equal(planted):
    raw = planted["train"].cast_column("image", datasets.Image(decode=False))
    t00, t05 = raw[0]["image"]["bytes"], raw[5]["image"]["bytes"]
    assert t00 != t05
    assert pixel_digest(t00) == pixel_digest(t05)


def test_a_tighter_threshold_keeps_exact_pairs_and_drops_near_ones(planted):
    strict = audit(planted, threshold=4, similarity=1.0)
    assert strict["exact_duplicate_pairs"] == 2
    assert strict["near_duplicate_pairs"] == 0


def test_split_summary_reads_modes_sizes_classes_and_patients(planted):
    summary = audit(planted)["splits"]
    assert summary["train"]["images"] == 12 and summary["test"]["images"] == 8
    assert summary["train"]["modes"] == {"L": 11, "RGB": 1}  # t05 is stored as RGB
    assert summary["test"]["modes"] == {"L": 8}
    assert summary["train"]["sizes"] == {"96x72": 12}
    names = planted["train"].features["label"].names
    for split in ("train", "test"):
        labels = Counter(names[i] for i in planted[split]["label"])
        assert summary[split]["label_counts"] == {name: labels.get(name, 0) for name in names}
        patients = Counter(planted[split]["patient_id"])
        assert summary[split]["patient_counts"] == dict(patients)
        assert summary[split]["patients"] == len(patients)


def test_modes_and_sizes_come_from_the_stored_headers():
    rng = np.random.default_rng(3)
    rows = [
        (png_bytes(render_plane_image("Fetal brain", (64, 48), rng, mode="RGB")), 2, "a", "p"),
        (png_bytes(render_plane_image("Fetal femur", (50, 40), rng)), 3, "b", "p"),
        (png_bytes(render_plane_image("Fetal femur", (50, 40), rng)), 3, "c", "q"),
    ]
    summary = audit(datasets.DatasetDict({"train": _split(rows)}))["splits"]["train"]
    assert summary["modes"] == {"L": 2, "RGB": 1}
    assert summary["sizes"] == {"50x40": 2, "64x48": 1}
    assert summary["smallest"] == "50x40" and summary["largest"] == "64x48"
    assert summary["patient_counts"] == {"p": 2, "q": 1}


def test_a_plain_dataset_is_audited_as_one_split(planted):
    result = audit(planted["train"])
    assert list(result["splits"]) == ["train"]
    assert result["exact_duplicate_pairs"] == 1 and result["near_duplicate_pairs"] == 1
    assert result["cross_split_duplicate_pairs"] == 0


@pytest.mark.parametrize("threshold", range(13))
def test_band_search_equals_brute_force(threshold):
    rng = np.random.default_rng(threshold)
    hashes = rng.integers(0, 2**63, 2000, dtype=np.int64).view(np.uint64) * np.uint64(2)
    # Plant neighbours at every distance up to threshold + 2, and a cluster sharing 48 of 64 bits.
    for k in range(0, 400, 2):
        flips = rng.choice(64, size=int(rng.integers(0, threshold + 3)), replace=False)
        hashes[k + 1] = hashes[k] ^ np.uint64(sum(1 << int(b) for b in flips))
    hashes[400:600] = (hashes[400:600] & np.uint64(0xFFFF)) | np.uint64(0xABCD_EF01_2345_0000)
    found = hamming_pairs(hashes, threshold)
    expected = brute_force_hamming_pairs(hashes, threshold)
    for got, want in zip(found, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(found[0]) > 0


def test_band_search_with_fewer_than_two_hashes():
    assert all(len(a) == 0 for a in hamming_pairs(np.zeros(1, np.uint64), 4))


def _clustered_hashes_and_vectors(seed: int, threshold: int, n: int = 1500, dim: int = 24):
    """Hashes and unit vectors in clusters, so many pairs sit near both the bit and the similarity limits."""
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, 40, n)
    centres = rng.normal(size=(40, dim))
    vectors = centres[clusters] + rng.normal(size=(n, dim)) * rng.uniform(0.02, 0.4, (n, 1))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # Four clusters share each root hash: the hash alone cannot tell them apart, the thumbnails can.
    roots = rng.integers(0, 2**63, 10, dtype=np.int64).view(np.uint64)
    hashes = roots[clusters % 10].copy()
    for k in range(n):
        flips = rng.choice(64, size=int(rng.integers(0, threshold + 3)), replace=False)
        hashes[k] ^= np.uint64(sum(1 << int(b) for b in flips))
    return hashes, vectors.astype(np.float32)


@pytest.mark.parametrize("threshold", range(13))
@pytest.mark.parametrize("similarity", [0.9, 0.98])
def test_grid_search_misses_no_near_duplicate(threshold, similarity):
    hashes, vectors = _clustered_hashes_and_vectors(threshold, threshold)
    radius = float(np.sqrt(2 - 2 * similarity)) + 1e-4
    projection = principal_projection(vectors)
    assert projection.shape == (len(vectors), 3)
    first, second, distance = hamming_pairs(hashes, threshold, projection, radius)
    # Brute force over all pairs, in the full space: every true near duplicate must be found.
    left, right, all_distance = brute_force_hamming_pairs(hashes, 64)
    near = (all_distance <= threshold) & (
        np.einsum("ij,ij->i", vectors[left], vectors[right]) >= similarity - 1e-5
    )
    found = set(zip(first.tolist(), second.tolist(), strict=True))
    truth = set(zip(left[near].tolist(), right[near].tolist(), strict=True))
    assert truth and truth <= found
    # And the grid returns exactly the pairs within the threshold and the radius on the projection.
    projected = np.square(projection[left] - projection[right]).sum(axis=1) <= radius * radius
    keep = (all_distance <= threshold) & projected
    assert keep.sum() < (all_distance <= threshold).sum()  # the grid does leave pairs out
    np.testing.assert_array_equal(first, left[keep])
    np.testing.assert_array_equal(second, right[keep])
    np.testing.assert_array_equal(distance, all_distance[keep])
    # One axis (a plain window) finds the same true pairs.
    one_axis = hamming_pairs(hashes, threshold, projection[:, 0], radius)
    assert truth <= set(zip(one_axis[0].tolist(), one_axis[1].tolist(), strict=True))


def test_grid_search_refuses_a_projection_of_the_wrong_shape():
    hashes = np.arange(10, dtype=np.uint64)
    with pytest.raises(ValueError, match=r"got \(9, 3\)"):
        hamming_pairs(hashes, 4, np.zeros((9, 3)), 0.2)
    with pytest.raises(ValueError, match=r"got \(10, 5\)"):
        hamming_pairs(hashes, 4, np.zeros((10, 5)), 0.2)


# ----------------------------------------------------------------------------- memorisation
@pytest.fixture(scope="module")
def synthetic_and_training():
    training_images = _distinct_images(10, seed=11)
    training = _split(
        [(png_bytes(im), label, f"r{k}", f"R{k}") for k, (im, label) in enumerate(training_images)]
    )
    generated = _distinct_images(8, seed=12)
    rows = [(png_bytes(im), label, f"g{k}", "") for k, (im, label) in enumerate(generated)]
    # g3 is training image r4 a little brighter and noisier: a memorised sample.
    memorised = _noisy(_brighter(training_images[4][0], 6), 2, seed=5)
    rows[3] = (png_bytes(memorised), training_images[4][1], "g3", "")
    return datasets.DatasetDict({"train": _split(rows, source="synthetic")}), datasets.DatasetDict(
        {"train": training}
    )


def test_memorisation_flags_exactly_the_planted_copy(synthetic_and_training):
    synthetic, training = synthetic_and_training
    result = memorisation(synthetic, training)
    assert result["synthetic_images"] == 8 and result["training_images"] == 10
    assert result["memorised"] == 1
    (pair,) = result["pairs"]
    assert pair["synthetic"]["image_id"] == "g3" and pair["training"]["image_id"] == "r4"
    assert pair["similarity"] >= 0.98 and not pair["same_pixels"]
    assert len(result["nearest"]) == 8
    # Every nearest neighbour is the true nearest by thumbnail similarity (checked by brute force here).
    thumbs = {}
    for name, dataset in (("s", synthetic["train"]), ("t", training["train"])):
        raw = dataset.cast_column("image", datasets.Image(decode=False))
        vectors = []
        for row in raw:
            gray = Image.open(io.BytesIO(row["image"]["bytes"])).convert("L").resize((32, 32), Image.BOX)
            v = np.asarray(gray, dtype=np.float64).ravel()
            v -= v.mean()
            vectors.append(v / np.linalg.norm(v))
        thumbs[name] = np.stack(vectors)
    scores = thumbs["s"] @ thumbs["t"].T
    assert [row["training"]["index"] for row in result["nearest"]] == scores.argmax(axis=1).tolist()
    np.testing.assert_allclose(
        [row["similarity"] for row in result["nearest"]], scores.max(axis=1), atol=1e-3
    )


def test_no_memorisation_between_unrelated_sets(synthetic_and_training):
    synthetic, training = synthetic_and_training
    unrelated = datasets.DatasetDict({"train": synthetic["train"].select([0, 1, 2, 4, 5, 6, 7])})
    assert memorisation(unrelated, training)["memorised"] == 0


# ----------------------------------------------------------------------------- report
def test_report_writes_markdown_figures_and_pairs(planted, synthetic_and_training, tmp_path):
    synthetic, training = synthetic_and_training
    result = {
        "audit": audit(planted),
        "memorisation": memorisation(synthetic, training),
        "against": "in-memory training set",
    }
    report = write_report(tmp_path / "report", result, planted, training=training)
    assert report == tmp_path / "report" / "report.md"
    text = report.read_text()
    files = {p.name for p in report.parent.iterdir() if p.name != ".fulora_written.json"}  # the writer's record
    assert {"report.md", "audit.json", "class_counts.png", "exact_pairs.png", "near_pairs.png"} <= files
    assert {"memorised_pairs.png", "nearest_similarity.png"} <= files
    for name in files - {"report.md", "audit.json"}:
        assert f"({name})" in text
        with Image.open(report.parent / name) as image:
            image.load()
    with Image.open(report.parent / "exact_pairs.png") as grid:
        assert grid.width >= 2 * 2 * 200  # two exact pairs, side by side on one page
    assert "t02" in text and "s00" in text and "cross-split" in text
    assert json.loads((report.parent / "audit.json").read_text())["audit"]["exact_duplicate_pairs"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.")]  # no temp folder left

    # Audited again once the duplicates are gone: no figure of the earlier report's pairs is left behind.
    (tmp_path / "report" / "notes.txt").write_text("mine")
    clean = datasets.DatasetDict({"train": planted["train"].select(range(5))})
    write_report(tmp_path / "report", {"audit": audit(clean)}, clean)
    assert sorted(p.name for p in (tmp_path / "report").iterdir() if p.name != ".fulora_written.json") == [
        "audit.json",
        "class_counts.png",
        "notes.txt",
        "report.md",
    ]


def test_report_into_a_file_is_refused_before_the_audit(tmp_path):
    target = tmp_path / "report"
    target.write_text("not a folder")
    result = CliRunner().invoke(
        main,
        ["data", "audit", "african", "--source", str(tmp_path / "absent"), "--cache-dir", str(tmp_path)]
        + ["--report", str(target)],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output  # --report is a folder (docs/cli.md)
    assert "Invalid value for '--report'" in result.output and f"{str(target)!r} is a file" in result.output
    assert target.read_text() == "not a folder"


# ----------------------------------------------------------------------------- bad input
def test_empty_dataset_is_refused():
    empty = datasets.DatasetDict({"train": _split([]), "test": _split([])})
    with pytest.raises(DataError, match="is empty"):
        audit(empty)
    with pytest.raises(DataError, match="no splits"):
        audit(datasets.DatasetDict())


def test_dataset_without_images_is_refused():
    no_images = datasets.Dataset.from_dict({"label": [0, 1], "image_id": ["a", "b"]})
    with pytest.raises(DataError, match="no 'image' column"):
        audit(no_images)
    strings = datasets.Dataset.from_dict({"image": ["a.png", "b.png"]})
    with pytest.raises(DataError, match="not images"):
        audit(strings)


def test_undecodable_image_is_named():
    broken = _split([(b"not a png at all", 0, "x", "p")])
    with pytest.raises(DataError, match="train row 0"):
        audit(broken)


@pytest.mark.parametrize("threshold", [-1, 13, 64, 2.5, True, "4"])
def test_threshold_out_of_range_is_refused(planted, threshold):
    with pytest.raises(ConfigError, match=r"^threshold .* got") as caught:
        audit(planted, threshold=threshold)
    assert caught.value.field == "threshold"  # the CLI writes it as --threshold


@pytest.mark.parametrize("similarity", [0, -0.5, 1.01, float("nan"), "0.9"])
def test_similarity_out_of_range_is_refused(planted, synthetic_and_training, similarity):
    with pytest.raises(ConfigError, match=r"^similarity .* got"):
        audit(planted, similarity=similarity)
    with pytest.raises(ConfigError, match=r"^similarity .* got"):
        memorisation(*synthetic_and_training, similarity=similarity)


def test_memorisation_against_an_empty_training_set_is_refused(synthetic_and_training):
    synthetic, _ = synthetic_and_training
    with pytest.raises(DataError, match="training dataset is empty"):
        memorisation(synthetic, datasets.DatasetDict({"train": _split([])}))


# ----------------------------------------------------------------------------- CLI and the builders
@pytest.fixture()
def leaky_african(tmp_path) -> tuple[Path, str, str]:
    """An African source whose test image is a train image's pixels stored as RGB (other bytes)."""
    root = write_african_source(tmp_path / "src")
    train_image, test_image = (
        root / "Algeria" / "patient001_DZA_plane0.png",
        root / "Algeria" / "patient004_DZA_plane1.png",
    )
    assert train_image.is_file() and test_image.is_file()
    with Image.open(train_image) as image:
        test_image.write_bytes(png_bytes(image.convert("RGB")))
    return root, "patient001_DZA_plane0", "patient004_DZA_plane1"


def test_cli_audit_json_finds_the_leak_and_drop_removes_it(leaky_african, tmp_path):
    root, train_id, test_id = leaky_african
    runner = CliRunner()
    cache = tmp_path / "cache"
    args = ["data", "audit", "african", "--source", str(root), "--cache-dir", str(cache), "--json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.output[result.output.index("{") :])
    assert found["audit"]["exact_duplicate_pairs"] == 1
    assert found["audit"]["cross_split_duplicate_pairs"] == 1
    assert found["audit"]["near_duplicate_pairs"] == 0
    (pair,) = found["audit"]["pairs"]
    assert (pair["a"]["image_id"], pair["b"]["image_id"]) == (train_id, test_id)
    assert pair["label_disagrees"] and pair["patient_disagrees"]
    sizes = found["dataset"]["splits"]

    prepared = runner.invoke(
        main,
        [
            "data",
            "prepare",
            "african",
            "--source",
            str(root),
            "--cache-dir",
            str(cache),
            "--drop-test-duplicates",
        ],
    )
    assert prepared.exit_code == 0, prepared.output
    builder = make_builder("african", source=root, cache_dir=cache, drop_test_duplicates=True)
    splits = prepare("african", source=root, cache_dir=cache, drop_test_duplicates=True)
    assert len(splits["test"]) == sizes["test"] - 1 and len(splits["train"]) == sizes["train"]
    assert test_id not in splits["test"]["image_id"]
    provenance = load_provenance(builder)
    assert provenance["dropped_test_duplicates_of_train"] == 1
    assert provenance["dropped_test_ids"] == [test_id]

    clean = runner.invoke(main, [*args, "--drop-test-duplicates"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output[clean.output.index("{") :])["audit"]["cross_split_duplicate_pairs"] == 0


def test_drop_test_duplicates_names_an_undecodable_image(tmp_path):
    root = write_african_source(tmp_path / "src")
    broken = root / "Ghana" / "patient004_GHA_plane1.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = CliRunner().invoke(
        main,
        [
            "data",
            "prepare",
            "african",
            "--source",
            str(root),
            "--cache-dir",
            str(tmp_path / "c"),
            "--drop-test-duplicates",
        ],
    )
    assert result.exit_code != 0
    assert "Error:" in result.output and "patient004_GHA_plane1.png" in result.output
    assert "Traceback" not in result.output


def test_cli_memorisation_against_lora_100_with_report(tmp_path):
    cache = tmp_path / "cache"
    training_root = write_spanish_source(tmp_path / "real", per_plane=20, test_per_plane=0, seed=0)
    generated_root = write_spanish_source(tmp_path / "generated", per_plane=3, test_per_plane=0, seed=1)
    lora = prepare("spanish", "lora-100", source=training_root, cache_dir=cache)["train"]
    copied = lora[17]["image_id"]
    with Image.open(training_root / "Images" / f"{copied}.png") as image:
        planted = _noisy(_brighter(image.convert("L"), 5), 2, seed=9)
    target = sorted((generated_root / "Images").glob("*.png"))[4]
    planted.save(target)
    report = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        [
            "data", "audit", "spanish", "-c", "es", "--source", str(generated_root), "--cache-dir", str(cache),
            "--against", "spanish/lora-100", "--against-source", str(training_root), "--report", str(report),
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads(result.output[result.output.index("{") :])
    memo = found["memorisation"]
    assert found["against"] == "spanish/lora-100"
    assert memo["training_images"] == 100 and memo["synthetic_images"] == found["audit"]["images"]
    assert memo["memorised"] == 1
    (pair,) = memo["pairs"]
    assert pair["synthetic"]["image_id"] == target.stem and pair["training"]["image_id"] == copied
    assert found["audit"]["exact_duplicate_pairs"] == found["audit"]["near_duplicate_pairs"] == 0
    assert (report / "memorised_pairs.png").is_file() and "## Memorisation" in (
        report / "report.md"
    ).read_text()

    text = CliRunner().invoke(
        main,
        ["data", "audit", "spanish", "-c", "es", "--source", str(generated_root), "--cache-dir", str(cache),
         "--against", "spanish:lora-100", "--against-source", str(training_root)],
    )  # fmt: skip
    assert text.exit_code == 0, text.output
    assert "memorised against spanish/lora-100: 1 of" in text.output
    assert f"{target.stem} ~ train/{copied}" in text.output


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--threshold", "13"], "--threshold must be a whole number of pHash bits from 0 to 12, got 13"),
        (["--threshold", "-1"], "got -1"),
        (["--similarity", "1.5"], "--similarity must be a number greater than 0 and at most 1, got 1.5"),
        (["--against", "spanish/"], "--against must be NAME or NAME/CONFIG"),
        (["--against-source", "x"], "--against-source needs --against"),
    ],
)
def test_cli_bad_options_fail_before_building(tmp_path, option, message):
    # The source does not exist: a bad option must be reported before any build is attempted.
    result = CliRunner().invoke(
        main,
        [
            "data",
            "audit",
            "african",
            "--source",
            str(tmp_path / "absent"),
            "--cache-dir",
            str(tmp_path),
            *option,
        ],
    )
    assert result.exit_code == 2  # a bad option value (docs/cli.md)
    assert result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output


def test_cli_audit_text_output(leaky_african, tmp_path):
    root, train_id, test_id = leaky_african
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    result = CliRunner().invoke(
        main, ["data", "audit", "african", "--source", str(root), "--cache-dir", str(tmp_path / "cache")]
    )
    assert result.exit_code == 0, result.output
    assert "cross-split duplicate pairs: 1" in result.output
    assert f"exact: train/{train_id} ~ test/{test_id}" in result.output
    assert "modes L" in result.output and "RGB" in result.output
