"""The audit report's pictures (``fulora_data.audit.report``): a matplotlib class-count chart, paged pairs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fulora_data.audit.report import PAIRS_PER_PAGE, bar_chart, pair_pages


def _ref(k: int) -> dict:
    return {
        "split": "train",
        "index": k,
        "image_id": f"img{k:03d}",
        "label": "Fetal brain",
        "patient_id": str(k),
    }


def test_many_pairs_are_pages_of_readable_size_not_one_strip(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for k in range(2 * PAIRS_PER_PAGE + 5):
        image = Image.fromarray(rng.integers(0, 255, (60, 80), dtype=np.uint8))
        rows.append((image, _ref(2 * k), image, _ref(2 * k + 1), "exact\npHash 0"))
    names = pair_pages(rows, "exact_pairs", tmp_path)
    assert names == ["exact_pairs.png", "exact_pairs-2.png", "exact_pairs-3.png"]
    for name in names:
        with Image.open(tmp_path / name) as page:
            page.load()
            assert page.format == "PNG"
            # A page to read: neither a long strip nor a poster.
            assert 600 <= page.width <= 2000 and 200 <= page.height <= 2000
            assert page.height / page.width < 2


def test_class_counts_are_a_matplotlib_chart_with_every_class(tmp_path):
    pytest.importorskip("matplotlib")
    counts = {"train": {"Fetal brain": 120, "Fetal femur": 7}, "test": {"Fetal brain": 30, "Fetal femur": 2}}
    path = bar_chart("Images per class and split", counts, tmp_path / "class_counts.png")
    with Image.open(path) as chart:
        chart.load()
        assert chart.format == "PNG" and 500 <= chart.width <= 2000 and 300 <= chart.height <= 1200
        colours = {tuple(c) for c in np.asarray(chart.convert("RGB")).reshape(-1, 3)[::7]}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # one colour per split
