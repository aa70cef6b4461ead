"""The comparison's report folder: ``report.md``, ``compare.json`` and the t-SNE figures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fulora_data import io
from fulora_data.compare.figures import plot_grid, plot_panel
from fulora_data.io import write_report_folder

GRID = "tsne_grid.png"
REPORT_FILES = ("compare.json", "card_section.md", "report.md")
"""The files every comparison writes into ``--report`` (plus its ``tsne_*.png`` figures)."""


def figure_name(panel: str) -> str:
    """The file name of a plane's (or the overall) t-SNE figure, e.g. ``tsne_fetal_abdomen.png``."""
    return "tsne_" + "".join(c if c.isalnum() else "_" for c in panel.lower()) + ".png"


def _number(value: float | None) -> str:
    # Four significant digits: FIDs run from 0.01 to 1e3 (and far beyond with other networks), KIDs from 1e-4.
    return "-" if value is None else f"{value:.4g}"


def _interval(values: list[float] | None) -> str:
    return "-" if not values else f"[{values[0]:.4g}, {values[1]:.4g}]"


def network_label(network: dict[str, Any]) -> str:
    """``title (weights file, sha256 first 16 hex)``: the network beside a figure."""
    return f"{network['title']} ({network['weights_file']}, sha256 {network['weights_sha256'][:16]})"


def _fid_network(result: dict[str, Any]) -> dict[str, Any]:
    # Results written before the FID Inception existed computed FID on the t-SNE network.
    settings = result["settings"]
    network = dict(settings.get("fid_network") or settings["network"])
    network.setdefault("title", "torchvision Inception-V3 (ImageNet)")
    return network


