"""The audit's report for people: Markdown with figures (matplotlib) and pages of image pairs (Pillow).

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

#: Later pages of the pair pictures (``exact_pairs-2.png``, ...): an earlier report's extra pages are stale.
PAGED_PAIRS = ("exact_pairs-*.png", "near_pairs-*.png", "memorised_pairs-*.png")
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
"""Pairs drawn (over pages of ``PAIRS_PER_PAGE``) and listed in each Markdown table; the JSON holds all."""

PAIRS_PER_PAGE = 12
PAIR_COLUMNS = 3
"""A page of pairs is ``PAIR_COLUMNS`` pairs across: ``exact_pairs.png``, then ``exact_pairs-2.png`` ..."""

_TILE = 200
_CAPTION = 40
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
    # Fit the tile both ways: small images (64 px samples) are enlarged to be seen, large ones reduced.
    scale = _TILE / max(image.width, image.height)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    tile = Image.new("L", (_TILE, _TILE), 255)
    tile.paste(image, ((_TILE - image.width) // 2, (_TILE - image.height) // 2))
    return tile


def _caption(ref: dict) -> str:
    return f"{ref['split']} {ref['image_id']}\n{ref['label'] or '-'} / patient {ref['patient_id'] or '-'}"


def pair_grid(
    rows: list[tuple[Image.Image, dict, Image.Image, dict, str]], columns: int = 1, first: int = 1
) -> Image.Image:
    """Draw pairs side by side, ``columns`` pairs across, each image with its split, id, label and patient.

    Args:
        rows: ``(left image, left ref, right image, right ref, note)`` per pair.
        columns: Pairs per line of the picture.
        first: The number of the first pair (pairs are numbered as in the report's table).

    Returns:
        An RGB image.
    """
    font = ImageFont.load_default(size=12)
    note_font = ImageFont.load_default(size=13)
    cell_w, row_height = 2 * _TILE + 3 * 8, _TILE + _CAPTION + 8 + 34
    lines = max(1, -(-len(rows) // columns))
    grid = Image.new("RGB", (min(columns, max(1, len(rows))) * (cell_w + 16), lines * row_height), "white")
    draw = ImageDraw.Draw(grid)
    for k, (left, left_ref, right, right_ref, note) in enumerate(rows):
        top, origin = (k // columns) * row_height, (k % columns) * (cell_w + 16)
        draw.text((origin + 8, top + 6), f"{first + k}. {note.replace(chr(10), '; ')}", fill="black", font=note_font)
        for column, (image, ref) in enumerate(((left, left_ref), (right, right_ref))):
            x = origin + 8 + column * (_TILE + 8)
            grid.paste(_tile(image).convert("RGB"), (x, top + 26))
            draw.multiline_text((x, top + 26 + _TILE + 3), _caption(ref), fill="black", font=font, spacing=2)
        if k % columns:
            draw.line([(origin, top + 4), (origin, top + row_height - 6)], fill=(200, 200, 200))
    return grid


def pair_pages(rows: list, stem: str, work: Path) -> list[str]:
    """Save pairs as pages of ``PAIRS_PER_PAGE`` (``stem.png``, ``stem-2.png`` ...); return the file names.

    The numbers on the pictures continue from page to page and match the report's table.
    """
    names = []
    for start in range(0, len(rows), PAIRS_PER_PAGE):
        page = pair_grid(rows[start : start + PAIRS_PER_PAGE], columns=PAIR_COLUMNS, first=start + 1)
        name = f"{stem}.png" if not start else f"{stem}-{start // PAIRS_PER_PAGE + 1}.png"
        page.save(work / name)
        names.append(name)
    return names


def bar_chart(title: str, groups: dict[str, dict[str, int]], path: Path) -> Path:
    """Draw grouped bars with matplotlib: one group per category, one bar per series (e.g. classes x splits).

    Each bar carries its count; the value axis has matplotlib's ticks.

    Args:
        title: The chart's title.
        groups: ``{series: {category: value}}``.
        path: The PNG to write.
    """
    from fulora_data.errors import require

    require("matplotlib", "audit")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    categories = list(dict.fromkeys(c for values in groups.values() for c in values))
    series = list(groups)
    figure = Figure(figsize=(max(6.0, 1.2 * len(categories) + 2), 4.2), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    width = 0.8 / max(1, len(series))
    for s, name in enumerate(series):
        xs = [c + (s - (len(series) - 1) / 2) * width for c in range(len(categories))]
        values = [groups[name].get(category, 0) for category in categories]
        colour = "#{:02x}{:02x}{:02x}".format(*_COLOURS[s % len(_COLOURS)])
        bars = ax.bar(xs, values, width=width * 0.95, label=name, color=colour)
        ax.bar_label(bars, fontsize="x-small", padding=1)
    ax.set_xticks(range(len(categories)), categories, rotation=20, ha="right")
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.2-image ticks
    ax.set_title(title)
    ax.margins(y=0.12)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(title="split", fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


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
        directory, lambda work: _write(work, result, splits, training, title), owned=(*REPORT_FILES, *PAGED_PAIRS)
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
    bar_chart(
        "Images per class and split",
        {s: i["label_counts"] for s, i in audit["splits"].items()},
        work / "class_counts.png",
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
        rows = [
            (images.get(p["a"]), p["a"], images.get(p["b"]), p["b"], _note(p))
            for p in pairs[:MAX_PAIRS_SHOWN]
        ]
        pages = pair_pages(rows, f"{kind}_pairs", work)
        lines += _pairs_table(pairs, "a", "b") + [""]
        lines += [f"![{heading}, page {n} of {len(pages)}]({name})" for n, name in enumerate(pages, 1)]
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
            pages = pair_pages(rows, "memorised_pairs", work)
            lines += _pairs_table(memo["pairs"], "synthetic", "training") + [""]
            lines += [
                f"![Flagged synthetic (left) and training (right) pairs, page {n} of {len(pages)}]({name})"
                for n, name in enumerate(pages, 1)
            ]
        elif not memo["pairs"]:
            lines.append("No synthetic image was flagged.")
    (work / "report.md").write_text("\n".join(lines) + "\n")
