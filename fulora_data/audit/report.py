"""The audit's report for people: Markdown with figures and side-by-side image pairs, drawn with Pillow.

Everything is written into a temporary folder beside the target and moved in only when complete, so an
interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import datasets
from PIL import Image, ImageDraw, ImageFont

from fulora_data.io import write_report_folder
from fulora_data.pixels import decode_gray

REPORT_FILES = (
    "report.md",
    "audit.json",
    "class_counts.png",
    "exact_pairs.png",
    "near_pairs.png",
    "nearest_similarity.png",
    "memorised_pairs.png",
)
"""Every file a report may hold: a new report removes those of an earlier one that it does not write."""

MAX_PAIRS_SHOWN = 40
"""Pairs drawn in each PNG and listed in each Markdown table; the JSON holds all of them."""

_TILE = 160
_CAPTION = 28
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


class _Images:
    """Reads a few images of a ``DatasetDict`` by reference, from the stored bytes."""

    def __init__(self, splits: datasets.DatasetDict):
        self._splits = splits
        self._raw: dict[str, datasets.Dataset] = {}

    def get(self, ref: dict) -> Image.Image:
        split = ref["split"]
        if split not in self._raw:
            self._raw[split] = self._splits[split].cast_column("image", datasets.Image(decode=False))
        image = self._raw[split][ref["index"]]["image"]
        data = image["bytes"] if image["bytes"] is not None else Path(image["path"]).read_bytes()
        return decode_gray(data)


def _tile(image: Image.Image) -> Image.Image:
    image = image.copy()
    image.thumbnail((_TILE, _TILE))
    tile = Image.new("L", (_TILE, _TILE), 255)
    tile.paste(image, ((_TILE - image.width) // 2, (_TILE - image.height) // 2))
    return tile


def _caption(ref: dict) -> str:
    return f"{ref['split']} {ref['image_id']}\n{ref['label'] or '-'} / patient {ref['patient_id'] or '-'}"


def pair_grid(rows: list[tuple[Image.Image, dict, Image.Image, dict, str]]) -> Image.Image:
    """Draw pairs side by side, one pair per row, each image with its split, id, label and patient.

    Args:
        rows: ``(left image, left ref, right image, right ref, note)`` per pair.

    Returns:
        An RGB image.
    """
    font = ImageFont.load_default()
    width, row_height = 2 * _TILE + 3 * 8 + 150, _TILE + _CAPTION + 8
    grid = Image.new("RGB", (width, max(1, len(rows)) * row_height), "white")
    draw = ImageDraw.Draw(grid)
    for k, (left, left_ref, right, right_ref, note) in enumerate(rows):
        top = k * row_height
        for column, (image, ref) in enumerate(((left, left_ref), (right, right_ref))):
            x = 8 + column * (_TILE + 8)
            grid.paste(_tile(image).convert("RGB"), (x, top + 4))
            draw.multiline_text((x, top + _TILE + 5), _caption(ref), fill="black", font=font, spacing=1)
        draw.multiline_text((2 * _TILE + 24, top + 8), note, fill="black", font=font, spacing=2)
    return grid


def bar_chart(title: str, groups: dict[str, dict[str, int]]) -> Image.Image:
    """Draw grouped bars: one group per category, one bar per series (e.g. classes x splits).

    Args:
        title: The chart's title.
        groups: ``{series: {category: value}}``.
    """
    font = ImageFont.load_default()
    categories = list(dict.fromkeys(c for values in groups.values() for c in values))
    series = list(groups)
    top_value = max([v for values in groups.values() for v in values.values()] + [1])
    bar, gap, plot_h, left, bottom = 14, 18, 220, 50, 60
    width = left + max(1, len(categories)) * (len(series) * bar + gap) + 140
    chart = Image.new("RGB", (width, plot_h + bottom + 40), "white")
    draw = ImageDraw.Draw(chart)
    draw.text((left, 8), title, fill="black", font=font)
    base = 30 + plot_h
    draw.line([(left, 30), (left, base), (width - 140, base)], fill="black")
    draw.text((4, 30), str(top_value), fill="black", font=font)
    draw.text((4, base - 10), "0", fill="black", font=font)
    for c, category in enumerate(categories):
        x0 = left + gap // 2 + c * (len(series) * bar + gap)
        for s, name in enumerate(series):
            value = groups[name].get(category, 0)
            height = round(plot_h * value / top_value)
            x = x0 + s * bar
            draw.rectangle([x, base - height, x + bar - 2, base], fill=_COLOURS[s % len(_COLOURS)])
        draw.text((x0, base + 4), category.replace(" ", "\n"), fill="black", font=font)
    for s, name in enumerate(series):
        y = 40 + s * 16
        draw.rectangle([width - 130, y, width - 120, y + 10], fill=_COLOURS[s % len(_COLOURS)])
        draw.text((width - 114, y - 1), name, fill="black", font=font)
    return chart


def histogram(title: str, values: list[float], threshold: float, *, bins: int = 40) -> Image.Image:
    """Draw a histogram of similarities in [min, 1] with the flagging threshold as a red line."""
    font = ImageFont.load_default()
    low = min([*values, threshold]) if values else threshold
    low = min(low, 0.999)
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / (1.0 - low) * bins))] += 1
    plot_w, plot_h, left = 400, 200, 50
    chart = Image.new("RGB", (left + plot_w + 20, plot_h + 70), "white")
    draw = ImageDraw.Draw(chart)
    draw.text((left, 6), title, fill="black", font=font)
    base = 26 + plot_h
    draw.line([(left, 26), (left, base), (left + plot_w, base)], fill="black")
    top = max(counts + [1])
    draw.text((4, 26), str(top), fill="black", font=font)
    for k, count in enumerate(counts):
        x = left + k * plot_w // bins
        height = round(plot_h * count / top)
        draw.rectangle([x, base - height, x + plot_w // bins - 1, base], fill=_COLOURS[0])
    x = left + round((threshold - low) / (1.0 - low) * plot_w)
    draw.line([(x, 26), (x, base)], fill=(214, 39, 40), width=2)
    draw.text((left, base + 6), f"{low:.3f}", fill="black", font=font)
    draw.text((left + plot_w - 20, base + 6), "1.0", fill="black", font=font)
    label = f"threshold {threshold}"
    label_x = x + 4 if x < left + plot_w // 2 else x - 4 - round(draw.textlength(label, font=font))
    draw.text((label_x, 30), label, fill=(214, 39, 40), font=font)
    return chart


def _pairs_table(pairs: list[dict], left: str, right: str) -> list[str]:
    lines = [
        f"| # | {left} | {right} | pHash bits | similarity | flags |",
        "|---|---|---|---|---|---|",
    ]
    for k, pair in enumerate(pairs[:MAX_PAIRS_SHOWN], start=1):
        a, b = pair[left], pair[right]
        flags = [
            name
            for name, on in (
                ("cross-split", pair.get("cross_split")),
                ("label differs", pair.get("label_disagrees")),
                ("patient differs", pair.get("patient_disagrees")),
            )
            if on
        ]
        lines.append(
            f"| {k} | {a['split']}/{a['image_id']} ({a['label']}, {a['patient_id'] or '-'}) | "
            f"{b['split']}/{b['image_id']} ({b['label']}, {b['patient_id'] or '-'}) | {pair['hamming']} | "
            f"{pair['similarity']} | {', '.join(flags) or '-'} |"
        )
    if len(pairs) > MAX_PAIRS_SHOWN:
        lines.append(f"\n{len(pairs) - MAX_PAIRS_SHOWN} more in `audit.json`.")
    return lines


def _note(pair: dict) -> str:
    lines = [
        f"{pair.get('kind', 'memorised')}",
        f"pHash bits {pair['hamming']}",
        f"similarity {pair['similarity']}",
    ]
    if pair.get("cross_split"):
        lines.append("CROSS-SPLIT")
    if pair.get("label_disagrees"):
        lines.append("LABEL DIFFERS")
    if pair.get("patient_disagrees"):
        lines.append("PATIENT DIFFERS")
    return "\n".join(lines)


def write_report(
    directory: str | os.PathLike,
    result: dict[str, Any],
    splits: datasets.DatasetDict,
    *,
    training: datasets.DatasetDict | None = None,
    title: str = "Data audit",
) -> Path:
    """Write ``report.md``, ``audit.json`` and the figures of an audit into ``directory``.

    Args:
        directory: The report folder (created; files of an earlier report are replaced or, when this
            report has no such figure, removed; other files are left alone).
        result: What ``fulora_data.audit.audit_dataset`` returns: ``audit`` and optionally ``memorisation``.
        splits: The audited dataset, to draw its duplicate pairs.
        training: The training dataset of the memorisation check, to draw its side of the pairs.
        title: The report's heading.

    Returns:
        The path of ``report.md``.

    Raises:
        ConfigError: If ``directory`` is a file.
    """
    return write_report_folder(
        directory, lambda work: _write(work, result, splits, training, title), owned=REPORT_FILES
    )


SUMMARY_PAIRS = 20
"""Pairs listed per list by ``format_summary``; the JSON and the report hold all of them."""


def format_summary(result: dict[str, Any], title: str) -> str:
    """The audit's result as the text ``fulora data audit`` prints: counts, then the first pairs of each list.

    Args:
        result: What ``audit_dataset`` returns.
        title: The dataset as named on the command line (``NAME[/CONFIG]``).
    """
    found = result["audit"]
    thresholds = found["thresholds"]
    lines = [f"{title}: {found['images']} images"]
    for split, info in found["splits"].items():
        modes = ", ".join(f"{m} {n}" for m, n in info["modes"].items())
        lines.append(
            f"  {split}: {info['images']} images, {info['patients']} patients, modes {modes or '-'}, "
            f"{len(info['sizes'])} sizes ({info['smallest']} to {info['largest']})"
        )
    lines += [
        f"exact duplicate pairs: {found['exact_duplicate_pairs']}",
        f"near duplicate pairs: {found['near_duplicate_pairs']} (pHash <= {thresholds['phash_hamming']} bits, "
        f"similarity >= {thresholds['thumbnail_similarity']})",
        f"cross-split duplicate pairs: {found['cross_split_duplicate_pairs']}",
        f"pairs whose label / patient disagree: {found['label_disagreement_pairs']} / "
        f"{found['patient_disagreement_pairs']}",
    ]
    for pair in found["pairs"][:SUMMARY_PAIRS]:
        a, b = pair["a"], pair["b"]
        lines.append(
            f"  {pair['kind']}: {a['split']}/{a['image_id']} ~ {b['split']}/{b['image_id']} "
            f"(pHash {pair['hamming']}, similarity {pair['similarity']})"
        )
    lines += _more(len(found["pairs"]))
    memo = result.get("memorisation")
    if memo is not None:
        lines.append(
            f"memorised against {result['against']}: {memo['memorised']} of {memo['synthetic_images']} images "
            f"(nearest similarity median {memo['similarity']['median']}, max {memo['similarity']['max']})"
        )
        for pair in memo["pairs"][:SUMMARY_PAIRS]:
            s, t = pair["synthetic"], pair["training"]
            lines.append(
                f"  {s['split']}/{s['image_id']} ~ {t['split']}/{t['image_id']} ({pair['similarity']})"
            )
        lines += _more(len(memo["pairs"]))
    if "report" in result:
        lines.append(f"report: {result['report']}")
    return "\n".join(lines)


def _more(total: int) -> list[str]:
    return [f"  ... {total - SUMMARY_PAIRS} more (see --json or --report)"] if total > SUMMARY_PAIRS else []


def _write(work: Path, result: dict, splits, training, title: str) -> None:
    audit = result["audit"]
    images = _Images(splits)
    (work / "audit.json").write_text(json.dumps(result, indent=2))
    lines = [f"# {title}", ""]
    thresholds = audit["thresholds"]
    lines += [
        f"{audit['images']} images. Near duplicates: pHash within {thresholds['phash_hamming']} of 64 bits and "
        f"thumbnail similarity at least {thresholds['thumbnail_similarity']}.",
        "",
        "| check | pairs |",
        "|---|---|",
        f"| exact duplicates (same pixels) | {audit['exact_duplicate_pairs']} |",
        f"| near duplicates | {audit['near_duplicate_pairs']} |",
        f"| across splits (exact + near) | {audit['cross_split_duplicate_pairs']} |",
        f"| label disagrees within a pair | {audit['label_disagreement_pairs']} |",
        f"| patient disagrees within a pair | {audit['patient_disagreement_pairs']} |",
        "",
        "Feature spaces:",
        "",
        *(f"- **{name}**: {text}" for name, text in audit["feature_spaces"].items()),
        "",
        "## Splits",
        "",
        "| split | images | patients | modes | sizes | smallest | largest |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, info in audit["splits"].items():
        modes = ", ".join(f"{m} {n}" for m, n in info["modes"].items()) or "-"
        lines.append(
            f"| {split} | {info['images']} | {info['patients']} | {modes} | {len(info['sizes'])} distinct | "
            f"{info['smallest'] or '-'} | {info['largest'] or '-'} |"
        )
    bar_chart("Images per class and split", {s: i["label_counts"] for s, i in audit["splits"].items()}).save(
        work / "class_counts.png"
    )
    lines += ["", "![Images per class and split](class_counts.png)", ""]
    for split, info in audit["splits"].items():
        counts = ", ".join(f"{label} {n}" for label, n in info["label_counts"].items())
        per_patient = list(info["patient_counts"].values())
        spread = (
            f"{min(per_patient)}-{max(per_patient)} images per patient" if per_patient else "no patient ids"
        )
        lines.append(f"- **{split}**: {counts}; {spread}.")
    for kind, heading in (("exact", "Exact duplicates"), ("near", "Near duplicates")):
        pairs = [p for p in audit["pairs"] if p["kind"] == kind]
        lines += ["", f"## {heading}", ""]
        if not pairs:
            lines.append("None found.")
            continue
        name = f"{kind}_pairs.png"
        rows = [
            (images.get(p["a"]), p["a"], images.get(p["b"]), p["b"], _note(p))
            for p in pairs[:MAX_PAIRS_SHOWN]
        ]
        pair_grid(rows).save(work / name)
        lines += _pairs_table(pairs, "a", "b") + ["", f"![{heading}]({name})"]
    memo = result.get("memorisation")
    if memo is not None:
        lines += [
            "",
            "## Memorisation",
            "",
            f"Each of the {memo['synthetic_images']} synthetic images against its nearest of the "
            f"{memo['training_images']} training images ({result.get('against', 'training set')}) by thumbnail "
            f"similarity; flagged at {memo['threshold']['thumbnail_similarity']} or above: "
            f"**{memo['memorised']}**. Nearest similarity: min {memo['similarity']['min']}, median "
            f"{memo['similarity']['median']}, max {memo['similarity']['max']}.",
            "",
        ]
        histogram(
            "Similarity of each synthetic image to its nearest training image",
            [row["similarity"] for row in memo["nearest"]],
            memo["threshold"]["thumbnail_similarity"],
        ).save(work / "nearest_similarity.png")
        lines += ["![Nearest training similarity](nearest_similarity.png)", ""]
        if memo["pairs"] and training is not None:
            training_images = _Images(training)
            rows = [
                (
                    images.get(p["synthetic"]),
                    p["synthetic"],
                    training_images.get(p["training"]),
                    p["training"],
                    _note(p),
                )
                for p in memo["pairs"][:MAX_PAIRS_SHOWN]
            ]
            pair_grid(rows).save(work / "memorised_pairs.png")
            lines += _pairs_table(memo["pairs"], "synthetic", "training")
            lines += ["", "![Flagged synthetic (left) and training (right) pairs](memorised_pairs.png)"]
        elif not memo["pairs"]:
            lines.append("No synthetic image was flagged.")
    (work / "report.md").write_text("\n".join(lines) + "\n")
