"""The generated folder's contact sheet (``fulora_data.generation.card.contact_sheet``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fulora_data.generation.card import THUMBNAIL, contact_sheet
from fulora_data.samples import png_bytes, render_plane_image

PLANES = ["Fetal brain", "Fetal femur"]
SAMPLERS = {"euler": "EulerDiscreteScheduler", "unipc": "UniPCMultistepScheduler"}


def _generated(folder: Path, per_cell: int = 2, size=(64, 48)) -> Path:
    from fulora_data.generated import GeneratedWriter, GenerationRecord
    from fulora_data.taxonomy import prompt_for

    rng = np.random.default_rng(0)
    index = 0
    with GeneratedWriter(folder, shard_size=50, info={"command": "tests"}) as writer:
        for plane in PLANES:
            for scheduler in SAMPLERS.values():
                for _ in range(per_cell):
                    record = GenerationRecord(
                        image_id=f"{index:05d}-{100 + index}", plane=plane, prompt=prompt_for(plane),
                        negative_prompt="", sampler=scheduler, steps=20, guidance_scale=7.5, seed=100 + index,
                        width=size[0], height=size[1], base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
                        base_model_revision="0" * 40, adapter="fulora/lora-rank8", adapter_revision="1" * 40,
                        lora_rank=8, generation_index=index,
                    )  # fmt: skip
                    writer.add(png_bytes(render_plane_image(plane, size, rng)), record)
                    index += 1
    return folder


def test_contact_sheet_has_large_labelled_thumbnails(tmp_path):
    folder = _generated(tmp_path / "gen")
    path = contact_sheet(folder, per_cell=2)
    with Image.open(path) as sheet:
        sheet.load()
        assert sheet.format == "PNG"
        gray = np.asarray(sheet.convert("L"))
    # 64 x 48 images are shown at THUMBNAIL px wide: 2 samplers x 2 images per row, 2 rows.
    assert THUMBNAIL >= 256
    assert sheet.width >= 4 * THUMBNAIL and sheet.height >= 2 * THUMBNAIL * 48 // 64
    assert sheet.width < 4000 and sheet.height < 4000  # a picture to read, not a strip
    # The header band (sampler names) and the band under the first row's thumbnails (seeds) hold text.
    assert gray[:40, 160:].min() < 128
    first_row_bottom = 40 + THUMBNAIL * 48 // 64
    assert gray[first_row_bottom + 2 : first_row_bottom + 20, 160:].min() < 128
    # The plane labels column is drawn, left of the thumbnails.
    assert gray[40:first_row_bottom, :150].min() < 128


def test_generation_card_yaml_is_what_the_hub_documents(tmp_path):
    from card_rules import check_dataset_card

    from fulora_data.generation.card import render_card

    settings = {
        "planes": PLANES,
        "samplers": list(SAMPLERS),
        "per_plane": 2,
        "prompts": {plane: f"a photo of {plane.lower()}" for plane in PLANES},
        "base_model": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "base_model_revision": "0" * 40,
        "adapter_scale": 1.0,
    }
    counts = {plane: {"euler": 2, "unipc": 2} for plane in PLANES}
    card = render_card(settings, counts, None, {"checked": False, "note": "skipped"})
    raw = check_dataset_card(card)
    assert raw["annotations_creators"] == ["machine-generated"]  # the label is the prompt's plane
    assert "| Fetal brain | `a photo of fetal brain` | 2 | 2 |" in card