def _metric_table(result: dict[str, Any]) -> list[str]:
    network = _fid_network(result)
    used = f"{network['network']} `{network['weights_sha256'][:12]}`"
    lines = [
        "| plane | pair | images | FID | FID interval | KID | KID interval | network (weights sha256) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, panel in result["planes"].items():
        for pair in panel["pairs"]:
            flag = " (few)" if pair["warnings"] else ""
            lines.append(
                f"| {name} | {pair['a']} vs {pair['b']} | {pair['images'][0]} / {pair['images'][1]}{flag} | "
                f"{_number(pair['fid'])} | {_interval(pair['fid_interval'])} | "
                f"{_number(pair['kid'])} | {_interval(pair['kid_interval'])} | {used} |"
            )
    return lines


def _tsne_network(result: dict[str, Any]) -> dict[str, Any]:
    network = dict(result["settings"]["network"])
    network.setdefault("title", "torchvision Inception-V3 (ImageNet)")
    return network


def _fid_note(result: dict[str, Any]) -> str:
    network = _fid_network(result)
    if network.get("comparable_with_published_fid"):
        return (
            f"FID and KID on the FID Inception's 2048 pool features: {network_label(network)}, the network of "
            "published FIDs (pytorch-fid, torchmetrics, clean-fid's legacy mode), at 299 px."
        )
    return (
        f"FID and KID on the 2048 pool features of {network_label(network)}: **not** the FID Inception, so "
        "these numbers cannot be compared with published FIDs (`fulora data compare --fid-weights FILE` "
        "computes them on pytorch-fid's pt_inception-2015-12-05 weights)."
    )


def card_section(result: dict[str, Any], folder: str = "compare") -> str:
    """A dataset-card section that links the report, for a synthetic set's card.

    ``fulora data export`` keeps card text outside its generated block, so this section pasted below the
    block survives re-exports; upload the report folder beside the card as ``folder``.
    """
    settings = result["settings"]
    lines = [
        "## How close is it to real images?",
        "",
        f"`fulora data compare` of {', '.join(s['label'] for s in result['sets'])}: per plane, "
        f"{settings['per_plane'] or 'all'} images per set (seed {settings['seed']}). {_fid_note(result)} "
        f"Full report: [{folder}/report.md]({folder}/report.md). "
        f"FID below {settings['fid_min_images']} images per set is flagged (few): it is dominated by "
        "small-sample bias, so compare it only with FIDs drawn the same way.",
        "",
        *_metric_table(result),
    ]
    if any(p.get("tsne") for p in result["planes"].values()):
        lines += [
            "",
            f"![t-SNE of Inception-V3 features per plane]({folder}/{GRID})",
            "",
            f"t-SNE of the {settings['tsne_features']} of {network_label(_tsne_network(result))}.",
        ]
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """Render the report's Markdown from a ``compare_sets`` result."""
    settings = result["settings"]
    network = settings["network"]
    labels = [s["label"] for s in result["sets"]]
    per_plane = settings["per_plane"] if settings["per_plane"] is not None else "all"
    lines = [
        f"# How close are {', '.join(labels[:-1])} and {labels[-1]}?",
        "",
        f"Per plane, {per_plane} images per set drawn with pandas' `groupby('Plane').sample` semantics "
        f"(random_state {settings['seed']}); t-SNE of the {settings['tsne_features']} of "
        f"{network_label(_tsne_network(result))} at {network['image_size']} px (the study's network), each "
        f"axis scaled to [0, 1]. {_fid_note(result)} Intervals are {int(settings['interval'] * 100)}% "
        f"percentile bootstrap intervals ({settings['bootstrap']} replicates).",
        "",
        "## Sets",
        "",
        "| set | spec | source | images | drawn per plane |",
        "|---|---|---|---|---|",
    ]
    for entry in result["sets"]:
        drawn = ", ".join(f"{p} {n}" for p, n in entry["drawn_per_plane"].items()) or "-"
        lines.append(
            f"| {entry['label']} | `{entry['spec']}` | {entry['source'] or '(download)'} | "
            f"{entry['images']} | {drawn} |"
        )
    small = [p for panel in result["planes"].values() for p in panel["pairs"] if p["warnings"]]
    lines += [
        "",
        f"**Read the numbers with their image counts.** FID below {settings['fid_min_images']} images per set "
        "(the pool features' dimension: fewer images give a rank-deficient covariance) is dominated by its "
        f"small-sample bias, and KID below {settings['kid_min_images']} images has a wide spread; "
        f"{len(small)} of the comparisons below are under these sizes. Compare such numbers only with "
        "others drawn the same way (same sets sizes, same draw), never with published FIDs on thousands "
        "of images.",
        "",
    ]
    if result["skipped"]:
        lines += ["## Skipped", ""] + [f"- **{p}**: {why}" for p, why in result["skipped"].items()] + [""]
    if result["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    lines += ["## FID and KID", "", *_metric_table(result)]
    lines += ["", "## t-SNE", ""]
    tsne_caption = f"t-SNE of the {settings['tsne_features']} of {network_label(_tsne_network(result))}."
    if any(p.get("tsne") for p in result["planes"].values()):
        lines += [f"![t-SNE of every plane]({GRID})", "", tsne_caption, ""]
    for name, panel in result["planes"].items():
        if panel.get("tsne"):
            lines += [f"### {name}", "", f"![t-SNE: {name}]({figure_name(name)})", "", tsne_caption, ""]
    timing = result["features"]
    rate = timing["images_per_second"]
    lines += [
        "## Features",
        "",
        f"{timing['computed']} images computed, {timing['cached']} read from the feature cache, "
        f"{timing['seconds']} s on {timing['device']}"
        + (f" ({rate} images/s including decoding)." if rate else "."),
        "",
        "## For the dataset card",
        "",
        "`card_section.md` here is a section for the compared synthetic set's dataset card: paste it below "
        "the card's generated block (which `fulora data export` keeps) and upload this folder beside the "
        "card as `compare/`.",
        "",
    ]
    return "\n".join(lines)


OWNED = (*REPORT_FILES, "tsne_*.png")
"""What a comparison writes into ``--report``: replaced or removed there only when fulora wrote it."""


def check_report_folder(directory: str | os.PathLike) -> Path:
    """Refuse a ``--report`` folder that cannot be written or holds a report file fulora did not write.

    Run before the comparison, so a user's own ``report.md`` there stops it at once.

    Raises:
        ConfigError: If ``directory`` is a file, cannot be written, or holds a foreign file of a report's
            name (the folder's ``.fulora_written.json`` says which files fulora wrote).
    """
    return io.check_report_folder(directory, "--report", OWNED)


def write_report(directory: str | os.PathLike, result: dict[str, Any]) -> Path:
    """Write ``report.md``, ``compare.json`` and the figures of a comparison into ``directory``.

    Files of an earlier report are replaced; its t-SNE figures that this one does not draw are removed;
    other files are left alone, and a file of a report's name that fulora did not write is never replaced
    (``check_report_folder``). ``report.md`` is moved in last; the files written are recorded in the
    folder's ``.fulora_written.json``.

    Returns:
        The path of ``report.md``.

    Raises:
        ConfigError: If ``directory`` is a file.
    """
    return write_report_folder(directory, lambda work: _draw(work, result), owned=OWNED)


def _draw(work: Path, result: dict[str, Any]) -> None:
    sets = result["sets"]
    for name, panel in result["planes"].items():
        if panel.get("tsne"):
            plot_panel(work / figure_name(name), name, panel, sets)
    if any(p.get("tsne") for p in result["planes"].values()):
        plot_grid(work / GRID, result["planes"], sets)
    (work / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    (work / "card_section.md").write_text(card_section(result) + "\n")
    (work / "report.md").write_text(markdown(result) + "\n")
