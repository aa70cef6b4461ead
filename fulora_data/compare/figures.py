"""The study's t-SNE map: features of several sets embedded together in 2-D, each axis scaled to [0, 1].

scikit-learn's ``TSNE`` with its defaults (2 components, PCA initialisation, automatic learning rate),
``random_state`` set to the comparison's seed so a figure can be redrawn, and perplexity 30 (the default)
or, for fewer than 91 points, ``(n - 1) / 3``: t-SNE needs a perplexity below the number of points and
its neighbourhoods hold about three times the perplexity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fulora_data.errors import require

DEFAULT_PERPLEXITY = 30.0
MIN_POINTS = 4  # fewer points leave t-SNE no neighbourhood to preserve
PLANE_MARKERS = ("o", "s", "^", "D", "v", "P")


def perplexity_for(points: int) -> float:
    """The perplexity used for ``points`` points (30, or ``(points - 1) / 3`` when that is smaller)."""
    return float(min(DEFAULT_PERPLEXITY, max(1.0, (points - 1) / 3)))


def embed(features: np.ndarray, *, seed: int) -> np.ndarray:
    """Run t-SNE to 2-D and scale each axis to [0, 1] (a constant axis becomes 0.5)."""
    manifold = require("sklearn.manifold", "eval")
    features = np.asarray(features, dtype=np.float64)
    tsne = manifold.TSNE(
        n_components=2, perplexity=perplexity_for(len(features)), random_state=seed, init="pca"
    )
    coords = tsne.fit_transform(features)
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return np.where(high > low, (coords - low) / span, 0.5)


def _figure(width: float, height: float):
    require("matplotlib", "eval")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _draw(ax, panel: dict, sets: list[dict], title: str) -> None:
    planes = panel.get("plane_of_point")
    every_plane = sorted({p for points in planes.values() for p in points}) if planes is not None else []
    for entry in sets:
        points = panel["tsne"].get(entry["label"])
        if not points:
            continue
        points = np.asarray(points)
        if planes is None:
            ax.scatter(points[:, 0], points[:, 1], s=18, c=entry["colour"], alpha=0.85, label=entry["label"])
            continue
        kinds = planes[entry["label"]]
        first = True
        for k, plane in enumerate(every_plane):
            mask = np.array([p == plane for p in kinds])
            if not mask.any():
                continue
            ax.scatter(
                points[mask, 0],
                points[mask, 1],
                s=18,
                c=entry["colour"],
                alpha=0.85,
                marker=PLANE_MARKERS[k % len(PLANE_MARKERS)],
                label=entry["label"] if first else None,
            )
            first = False
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title, fontsize=10)
    handles, names = ax.get_legend_handles_labels()
    if planes is not None:  # the overall map: markers tell the planes apart
        from matplotlib.lines import Line2D

        for k, plane in enumerate(every_plane):
            marker = PLANE_MARKERS[k % len(PLANE_MARKERS)]
            handles.append(Line2D([], [], ls="", marker=marker, color="#555555", markersize=5))
            names.append(plane)
    ax.legend(handles, names, fontsize=7, loc="best")


def _title(name: str, panel: dict) -> str:
    counts = ", ".join(f"{label} {n}" for label, n in panel["images"].items())
    return f"{name} ({counts})"


def plot_panel(path: Path, name: str, panel: dict, sets: list[dict]) -> None:
    """Draw one plane's (or the overall) t-SNE map as a PNG."""
    figure = _figure(5.5, 5.0)
    _draw(figure.add_subplot(), panel, sets, _title(name, panel))
    figure.tight_layout()
    figure.savefig(path, format="png")


def plot_grid(path: Path, panels: dict[str, dict], sets: list[dict]) -> None:
    """Draw every plane's map and the overall one side by side as one PNG."""
    names = [n for n, p in panels.items() if p.get("tsne")]
    columns = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // columns))
    figure = _figure(4.5 * columns, 4.2 * rows)
    for i, name in enumerate(names):
        _draw(figure.add_subplot(rows, columns, i + 1), panels[name], sets, _title(name, panels[name]))
    figure.tight_layout()
    figure.savefig(path, format="png")
