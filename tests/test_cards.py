"""Dataset cards: Hub metadata that parses, numbers equal to the built data's, merging over an old card."""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter

import datasets
from huggingface_hub import DatasetCard
from PIL import Image

from fulora_data import samples
from fulora_data.cards import render_card, summarize
from fulora_data.prepare import build, column, make_builder


def _card(tmp_path, name, config, source, **options):
    builder = make_builder(name, config, source=source, cache_dir=tmp_path / "cache", **options)
    splits = build(builder)
    summary = summarize(builder, splits)
    return splits, summary, DatasetCard(render_card(name, {config: summary}))


def _table_rows(text: str, first: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith(f"| {first}")
    ]


def test_spanish_card_numbers_come_from_the_data(tmp_path):
    archive = samples.write_spanish_source(tmp_path / "src", per_plane=4, test_per_plane=2, archive=True)
    splits, summary, card = _card(tmp_path, "spanish", "full", archive, drop_test_duplicates=True)
    data = card.data
    assert data.license == "cc-by-4.0" and data.task_categories == ["image-classification"]
    assert data.size_categories == ["n<1K"] and data.pretty_name
    assert data.configs[0]["config_name"] == "full"
    assert {f["split"] for f in data.configs[0]["data_files"]} == {"train", "test"}
    info = datasets.info.DatasetInfosDict.from_dataset_card_data(data)["full"]
    assert info.features == splits["train"].features
    assert {s: i.num_examples for s, i in info.splits.items()} == {s: len(d) for s, d in splits.items()}
    names = splits["train"].features["label"].names
    for split, dataset in splits.items():
        (row,) = _table_rows(card.text, split + " |")
        counts = Counter(column(dataset, "label"))
        assert row[1:] == [str(len(dataset)), *(str(counts[i]) for i in range(len(names)))]
        sizes = Counter()
        for value in dataset.cast_column("image", datasets.Image(decode=False))["image"]:
            sizes[Image.open(io.BytesIO(value["bytes"])).size] += 1
        (image_row,) = _table_rows(card.text, f"full | {split} |")
        assert image_row[3] == f"{min(w for w, _ in sizes)}-{max(w for w, _ in sizes)}"
        assert image_row[5] == str(len(sizes))
    assert hashlib.md5(archive.read_bytes()).hexdigest() in card.text
    dropped = summary["provenance"]["dropped_test_duplicates_of_train"]
    assert f"{dropped} test images whose pixels equal a training image's were removed" in card.text
    assert "@article{burgos2020fetalplanes" in card.text and "2407.20072" in card.text
    assert "[!WARNING]" not in card.text


def test_synthetic_card_warns_and_cites(tmp_path):
    zip_path, _ = samples.write_synthetic_release(tmp_path / "src", per_plane=2)
    _, _, card = _card(tmp_path, "synthetic", "release", zip_path, verify_checksum=False)
    assert "[!WARNING]" in card.text and "not be used for clinical purposes" in card.text
    assert "@misc{wang2024fulora" in card.text and "@article{burgos2020fetalplanes" in card.text
    assert "does NOT match" in card.text  # a local archive, honestly labelled
    assert "synthetic" in card.data.tags


def test_rendering_merges_an_existing_card(tmp_path):
    zip_path, _ = samples.write_synthetic_release(tmp_path / "src", per_plane=1)
    builder = make_builder("synthetic", source=zip_path, cache_dir=tmp_path / "cache", verify_checksum=False)
    summary = summarize(builder, build(builder))
    old = (
        "---\nlanguage:\n- en\npretty_name: My synthetic set\ntags:\n- my-tag\nconfigs:\n- config_name: other\n"
        "  data_files: data/other/*.parquet\n---\n\n# My synthetic set\n\nHand-written intro.\n\n"
        "<!-- fulora:begin -->\nstale\n<!-- fulora:end -->\n\nHand-written footer.\n"
    )
    card = DatasetCard(render_card("synthetic", {"release": summary}, existing=old))
    assert card.data.language == ["en"] and card.data.pretty_name == "My synthetic set"
    assert "my-tag" in card.data.tags and "fulora" in card.data.tags
    assert [c["config_name"] for c in card.data.configs] == ["other", "release"]
    assert "Hand-written intro." in card.text and "Hand-written footer." in card.text
    assert "stale" not in card.text and re.search(r"\| train \| 5 \|", card.text)


def test_cards_name_sources_by_file_and_checksum_never_by_local_path(tmp_path):
    """A card is public: it must not leak where the publisher keeps the files."""
    secret = tmp_path / "private-home-of-the-publisher"
    folder = samples.write_spanish_source(secret / "es", per_plane=2, test_per_plane=1)
    listing = secret / "my_list.csv"
    rows = (folder / "FETAL_PLANES_DB_data.csv").read_text(encoding="utf-8-sig").splitlines()[1:]
    train = [r.split(";")[0] for r in rows if r.rstrip().endswith(";1") and "_Plane2_" in r]
    listing.write_text("Image_name\n" + "\n".join(train))
    _, _, card = _card(tmp_path, "spanish", "es", folder, subset_csv=listing)
    zip_path, labels = samples.write_synthetic_release(secret / "syn", per_plane=2, layout="flat")
    _, _, synthetic = _card(tmp_path, "synthetic", "release", zip_path, labels=labels, verify_checksum=False)
    for text in (card.text, synthetic.text):
        assert str(secret) not in text and "private-home" not in text
    # An extracted folder's name is the publisher's: the card says it was a folder, not what it is called.
    assert "- source: folder\n" in card.text and "`FETAL_PLANES_DB`" not in card.text
    assert hashlib.sha256(listing.read_bytes()).hexdigest() in card.text
    assert hashlib.sha256(labels.read_bytes()).hexdigest() in synthetic.text


def test_image_statistics_read_png_headers_as_pil_does():
    import io

    import numpy as np
    from PIL import Image

    from fulora_data.cards import _pil_header, _png_header

    pixels = np.random.default_rng(0).integers(0, 255, (7, 5), dtype=np.uint8)
    for mode in ("L", "RGB", "P", "LA", "RGBA", "1", "I;16"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
        data = buffer.getvalue()
        fast = _png_header(data)
        assert fast is None or fast == _pil_header(data), mode
        assert (fast is None) == (mode in ("1", "I;16")), mode  # other bit depths go through PIL


def test_every_dataset_card_field_is_one_the_hub_documents(tmp_path):
    """task_ids, annotations_creators and source_datasets are set per dataset, each from the Hub's vocabulary."""
    from card_rules import check_dataset_card

    spanish = samples.write_spanish_source(tmp_path / "src", per_plane=2, test_per_plane=1)
    zip_path, labels = samples.write_synthetic_release(tmp_path / "syn", per_plane=2, layout="flat")
    cards = {
        "spanish": _card(tmp_path, "spanish", "es", spanish)[2],
        "synthetic": _card(tmp_path, "synthetic", "release", zip_path, labels=labels, verify_checksum=False)[2],
    }
    expected = {"spanish": ["expert-generated"], "synthetic": ["machine-generated"]}
    for name, card in cards.items():
        raw = check_dataset_card(str(card))
        assert raw["task_ids"] == ["multi-class-image-classification"]
        assert raw["annotations_creators"] == expected[name]
        assert raw["source_datasets"] == ["original"]
    assert f"`{spanish.name}`" not in cards["spanish"].text  # the source folder's own name stays local
