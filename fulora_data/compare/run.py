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
from fulora_data.compare.config import CompareConfig
from fulora_data.compare.features import (
    FeatureCache,
    default_feature_cache,
    extract,
    open_fid_network,
    open_network,
)
from fulora_data.compare.figures import MIN_POINTS, embed, perplexity_for
from fulora_data.compare.report import check_report_folder, write_report
from fulora_data.compare.sets import (
    colours,
    draw_per_plane,
    load_set,
)
from fulora_data.console import log_stderr
from fulora_data.devices import check_device
from fulora_data.io import folder_lock

OVERALL = "overall"


def compare_sets(
    config: CompareConfig | list[str],
    sources: list[str | os.PathLike | None] | None = None,
    *,
    log: Callable[[str], None] = log_stderr,
    **options: Any,
) -> dict[str, Any]:
    """Draw each plane's images from every set, embed them with t-SNE and compute FID and KID per pair.

    Args:
        config: The comparison's settings (see :class:`~fulora_data.compare.config.CompareConfig`). Callers
            written before the config may still pass the sets, ``sources`` and its fields as keywords.
        sources: With a list of sets only: one source per set (``CompareConfig.sources``).
        log: Where warnings and progress lines go.
        **options: With a list of sets only: the other ``CompareConfig`` fields.

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
    if not isinstance(config, CompareConfig):
        config = CompareConfig.from_dict({"sets": list(config), "sources": sources, **options})
    elif sources is not None or options:
        raise TypeError("compare_sets(config) takes its settings from the config alone")
    config.resolved()
    check_device(config.device)
    if config.report is None:
        return _compare(config, log)
    check_report_folder(config.report)
    with folder_lock(config.report, "--report"):  # one writer per report folder
        return _compare(config, log)


def _compare(config: CompareConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """:func:`compare_sets` on a checked config (its report folder, if any, locked by the caller)."""
    specs, sources, labels, planes = config.resolved()
    network = open_network(
        config.weights, image_size=config.image_size, device=config.device, download=config.download
    )
    cache_root = (
        Path(config.feature_cache)
        if config.feature_cache is not None
        else default_feature_cache(config.cache_dir)
    )
    cache = FeatureCache.open(cache_root, network)
    fid_network = (
        open_fid_network(config.fid_weights, device=network.device)
        if config.fid_weights is not None
        else None
    )
    fid_cache = FeatureCache.open(cache_root, fid_network) if fid_network is not None else None
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        log(f"warning: {message}")

    for ignored in cache.ignored + (fid_cache.ignored if fid_cache is not None else []):
        warn(f"feature cache {cache.folder}: ignored {ignored}")
    if fid_network is None:
        warn(
            "FID and KID are computed on torchvision's ImageNet Inception-V3, not on the FID Inception: "
            "they cannot be compared with published FIDs (give --fid-weights FILE for comparable ones)"
        )
    loaded = [
        load_set(spec, label=label, colour=colour, source=source, cache_dir=config.cache_dir)
        for spec, source, label, colour in zip(specs, sources, labels, colours(specs), strict=True)
    ]
    drawn = _draw(loaded, planes, config.per_plane, config.seed, warn)
    features, timing = _features(
        loaded, planes, drawn, (network, cache), (fid_network, fid_cache), config.batch_size
    )
    panels, skipped = _panels(loaded, planes, features, config, warn)
    pairs = [pair for panel in panels.values() for pair in panel["pairs"]]
    few = sum(1 for pair in pairs if min(pair["images"]) < metrics.FID_MIN_IMAGES)
    if few:
        warn(
            f"{few} of {len(pairs)} comparisons rest on fewer than {metrics.FID_MIN_IMAGES} images per set: "
            "their FID is dominated by small-sample bias; compare it only with FIDs drawn the same way"
        )
    result: dict[str, Any] = {
        "sets": [_set_entry(e, drawn[e.label]) for e in loaded],
        "settings": {
            "planes": planes,
            "per_plane": config.per_plane,
            "seed": config.seed,
            "draw": "pandas groupby('Plane').sample(n=per_plane, random_state=seed) semantics",
            "network": network.description,
            # The network of every FID and KID (the FID Inception with --fid-weights, else torchvision's).
            "fid_network": (fid_network or network).description,
            "tsne_features": config.tsne_features,
            "bootstrap": config.bootstrap,
            "interval": metrics.INTERVAL,
            "fid_min_images": metrics.FID_MIN_IMAGES,
            "kid_min_images": metrics.KID_MIN_IMAGES,
        },
        "planes": panels,
        "skipped": skipped,
        "warnings": warnings,
        "features": {**timing, "device": network.device},
    }
    if config.report is not None:
        result["report"] = str(write_report(config.report, result))
    return result


def _set_entry(entry, drawn: dict[str, list[int]]) -> dict[str, Any]:
    return {
        "label": entry.label,
        "spec": str(entry.spec),
        "colour": entry.colour,
        # The file name only: the report may be published beside a dataset card.
        "source": Path(entry.source).name if entry.source else None,
        "images": len(entry.rows),
        "images_per_plane": entry.counts(),
        "drawn_per_plane": {p: len(v) for p, v in drawn.items()},
    }


def _draw(
    loaded, planes: list[str], per_plane: int | None, seed: int, warn
) -> dict[str, dict[str, list[int]]]:
    """The seeded draw of every set, per plane (positions in the set's rows); says what fell short."""
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
    return drawn


def _features(loaded, planes, drawn, main, fid, batch_size: int) -> tuple[dict, dict[str, Any]]:
    """The features of every drawn image, one pass per set and network:
    ``{label: {plane: {"pool", "logits", "fid_pool"}}}`` and the timing (computed, cached, seconds, images
    per second). ``main`` and ``fid`` are (network, cache) pairs; ``fid_pool`` is the FID Inception's pool
    features when its network is given, else the main network's."""
    network, cache = main
    fid_network, fid_cache = fid
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
        fid_pool = result.pool
        if fid_network is not None:
            with tqdm(
                total=len(positions), desc=f"FID Inception features of {entry.label}", unit="img"
            ) as bar:
                started = time.perf_counter()
                fid_result = extract(
                    images, fid_network, fid_cache, batch_size=batch_size, progress=bar.update
                )
                seconds += time.perf_counter() - started
                bar.update(len(positions) - bar.n)
            computed, cached = computed + fid_result.computed, cached + fid_result.cached
            fid_pool = fid_result.pool
        features[entry.label] = {}
        start = 0
        for plane in planes:
            count = len(drawn[entry.label].get(plane, []))
            if count:
                features[entry.label][plane] = {
                    "pool": result.pool[start : start + count],
                    "logits": result.logits[start : start + count],
                    "fid_pool": fid_pool[start : start + count],
                }
            start += count
    rate = computed / seconds if computed and seconds else None
    timing = {
        "computed": computed,
        "cached": cached,
        "seconds": round(seconds, 3),
        "images_per_second": round(rate, 2) if rate else None,
    }
    return features, timing


def _panels(loaded, planes, features, config: CompareConfig, warn) -> tuple[dict[str, Any], dict[str, str]]:
    """Each plane's comparison where two sets have two images of it, then the pooled ``overall`` one."""
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
            config.tsne_features,
            config.bootstrap,
            config.seed,
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
                    key: np.concatenate([f[key] for _, f in parts]) for key in ("pool", "logits", "fid_pool")
                }
                plane_of_point[entry.label] = [p for p, f in parts for _ in range(len(f["pool"]))]
        panels[OVERALL] = _panel(
            pooled, plane_of_point, config.tsne_features, config.bootstrap, config.seed, warn, OVERALL
        )
    return panels, skipped


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
        pair = metrics.compare_features(
            by_set[a]["fid_pool"], by_set[b]["fid_pool"], bootstrap=bootstrap, seed=seed
        )
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
