"""How close are image sets? The study's t-SNE figure and FID/KID per plane (``fulora data compare``).

``compare_sets`` builds registered datasets by ``NAME[/CONFIG][:SPLIT]``, draws each plane's images with
the study's seeded rule (``sets``), takes cached Inception-V3 features (``features``), and compares every
pair of sets per plane and overall (``metrics``: FID, KID, bootstrap intervals; ``figures``: t-SNE),
writing a Markdown report (``report``). Importing this package needs only numpy; torch, torchvision,
scikit-learn and matplotlib are imported when used (``pip install -e '.[eval]'`` in a clone).
"""

from __future__ import annotations

from fulora_data.compare.config import CompareConfig
from fulora_data.compare.metrics import (
    FID_MIN_IMAGES,
    KID_MIN_IMAGES,
    bootstrap_interval,
    fid_from_statistics,
    frechet_distance,
    kernel_inception_distance,
)
from fulora_data.compare.run import compare_sets
from fulora_data.compare.sets import SetSpec, draw_per_plane

__all__ = [
    "CompareConfig",
    "FID_MIN_IMAGES",
    "KID_MIN_IMAGES",
    "SetSpec",
    "bootstrap_interval",
    "compare_sets",
    "draw_per_plane",
    "fid_from_statistics",
    "frechet_distance",
    "kernel_inception_distance",
]
