"""Compare image sets plane by plane: the library behind ``fulora data compare``.

For every plane asked for (the study's four by default), each set contributes a seeded draw of its images
(``fulora_data.compare.sets.draw_per_plane``, pandas' ``groupby('Plane').sample`` semantics); Inception-V3
features of the drawn images (``fulora_data.compare.features``, cached) are embedded by t-SNE and compared
pair by pair with FID and KID (``fulora_data.compare.metrics``). "Overall" pools each set's drawn images
of every compared plane.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fulora_data.compare import metrics
from fulora_data.compare.features import FeatureCache, default_feature_cache, extract, open_network
from fulora_data.compare.figures import MIN_POINTS, embed, perplexity_for
from fulora_data.compare.report import check_report_folder, write_report
from fulora_data.compare.sets import (
    STUDY_PER_PLANE,
    STUDY_PLANES,
    STUDY_SEED,
    colours,
    default_labels,
    draw_per_plane,
    load_set,
    parse_set,
)
from fulora_data.errors import OptionValueError
from fulora_data.prepare import option_names
from fulora_data.taxonomy import canonical_plane

OVERALL = "overall"
TSNE_FEATURES = ("logits", "pool")


def _default_log(message: str) -> None:
    print(message, flush=True)


def _check_options(sets, sources, labels, planes, per_plane, tsne_features) -> tuple:
    if len(sets) < 2:
        raise OptionValueError(
            f"compare needs at least two sets, got {len(sets)}: {', '.join(map(str, sets))}"
        )
    specs = [parse_set(s) for s in sets]
    for spec in specs:
        if not spec.on_hub:
            option_names(spec.name)  # an unknown dataset fails here, before the network loads
    sources = list(sources or [])
    if sources and len(sources) != len(specs):
        raise OptionValueError(
            f"give --source once per set, in the sets' order ('-' for a published set or one to download): "
            f"{len(specs)} sets but {len(sources)} --source"
        )
    sources = [None if s is None or str(s) == "-" else str(s) for s in sources] or [None] * len(specs)
    for spec, source in zip(specs, sources, strict=True):
        if spec.on_hub and source is not None:
            raise OptionValueError(
                f"set {str(spec)!r} is a published dataset, read from the Hub: give --source - for it, "
                f"not {source!r}"
            )
    labels = list(labels or []) or default_labels(specs, sources)
    if len(labels) != len(specs):
        raise OptionValueError(f"give --label once per set: {len(specs)} sets but {len(labels)} --label")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise OptionValueError(f"two sets would share the name {repeated[0]!r}; tell them apart with --label")
    planes = [canonical_plane(p) for p in planes] if planes else list(STUDY_PLANES)
    if per_plane is not None and (not isinstance(per_plane, int) or per_plane < 1):
        raise OptionValueError(f"--per-plane must be a whole number of at least 1, got {per_plane!r}")
    if tsne_features not in TSNE_FEATURES:
        raise OptionValueError(
            f"--tsne-features must be one of {', '.join(TSNE_FEATURES)}, got {tsne_features!r}"
        )
    return specs, sources, labels, list(dict.fromkeys(planes))


def compare_sets(
    sets: list[str],
    sources: list[str | os.PathLike | None] | None = None,
    *,
    labels: list[str] | None = None,
    planes: list[str] | None = None,
    per_plane: int | None = STUDY_PER_PLANE,
    seed: int = STUDY_SEED,
    image_size: int = 224,
    weights: str | os.PathLike | None = None,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    feature_cache: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    bootstrap: int = metrics.DEFAULT_BOOTSTRAP,
    tsne_features: str = "logits",
    batch_size: int = 16,
    device: str | None = None,
    log: Callable[[str], None] = _default_log,
) -> dict[str, Any]:
    """Draw each plane's images from every set, embed them with t-SNE and compute FID and KID per pair.

    Args:
        sets: Two or more ``NAME[/CONFIG][:SPLIT]`` specs (no split: all splits of the config), or
            published fulora datasets ``ORG/NAME[@REVISION][/CONFIG][:SPLIT]`` (no config: the default).
        sources: One archive or folder per set, in order; ``None`` or ``"-"`` for a set without one (a
            published set, or one to download); empty: none for any set.
        labels: One name per set for figures and tables (default: Africa, Synthesis, Spain, or the spec).
        planes: Planes to compare (default: the study's four: abdomen, brain, femur, thorax).
        per_plane: Images drawn per plane and set (the study's 35); ``None`` takes every image.
        seed: The draw's ``random_state`` (the study's 1234); also seeds t-SNE and the bootstrap.
        image_size: Side of the square network input (the study's 224; at least 75).
        weights: A torchvision ``inception_v3`` state dict file (default: torchvision's ImageNet weights).
        download: Whether torchvision's weights may be downloaded when not cached.
        cache_dir: Where built datasets are cached (features go to its ``fulora-features`` folder).
        feature_cache: Where features are cached (overrides the folder under ``cache_dir``).
        report: A folder for ``report.md``, ``compare.json`` and the t-SNE figures.
        bootstrap: Bootstrap replicates of each FID and KID interval (0: no interval).
        tsne_features: ``"logits"`` (the study's Inception outputs) or ``"pool"`` (FID's features).
        batch_size: Images per forward pass.
        device: ``"cpu"``, ``"cuda"`` ... (default: CUDA when available).
        log: Where warnings and progress lines go.

    Returns:
        ``sets`` (label, spec, source file name, images per plane), ``settings``, ``planes`` (per plane
        and ``overall``: images per set, every pair's FID/KID with intervals and counts, t-SNE points),
        ``skipped`` (planes left out, with why), ``warnings``, ``features`` (computed, cached, seconds,
        images per second) and ``report`` (the path of ``report.md``) with ``report``.

    Raises:
        ConfigError: For a bad set spec, option, count of sources/labels, or weights file.
        SourceNotFoundError: If no Inception weights can be found.
        DataError: If a set has no images.
    """
    specs, sources, labels, planes = _check_options(sets, sources, labels, planes, per_plane, tsne_features)
    if report is not None:
        check_report_folder(report)
    network = open_network(weights, image_size=image_size, device=device, download=download)
    cache_root = Path(feature_cache) if feature_cache is not None else default_feature_cache(cache_dir)
    cache = FeatureCache.open(cache_root, network)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        log(f"warning: {message}")

    for ignored in cache.ignored:
        warn(f"feature cache {cache.folder}: ignored {ignored}")

    loaded = []
    for spec, source, label, colour in zip(specs, sources, labels, colours(specs), strict=True):
        loaded.append(load_set(spec, label=label, colour=colour, source=source, cache_dir=cache_dir))

    # The draw, per set and plane, then the features of every drawn image in one pass per set.
    drawn: dict[str, dict[str, list[int]]] = {}
    for entry in loaded:
        picks, short = draw_per_plane(entry.planes, per_plane, seed)
        drawn[entry.label] = {p: picks[p] for p in planes if p in picks}
        for plane in planes:
            if plane not in picks:
                warn(f"{entry.label} has no {plane} images: it is left out of that plane")
            elif plane in short:
                warn(
                    f"{entry.label} has {short[plane]} {plane} images, fewer than {per_plane} asked: all are used"
                )
    features: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    computed = cached = 0
    seconds = 0.0
    for entry in loaded:
        positions = [p for plane in planes for p in drawn[entry.label].get(plane, [])]
        with tqdm(total=len(positions), desc=f"Inception features of {entry.label}", unit="img") as bar:
            started = time.perf_counter()
            images = entry.image_bytes(positions)
            result = extract(images, network, cache, batch_size=batch_size, progress=bar.update)
            seconds += time.perf_counter() - started
            bar.update(len(positions) - bar.n)  # the cached images
        computed, cached = computed + result.computed, cached + result.cached
        features[entry.label] = {}
        start = 0
        for plane in planes:
            count = len(drawn[entry.label].get(plane, []))
            if count:
                features[entry.label][plane] = {
                    "pool": result.pool[start : start + count],
                    "logits": result.logits[start : start + count],
                }
            start += count

    panels: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for plane in planes:
        present = [e for e in loaded if len(features[e.label].get(plane, {}).get("pool", [])) >= 2]
        for entry in loaded:
            if len(features[entry.label].get(plane, {}).get("pool", [])) == 1:
                warn(f"{entry.label} has one {plane} image: it is left out of that plane (FID needs two)")
        if len(present) < 2:
            names = ", ".join(e.label for e in present) or "none"
            skipped[plane] = f"fewer than two sets have at least two {plane} images (sets with them: {names})"
            warn(f"plane {plane} skipped: {skipped[plane]}")
            continue
        panels[plane] = _panel(
            {e.label: features[e.label][plane] for e in present},
            None,
            tsne_features,
            bootstrap,
            seed,
            warn,
            plane,
        )
    kept = list(panels)
    if len(kept) > 0:
        pooled, plane_of_point = {}, {}
        for entry in loaded:
            parts = [(p, features[entry.label][p]) for p in kept if p in features[entry.label]]
            if parts:
                pooled[entry.label] = {
                    key: np.concatenate([f[key] for _, f in parts]) for key in ("pool", "logits")
                }
                plane_of_point[entry.label] = [p for p, f in parts for _ in range(len(f["pool"]))]
        panels[OVERALL] = _panel(pooled, plane_of_point, tsne_features, bootstrap, seed, warn, OVERALL)

    pairs = [pair for panel in panels.values() for pair in panel["pairs"]]
    few = sum(1 for pair in pairs if min(pair["images"]) < metrics.FID_MIN_IMAGES)
    if few:
        warn(
            f"{few} of {len(pairs)} comparisons rest on fewer than {metrics.FID_MIN_IMAGES} images per set: "
            "their FID is dominated by small-sample bias; compare it only with FIDs drawn the same way"
        )
    rate = computed / seconds if computed and seconds else None
    result: dict[str, Any] = {
        "sets": [
            {
                "label": e.label,
                "spec": str(e.spec),
                "colour": e.colour,
                # The file name only: the report may be published beside a dataset card.
                "source": Path(e.source).name if e.source else None,
                "images": len(e.rows),
                "images_per_plane": e.counts(),
                "drawn_per_plane": {p: len(v) for p, v in drawn[e.label].items()},
            }
            for e in loaded
        ],
        "settings": {
            "planes": planes,
            "per_plane": per_plane,
            "seed": seed,
            "draw": "pandas groupby('Plane').sample(n=per_plane, random_state=seed) semantics",
            "network": network.description,
            "tsne_features": tsne_features,
            "bootstrap": bootstrap,
            "interval": metrics.INTERVAL,
            "fid_min_images": metrics.FID_MIN_IMAGES,
            "kid_min_images": metrics.KID_MIN_IMAGES,
        },
        "planes": panels,
        "skipped": skipped,
        "warnings": warnings,
        "features": {
            "computed": computed,
            "cached": cached,
            "seconds": round(seconds, 3),
            "images_per_second": round(rate, 2) if rate else None,
            "device": network.device,
        },
    }
    if report is not None:
        result["report"] = str(write_report(report, result))
    return result


def _panel(
    by_set: dict[str, dict[str, np.ndarray]],
    plane_of_point: dict[str, list[str]] | None,
    tsne_features: str,
    bootstrap: int,
    seed: int,
    warn: Callable[[str], None],
    name: str,
) -> dict[str, Any]:
    """One plane's (or the overall) comparison: counts, pairs, t-SNE points."""
    labels = list(by_set)
    panel: dict[str, Any] = {"images": {label: len(by_set[label]["pool"]) for label in labels}, "pairs": []}
    for a, b in combinations(labels, 2):
        pair = metrics.compare_features(by_set[a]["pool"], by_set[b]["pool"], bootstrap=bootstrap, seed=seed)
        panel["pairs"].append({"a": a, "b": b, **pair})
    total = sum(panel["images"].values())
    if total >= MIN_POINTS:
        coords = embed(np.concatenate([by_set[label][tsne_features] for label in labels]), seed=seed)
        panel["perplexity"] = perplexity_for(total)
        panel["tsne"], start = {}, 0
        for label in labels:
            count = panel["images"][label]
            panel["tsne"][label] = np.round(coords[start : start + count], 5).tolist()
            start += count
    else:
        panel["tsne"] = {}
        warn(f"{name}: {total} images are too few for a t-SNE map (at least {MIN_POINTS})")
    if plane_of_point is not None:
        panel["plane_of_point"] = plane_of_point
    return panel
