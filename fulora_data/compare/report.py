"""The comparison's report folder: ``report.md``, ``compare.json`` and the t-SNE figures."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fulora_data import io
from fulora_data.compare.figures import plot_grid, plot_panel
from fulora_data.io import atomic_write_bytes

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


def _metric_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| plane | pair | images | FID | FID interval | KID | KID interval |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, panel in result["planes"].items():
        for pair in panel["pairs"]:
            flag = " (few)" if pair["warnings"] else ""
            lines.append(
                f"| {name} | {pair['a']} vs {pair['b']} | {pair['images'][0]} / {pair['images'][1]}{flag} | "
                f"{_number(pair['fid'])} | {_interval(pair['fid_interval'])} | "
                f"{_number(pair['kid'])} | {_interval(pair['kid_interval'])} |"
            )
    return lines


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
        f"{settings['per_plane'] or 'all'} images per set (seed {settings['seed']}), Inception-V3 at "
        f"{settings['network']['image_size']} px. Full report: [{folder}/report.md]({folder}/report.md). "
        f"FID below {settings['fid_min_images']} images per set is flagged (few): it is dominated by "
        "small-sample bias, so compare it only with FIDs drawn the same way.",
        "",
        *_metric_table(result),
    ]
    if any(p.get("tsne") for p in result["planes"].values()):
        lines += ["", f"![t-SNE of Inception-V3 features per plane]({folder}/{GRID})"]
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
        f"(random_state {settings['seed']}); Inception-V3 ({network['weights_file']}, sha256 "
        f"`{network['weights_sha256'][:16]}`) at {network['image_size']} px; t-SNE of the "
        f"{settings['tsne_features']} features, each axis scaled to [0, 1]; FID and KID on the 2048 pool "
        f"features with {int(settings['interval'] * 100)}% percentile bootstrap intervals "
        f"({settings['bootstrap']} replicates).",
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
    if any(p.get("tsne") for p in result["planes"].values()):
        lines += [f"![t-SNE of every plane]({GRID})", ""]
    for name, panel in result["planes"].items():
        if panel.get("tsne"):
            lines += [f"### {name}", "", f"![t-SNE: {name}]({figure_name(name)})", ""]
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


def _replaced(directory: Path, written=()) -> set[str]:
    """What writing a report into ``directory`` replaces or removes: its files and any earlier figures."""
    return {*REPORT_FILES, *written, *(p.name for p in directory.glob("tsne_*.png"))}


def check_report_folder(directory: str | os.PathLike) -> Path:
    """Refuse a ``--report`` folder that cannot be written or holds a report file fulora did not write.

    Run before the comparison, so a user's own ``report.md`` there stops it at once.

    Raises:
        ConfigError: If ``directory`` is a file, cannot be written, or holds a foreign file of a report's
            name (the folder's ``.fulora_written.json`` says which files fulora wrote).
    """
    directory = io.check_report_folder(directory)
    io.refuse_foreign_files(directory, _replaced(directory), "--report")
    return directory


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
    directory = Path(directory)
    check_report_folder(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    # Drawn in the system's temporary folder, then each file written into place atomically: a killed run
    # leaves nothing beside the report.
    with tempfile.TemporaryDirectory(prefix="fulora-compare-") as tmp:
        work = Path(tmp)
        sets = result["sets"]
        for name, panel in result["planes"].items():
            if panel.get("tsne"):
                plot_panel(work / figure_name(name), name, panel, sets)
        if any(p.get("tsne") for p in result["planes"].values()):
            plot_grid(work / GRID, result["planes"], sets)
        (work / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
        (work / "card_section.md").write_text(card_section(result) + "\n")
        (work / "report.md").write_text(markdown(result) + "\n")
        directory.mkdir(exist_ok=True)
        written = {path.name for path in work.iterdir()}
        io.refuse_foreign_files(directory, _replaced(directory, written), "--report")
        for name in sorted(written, key=lambda name: name == "report.md"):
            atomic_write_bytes(directory / name, (work / name).read_bytes())
    stale = [path.name for path in directory.glob("tsne_*.png") if path.name not in written]
    for name in stale:
        (directory / name).unlink(missing_ok=True)
    io.record_written(directory, sorted(written), removed=stale)
    return directory / "report.md"
