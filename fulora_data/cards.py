"""Dataset cards: rendered from ``cards/dataset_card.md`` with every number computed from the built data.

A card has Hub metadata (YAML: license, task, tags, size category, pretty name, ``configs`` with their
``data_files`` and ``dataset_info`` with features and split sizes) and prose. ``summarize`` computes what a
config's card needs from a built dataset (sizes, counts per class and source, image sizes and modes read
from the image headers, provenance with checksums); ``render_card`` turns the summaries of one or more
configs into the card text.

Rendering over an existing card merges, never drops: ``configs`` and ``dataset_info`` entries are merged by
config name (``datasets``' own merge, the one ``push_to_hub`` uses), tags and task categories are unions,
other keys already set (say a hand-edited ``pretty_name`` or ``language``) keep their value, and the body
outside the ``<!-- fulora:begin -->``/``<!-- fulora:end -->`` markers is kept as it is.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from fulora_data.builders import get_builder_class
from fulora_data.taxonomy import PLANES_WITH_CERVIX, PROMPTS

TEMPLATE = "dataset_card.md"  # in cards/, read with template()
BEGIN, END = "<!-- fulora:begin", "<!-- fulora:end -->"

PRETTY_NAMES = {
    "spanish": "FETAL_PLANES_DB: maternal-fetal ultrasound planes (Barcelona)",
    "african": "Fetal ultrasound planes from five African countries",
    "synthetic": "FU-LoRA synthetic fetal ultrasound planes",
    "hybrid": "FU-LoRA hybrid (real + synthetic) fetal ultrasound planes",
}
HOW_MADE = {
    "spanish": (
        "Images and metadata come unchanged from FETAL_PLANES_DB (Burgos-Artizzu et al. 2020): 12,400 "
        "ultrasound images from two Barcelona hospitals, labelled by an expert clinician. fulora's configs "
        "select classes and, for the study's subsets, draw images per plane with a seeded rule or keep a "
        "published list."
    ),
    "african": (
        "Images and metadata come unchanged from the African fetal planes set (Sendra-Balcells et al. 2023): "
        "450 images of four planes from five centres with low-resource equipment. The FU-LoRA study tests "
        "its classifiers zero-shot on the 233-image test split."
    ),
    "synthetic": (
        "Stable Diffusion 1.5 was fine-tuned with LoRA on 100 FETAL_PLANES_DB images (20 per plane) and "
        "prompted with one text per plane (see the taxonomy). The study's release holds 5,000 images, 1,000 "
        "per plane, sampled with Euler and UniPC from the rank-128 adapter; the release does not record "
        "which sampler made which image, so `sampler` is empty for it, while `seed` and `generation_index` "
        "are parsed from the file names."
    ),
    "synthetic/generated": (
        "Images made by fulora's generator from a Stable Diffusion 1.5 base and a LoRA adapter, prompted with "
        "one text per plane (see the taxonomy). Every image records its base model and revision, adapter and "
        "revision, rank, prompt, sampler, steps, guidance, seed and size."
    ),
    "hybrid": (
        "Real images of the `spanish` dataset and synthetic images of the `synthetic` dataset, assembled by "
        "row selection from both built datasets (no image is re-encoded). Real rows have empty generation "
        "columns; synthetic rows have empty real-metadata columns and no patient. The validation split is "
        "drawn by a seeded rule that keeps all images of one patient on the same side."
    ),
}
INTENDED_USE = (
    "Research on fetal-ultrasound standard-plane classification, data augmentation with synthetic images, "
    "and domain shift (training on Spanish data, testing zero-shot on African data). Not for clinical use: "
    "no model trained on these data is validated for diagnosis."
)
LIMITATIONS = {
    "spanish": (
        "All real images come from two hospitals in one country (Barcelona, Spain), taken with a few ultrasound "
        "machines by a small team of operators, so a model trained on them learns those machines, settings "
        "and populations; the FU-LoRA study measures how much accuracy is lost on African data. Classes are "
        "imbalanced (`Other` is the largest), and labels are one expert's."
    ),
    "african": (
        "A small set (450 images) from five centres with low-resource equipment; a country's test split has "
        "a few dozen images, so per-country figures have wide uncertainty. Only four standard planes (no "
        "`Other`), and each centre's machines, operators and protocols differ."
    ),
    "synthetic": (
        "Synthetic images are not patients: they were sampled from a diffusion model fine-tuned on 100 Spanish "
        "images, so they inherit that small set's machines, operators and biases, and may show anatomy that "
        "does not exist. Their labels are the prompt's plane, not an expert's reading of the image."
    ),
}
LIMITATIONS["hybrid"] = f"{LIMITATIONS['spanish']}\n\n{LIMITATIONS['synthetic']}"
PERSONAL = {
    "spanish": (
        "The images are published de-identified by the source (FETAL_PLANES_DB, Zenodo record 3904280): they "
        "carry a numeric patient id and acquisition metadata (operator, machine), no names or dates of birth; "
        "see the source's record for its statement. fulora adds no personal data and re-encodes no image."
    ),
    "african": (
        "The images are published de-identified by the source (Zenodo record 7540448): they carry a country, a "
        "patient number and a plane, no names or dates of birth; see the source's record for its statement. "
        "fulora adds no personal data and re-encodes no image."
    ),
    "synthetic": (
        "None: the images are generated and show no patient. They derive from a model fine-tuned on 100 "
        "de-identified FETAL_PLANES_DB images; `fulora data audit --against spanish/lora-100` checks them for "
        "memorised training images."
    ),
}
PERSONAL["hybrid"] = f"Real rows: {PERSONAL['spanish']}\n\nSynthetic rows: {PERSONAL['synthetic']}"
# Configs whose rows are (image, prompt) pairs made for, or by, text-to-image training.
TEXT_TO_IMAGE = {"synthetic", "hybrid", "spanish/lora-100"}

SYNTHETIC_WARNING = (
    '> [!WARNING]\n> Synthetic images in this dataset (`source == "synthetic"`) were generated by a diffusion '
    "model. They are not images of real patients or pregnancies, may contain anatomically implausible "
    "content, and must not be used for clinical purposes or presented as real ultrasound.\n"
)
TAGS = ["medical", "ultrasound", "fetal-ultrasound", "image-classification", "fulora"]
# Who made the labels (DatasetCardData's annotations_creators vocabulary): an expert clinician for the real
# sets, the generator (the prompt's plane) for synthetic images.
ANNOTATIONS = {
    "spanish": ["expert-generated"],
    "african": ["expert-generated"],
    "synthetic": ["machine-generated"],
    "hybrid": ["expert-generated", "machine-generated"],
}
# The real sets and the synthetic images are published here as their sources made them ("original"); the
# hybrid assembles rows of two other datasets ("extended").
SOURCE_DATASETS = {"spanish": ["original"], "african": ["original"], "synthetic": ["original"], "hybrid": ["extended"]}


def template(name: str) -> str:
    """The text of a card template of the repository's ``cards/`` folder, e.g. ``template("lora_card.md")``.

    An installed wheel carries the templates as package data (``fulora_data/templates``, copied from
    ``cards/`` by ``setup.py``), read with ``importlib.resources``; a source checkout or an editable install
    reads ``cards/`` in place.

    Raises:
        ConfigError: If ``name`` is not a bare ``*.md`` file name.
        SourceNotFoundError: If no such template exists (a broken installation, or a typo).
    """
    from importlib.resources import files

    from fulora_data.errors import ConfigError, SourceNotFoundError

    if not (isinstance(name, str) and re.fullmatch(r"[\w.-]+\.md", name)) or name.startswith("."):
        raise ConfigError(f"a card template is a file name like 'dataset_card.md', got {name!r}")
    packaged = files("fulora_data").joinpath("templates", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[1] / "cards" / name
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise SourceNotFoundError(
        f"card template {name!r} is missing: neither fulora_data/templates nor cards/ has it"
    )


_read_template = template  # render_card's ``template`` argument shadows the function's name


# ---------------------------------------------------------------------- summaries
def image_stats(dataset: datasets.Dataset) -> dict[str, Any]:
    """Count image modes and sizes from the image headers, without decoding pixels.

    Returns:
        ``{"modes": {mode: n}, "sizes": {"distinct": n, "min": [w, h], "max": [w, h], "common": [[w, h, n]]}}``.
    """
    modes: Counter = Counter()
    sizes: Counter = Counter()
    if len(dataset):
        table_view = dataset.select_columns(["image"]).with_format("arrow")
        for batch in table_view.iter(batch_size=512):
            for data in batch.column("image").combine_chunks().field("bytes").to_pylist():
                mode, size = _png_header(data) or _pil_header(data)
                modes[mode] += 1
                sizes[size] += 1
    widths = [w for w, _ in sizes] or [0]
    heights = [h for _, h in sizes] or [0]
    return {
        "modes": dict(sorted(modes.items())),
        "sizes": {
            "distinct": len(sizes),
            "min_width": min(widths),
            "max_width": max(widths),
            "min_height": min(heights),
            "max_height": max(heights),
            "common": [[w, h, n] for (w, h), n in sizes.most_common(5)],
        },
    }


# PNG colour types at 8 bits per sample, and the mode PIL reports for them.
_PNG_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}


def _png_header(data: bytes) -> tuple[str, tuple[int, int]] | None:
    """Mode and size from a PNG's IHDR chunk (the first 26 bytes), or None for anything PIL must read.

    Reading 26 bytes instead of opening the file with PIL makes the card's statistics a small part of an
    export (``benchmarks/bench_hybrid.py``).
    """
    if len(data) < 26 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or data[24] != 8:
        return None
    mode = _PNG_MODES.get(data[25])
    if mode is None:
        return None
    return mode, (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))


def _pil_header(data: bytes) -> tuple[str, tuple[int, int]]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.mode, image.size


def summarize(builder, splits: datasets.DatasetDict) -> dict[str, Any]:
    """Compute everything a config's card says about a built dataset.

    Args:
        builder: The (built) fulora builder.
        splits: Its splits, as returned by ``fulora_data.prepare.build``.

    Returns:
        A JSON-ready dict (stored in an export's manifest so a later export can re-render the card).
    """
    from fulora_data.prepare import column, describe

    described = describe(builder, splits)
    out_splits = {}
    for split, dataset in splits.items():
        out_splits[split] = {
            "num_examples": len(dataset),
            "label_counts": described["label_counts"][split],
            "source_counts": dict(sorted(Counter(column(dataset, "source")).items())),
            "num_patients": described["num_patients"][split],
            **image_stats(dataset),
        }
    features = next(iter(splits.values())).features
    return {
        "name": builder.NAME,
        "config": builder.config.name,
        "version": str(builder.config.version),
        "default": builder.config.name == builder.DEFAULT_CONFIG_NAME,
        "description": builder.config.description or "",
        "features": features.to_dict(),
        "label_names": described["label_names"],
        "splits": out_splits,
        "provenance": described["provenance"],
    }


# ---------------------------------------------------------------------- rendering
def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "1M<n<10M"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _counts_section(summaries: dict[str, dict]) -> str:
    parts = []
    for config, summary in summaries.items():
        names = summary["label_names"]
        rows = [
            [split, s["num_examples"], *(s["label_counts"][n] for n in names)]
            for split, s in summary["splits"].items()
        ]
        text = f"### `{config}`\n\n{summary['description']}\n\n" + _table(["split", "images", *names], rows)
        sources = {src for s in summary["splits"].values() for src in s["source_counts"]}
        if len(sources) > 1 or "synthetic" in sources:
            src_rows = [
                [split, *(s["source_counts"].get(src, 0) for src in sorted(sources))]
                for split, s in summary["splits"].items()
            ]
            text += "\n\nImages per source:\n\n" + _table(["split", *sorted(sources)], src_rows)
        patients = [
            f"{split} {s['num_patients']}" for split, s in summary["splits"].items() if s["num_patients"]
        ]
        if patients:
            text += f"\n\nPatients: {', '.join(patients)}."
        dropped = summary["provenance"].get("dropped_test_duplicates_of_train")
        if dropped is not None:
            text += (
                f"\n\n{dropped} test images whose pixels equal a training image's were removed from the test "
                "split (`drop_test_duplicates`), so the test split does not leak training images."
            )
        parts.append(text)
    return "\n\n".join(parts)


def _images_section(summaries: dict[str, dict]) -> str:
    rows = []
    for config, summary in summaries.items():
        for split, s in summary["splits"].items():
            sz = s["sizes"]
            modes = ", ".join(f"{mode} {n}" for mode, n in s["modes"].items())
            common = ", ".join(f"{w}x{h} ({n})" for w, h, n in sz["common"])
            rows.append(
                [
                    config,
                    split,
                    modes,
                    f"{sz['min_width']}-{sz['max_width']}",
                    f"{sz['min_height']}-{sz['max_height']}",
                    sz["distinct"],
                    common,
                ]
            )
    return _table(
        ["config", "split", "stored modes", "width", "height", "distinct sizes", "most common sizes"], rows
    )


def _source_lines(provenance: dict, indent: str = "") -> list[str]:
    lines = []
    source = provenance.get("source")
    if source:
        # A card is public: name the file or URL, never the publisher's local path.
        location = source.get("location") or ""
        where = location if source.get("kind") == "download" else source.get("archive")
        # An extracted folder's name is the publisher's own: the card says only that it was a folder.
        lines.append(f"{indent}- source: {source.get('kind')}" + (f" `{where}`" if where else ""))
        if "md5" in source:
            lines.append(
                f"{indent}  - md5 `{source['md5']}`, sha256 `{source['sha256']}`, {source['num_bytes']} bytes"
            )
            expected = source.get("expected_md5")
            if expected:
                verdict = "matches" if expected == source["md5"] else "does NOT match"
                lines.append(f"{indent}  - published md5 `{expected}`: the archive {verdict} it")
            else:
                lines.append(f"{indent}  - no published checksum to compare with")
        else:
            lines.append(f"{indent}  - built from an extracted folder: no archive checksum")
    if "subset" in provenance:
        lines.append(f"{indent}- subset: `{json.dumps(provenance['subset'], sort_keys=True)}`")
    if "labels_from" in provenance:
        lines.append(f"{indent}- labels from: `{json.dumps(provenance['labels_from'])}`")
    generated = provenance.get("generated")
    if generated:
        lines.append(
            f"{indent}- generated folder: {generated['num_images']} images in {len(generated['shards'])} shards"
        )
        lines.append(f"{indent}  - each shard's file name and sha256 are in `fulora_export.json`")
    for part, inner in provenance.get("parts", {}).items():
        lines.append(
            f"{indent}- {part} part: `{inner.get('builder')}` config `{inner.get('config')}` {inner.get('version')}"
        )
        lines += _source_lines(inner, indent + "  ")
    for key in ("synthetic_draw", "validation"):
        if key in provenance:
            lines.append(
                f"{indent}- {key.replace('_', ' ')}: `{json.dumps(provenance[key], sort_keys=True)}`"
            )
    return lines


def doi(homepage: str) -> str | None:
    """The DOI of a Zenodo record URL (``https://zenodo.org/records/N`` -> ``10.5281/zenodo.N``), else None."""
    match = re.fullmatch(r"https://zenodo\.org/records?/(\d+)/?", homepage or "")
    return f"10.5281/zenodo.{match[1]}" if match else None


def _origin(provenance: dict) -> str:
    """Where a config's images come from: a DOI for a published source, or fulora's generator."""
    if provenance.get("generated"):
        return "Images made by fulora's generator (no published source); provenance per image in the data."
    parts = provenance.get("parts")
    if parts:
        return " ".join(_origin(inner) for inner in parts.values())
    try:
        cls = get_builder_class(provenance.get("builder", ""))
    except Exception:  # an unknown builder name in an old manifest: say nothing rather than guess
        return ""
    found = doi(cls.HOMEPAGE)
    where = f"DOI [{found}](https://doi.org/{found})" if found else cls.HOMEPAGE
    return f"`{cls.NAME}` source: {where}."


def _sources_section(summaries: dict[str, dict], cls) -> str:
    parts = []
    for config, summary in summaries.items():
        origin = _origin(summary["provenance"])
        parts.append(
            f"### `{config}` ({summary['version']})\n\n"
            + (f"{origin}\n\n" if origin else "")
            + "\n".join(_source_lines(summary["provenance"]))
        )
    return "\n\n".join(parts)


def _columns_section(summaries: dict[str, dict]) -> str:
    seen: dict[str, str] = {}
    for summary in summaries.values():
        for name, feature in datasets.Features.from_dict(summary["features"]).items():
            seen.setdefault(
                name,
                type(feature).__name__
                + (f"({feature.dtype})" if isinstance(feature, datasets.Value) else ""),
            )
    return ", ".join(f"`{name}` {kind}" for name, kind in seen.items())


def _citations(cls) -> str:
    from fulora_data.builders.spanish import SpanishBuilder
    from fulora_data.builders.synthetic import STUDY_CITATION

    entries = [STUDY_CITATION]
    for text in (cls.CITATION, SpanishBuilder.CITATION if cls.NAME == "synthetic" else ""):
        for entry in text.split("\n\n"):
            if entry.strip() and entry.strip() not in (e.strip() for e in entries):
                entries.append(entry.strip())
    return "\n\n".join(entries)


def _metadata(
    name: str, summaries: dict[str, dict], cls, existing: DatasetCardData | None
) -> DatasetCardData:
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    data = DatasetCardData(**(existing.to_dict() if existing is not None else {}))
    synthetic = any(
        "synthetic" in s["source_counts"] for m in summaries.values() for s in m["splits"].values()
    )
    prompts = any(name in TEXT_TO_IMAGE or f"{name}/{config}" in TEXT_TO_IMAGE for config in summaries)
    ours = {
        "license": cls.LICENSE,
        "pretty_name": PRETTY_NAMES.get(name, name),
        "task_categories": ["image-classification"] + (["text-to-image"] if prompts else []),
        "task_ids": ["multi-class-image-classification"],
        "annotations_creators": ANNOTATIONS.get(name, ["other"]),
        "source_datasets": SOURCE_DATASETS.get(name, ["original"]),
        "tags": TAGS + (["synthetic", "stable-diffusion", "lora"] if synthetic else []),
    }
    for key, value in ours.items():
        current = data.get(key)
        if isinstance(value, list):
            data[key] = list(dict.fromkeys([*(current or []), *value]))
        elif current in (None, "", []):
            data[key] = value
    configs, infos = {}, {}
    for config, summary in summaries.items():
        entry = {
            "data_files": [
                {"split": split, "path": f"data/{config}/{split}-*"} for split in summary["splits"]
            ]
        }
        if summary["default"]:
            entry["default"] = True
        configs[config] = entry
        split_dict = datasets.SplitDict()
        for split, s in summary["splits"].items():
            split_dict.add(
                datasets.SplitInfo(
                    name=split, num_examples=s["num_examples"], num_bytes=s.get("num_bytes", 0)
                )
            )
        infos[config] = datasets.DatasetInfo(
            features=datasets.Features.from_dict(summary["features"]),
            splits=split_dict,
            dataset_size=sum(s.get("num_bytes", 0) for s in summary["splits"].values()),
            download_size=sum(s.get("parquet_bytes", 0) for s in summary["splits"].values()),
        )
    MetadataConfigs(configs).to_dataset_card_data(data)
    DatasetInfosDict(infos).to_dataset_card_data(data)
    largest = max(
        [sum(s["num_examples"] for s in m["splits"].values()) for m in summaries.values()]
        + [_existing_largest(data)]
    )
    data["size_categories"] = [_size_category(largest)]
    return data


def _existing_largest(data: DatasetCardData) -> int:
    infos = data.get("dataset_info") or []
    infos = [infos] if isinstance(infos, dict) else infos
    return max([sum(s.get("num_examples", 0) for s in info.get("splits", [])) for info in infos] + [0])


def render_card(
    name: str,
    summaries: dict[str, dict],
    *,
    existing: str | None = None,
    repo_id: str | None = None,
    template: str | Path | None = None,
    release: str | None = None,
) -> str:
    """Render a dataset card for one or more configs of a dataset.

    Args:
        name: The dataset (``fulora data list``).
        summaries: ``{config: summarize(...)}`` for every config the card describes.
        existing: The current README text, whose metadata and outside-marker prose are kept.
        repo_id: The Hub repository named in the loading example (default ``fulora/<name>``).
        template: Another template file (Jinja syntax, as ``DatasetCard.from_template`` reads it: the
            front matter is ``{{ card_data }}``, placeholders as in ``cards/dataset_card.md``).
        release: The release version (the export's, tagged ``v<release>``); default: the data version.

    Returns:
        The card, YAML front matter included.
    """
    from fulora_data.hub_pull import dataset_repo_id

    cls = get_builder_class(name)
    old = DatasetCard(existing) if existing else None
    data = _metadata(name, summaries, cls, old.data if old else None)
    synthetic = any(
        "synthetic" in s["source_counts"] for m in summaries.values() for s in m["splits"].values()
    )
    taxonomy_names = max((m["label_names"] for m in summaries.values()), key=len)
    taxonomy = _table(
        ["label", "plane", "prompt"], [[i, n, f"`{PROMPTS[n]}`"] for i, n in enumerate(taxonomy_names)]
    )
    if name == "spanish" and len(taxonomy_names) < len(PLANES_WITH_CERVIX):
        taxonomy += f"\n\n`{PLANES_WITH_CERVIX[-1]}` is label 5 only in configs that keep it."
    example = next((c for c, m in summaries.items() if m["default"]), next(iter(summaries)))
    release = release or next(iter(summaries.values()))["version"]
    text = Path(template).read_text(encoding="utf-8") if template else _read_template(TEMPLATE)
    card = DatasetCard.from_template(
        data,
        template_str=text,
        pretty_name=data.get("pretty_name") or PRETTY_NAMES.get(name, name),
        warning=SYNTHETIC_WARNING if synthetic else "",
        description=cls.DESCRIPTION,
        config_list=", ".join(f"`{c}`" for c in summaries),
        repo_hint=repo_id or dataset_repo_id(name),
        example_config=example,
        release=release,
        how_made=_how_made(name, summaries, cls),
        limitations=LIMITATIONS.get(name, ""),
        personal=PERSONAL.get(name, ""),
        taxonomy=taxonomy,
        counts=_counts_section(summaries),
        images=_images_section(summaries),
        columns=_columns_section(summaries),
        sources=_sources_section(summaries, cls),
        intended_use=INTENDED_USE,
        license=f"`{cls.LICENSE}`, the license of the source data. fulora's code is MIT-licensed.",
        citation=_citations(cls),
    )
    body = card.text
    if old is not None:
        body = _merge_body(old.text, body)
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n"))


def _how_made(name: str, summaries: dict[str, dict], cls) -> str:
    """The how-it-was-made text, per kind of config in the card (release and generated differ)."""
    if name != "synthetic":
        return HOW_MADE.get(name, cls.DESCRIPTION)
    kinds = {"generated" if m["provenance"].get("generated") else "release" for m in summaries.values()}
    texts = [HOW_MADE["synthetic"]] if "release" in kinds else []
    return "\n\n".join(texts + ([HOW_MADE["synthetic/generated"]] if "generated" in kinds else []))


def _merge_body(old: str, new: str) -> str:
    """Replace the generated block of an old body, keeping everything outside the markers."""
    start, end = old.find(BEGIN), old.find(END)
    if start == -1 or end == -1:
        return new.rstrip() + ("\n\n" + old.strip() if old.strip() else "")
    title_end = new.find(BEGIN)
    block = new[title_end : new.find(END) + len(END)]
    return old[:start] + block + old[end + len(END) :]
