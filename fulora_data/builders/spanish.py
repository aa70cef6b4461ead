"""FETAL_PLANES_DB, the Spanish maternal-fetal ultrasound planes dataset.

Source: Burgos-Artizzu et al., "Evaluation of deep convolutional neural networks for automatic
classification of common maternal fetal ultrasound planes", Sci Rep 10, 10200 (2020); Zenodo record
3904280, file ``FETAL_PLANES_ZENODO.zip``. License: CC BY 4.0.

The archive holds ``FETAL_PLANES_DB_data.csv`` (``;``-separated, header ``Train `` with a trailing space,
maybe a UTF-8 BOM), an ``.xlsx`` twin and ``Images/<Image_name>.png``: 12,400 grayscale PNGs of many sizes
from 1,792 patients, in six classes.

Configs:
    full: all six classes (Maternal cervix is label 5); splits ``train`` and ``test`` from ``Train``.
    es: the training split without Maternal cervix (6,148 images, 612 patients): the study's "ES" set.
    es-1150: 230 images per plane drawn from ``es``: the real part of the study's hybrid set.
    lora-100: 20 images per plane drawn from ``es``: the study's LoRA fine-tuning set.

Subsets are drawn by a seeded rule (``draw_per_plane``); ``subset_csv`` reproduces a published selection.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import datasets

from fulora_data.builders.base import (
    FuloraBuilder,
    FuloraConfig,
    Record,
    ResolvedSource,
    read_table,
    require_columns,
)
from fulora_data.errors import ConfigError, DataError
from fulora_data.io import resolve_under
from fulora_data.splits import per_plane_positions
from fulora_data.taxonomy import CERVIX, PLANES, canonical_plane

_VERSION = datasets.Version("1.0.0")
CSV_NAME = "FETAL_PLANES_DB_data.csv"
COLUMNS = ("Image_name", "Patient_num", "Plane", "Brain_plane", "Operator", "US_Machine", "Train")
EXTRA_COLUMNS: dict[str, datasets.features.FeatureType] = {
    "brain_plane": datasets.Value("string"),
    "operator": datasets.Value("string"),
    "us_machine": datasets.Value("string"),
}
"""The Spanish set's own columns, after the shared ones (the hybrid keeps them, empty for synthetic rows)."""


@dataclass
class SpanishConfig(FuloraConfig):
    """Options of the ``spanish`` builder.

    Attributes:
        pool: ``"all"`` for both splits and six classes, ``"es"`` for the five-class training split.
        per_plane: Draw this many images per plane from the pool (``None`` keeps the whole pool).
        subset_csv: A CSV with an ``Image_name`` column (like the study's published lists): keep exactly
            the listed images instead of drawing. Rows whose ``Plane``/``category`` column names a class
            outside the config are skipped; listed images absent from the pool are an error.
        seed: Seed of the per-plane draw.
    """

    pool: str = "es"
    per_plane: int | None = None
    subset_csv: str | None = None
    seed: int = 0


def draw_per_plane(
    records: list[Record],
    per_plane: int,
    seed: int,
    planes=PLANES,
    where: str = "the source",
    hint: str = "use a larger source or pass --subset-csv",
) -> list[Record]:
    """Draw ``per_plane`` records of each plane, reproducibly, keeping the source order.

    The rule is ``fulora_data.splits.per_plane_positions`` (per plane in label order, rows sorted by image
    name, ``numpy.random.default_rng(seed).choice(n, per_plane, replace=False)``), applied to records.

    Raises:
        DataError: If a plane has fewer than ``per_plane`` records.
    """
    positions = per_plane_positions(
        [r.plane for r in records],
        [r.image_id for r in records],
        per_plane,
        seed,
        planes,
        where=where,
        hint=hint,
    )
    return [records[i] for i in positions]


def select_listed(records: list[Record], subset_csv: Path, planes: list[str], pool_name: str) -> list[Record]:
    """Keep exactly the records listed in a subset CSV (see ``SpanishConfig.subset_csv``).

    Raises:
        DataError: If the CSV has no ``Image_name`` column, lists an image absent from the pool, or gives
            a listed image another plane than the source does.
    """
    header, rows = read_table(subset_csv)
    require_columns(subset_csv, header, ("Image_name",))
    plane_column = next((c for c in ("Plane", "category", "plane", "label") if c in header), None)
    wanted: dict[str, str | None] = {}
    for line, row in enumerate(rows, start=2):
        try:
            plane = canonical_plane(row[plane_column], study_codes=True) if plane_column else None
        except DataError as err:
            raise DataError(f"{subset_csv} line {line}: {err}") from None
        if plane is not None and plane not in planes:
            continue
        name = row["Image_name"].removesuffix(".png")
        if name in wanted:
            raise DataError(f"{subset_csv} lists {name!r} twice")
        wanted[name] = plane
    by_id = {r.image_id: r for r in records}
    absent = [name for name in wanted if name not in by_id]
    if absent:
        raise DataError(
            f"{subset_csv} lists {len(absent)} images that are not in the {pool_name!r} pool of the source "
            f"(first: {absent[0]!r})"
        )
    for name, plane in wanted.items():
        if plane is not None and by_id[name].plane != plane:
            raise DataError(
                f"{subset_csv} labels {name!r} as {plane!r} but the source says {by_id[name].plane!r}"
            )
    return [r for r in records if r.image_id in wanted]


class SpanishBuilder(FuloraBuilder):
    """FETAL_PLANES_DB (Burgos-Artizzu et al. 2020), CC BY 4.0: see the module docstring."""

    NAME = "spanish"
    DESCRIPTION = (
        "FETAL_PLANES_DB: 12,400 maternal-fetal ultrasound images from two hospitals in Barcelona, "
        "labelled by an expert clinician into six classes (four fetal planes, maternal cervix, other)."
    )
    HOMEPAGE = "https://zenodo.org/records/3904280"
    SOURCE_URL = "https://zenodo.org/records/3904280/files/FETAL_PLANES_ZENODO.zip"
    ARCHIVE_NAME = "FETAL_PLANES_ZENODO.zip"
    ARCHIVE_MD5 = None  # not published with the record and not knowable offline: recorded, not checked
    LICENSE = "cc-by-4.0"
    CITATION = """@article{burgos2020fetalplanes,
  title={Evaluation of deep convolutional neural networks for automatic classification of common maternal fetal ultrasound planes},
  author={Burgos-Artizzu, Xavier P. and Coronado-Guti{\\'e}rrez, David and Valenzuela-Alcaraz, Brenda and Bonet-Carne, Elisenda and Eixarch, Elisenda and Crispi, F{\\'a}tima and Gratac{\\'o}s, Eduard},
  journal={Scientific Reports},
  volume={10},
  pages={10200},
  year={2020},
  doi={10.1038/s41598-020-67076-5}
}"""
    RELEASE_NOTES = {
        "1.0.0": "First release: configs full, es, es-1150, lora-100 from Zenodo record 3904280 v1."
    }
    VERSION = _VERSION
    ROOT_MARKER = CSV_NAME
    # The published release: 12,400 rows; train 7,129 and test 5,271; ES = train without cervix.
    COMPLETE_ROWS = 12400
    EXPECTED_SPLITS = {"full": {"train": 7129, "test": 5271}, "es": {"train": 6148}}

    BUILDER_CONFIG_CLASS = SpanishConfig
    BUILDER_CONFIGS = [
        SpanishConfig(
            name="full", version=_VERSION, pool="all", description="All six classes, train and test."
        ),
        SpanishConfig(
            name="es", version=_VERSION, pool="es", description="Training split, five classes (ES)."
        ),
        SpanishConfig(
            name="es-1150", version=_VERSION, pool="es", per_plane=230, description="230 ES images per plane."
        ),
        SpanishConfig(
            name="lora-100", version=_VERSION, pool="es", per_plane=20, description="20 ES images per plane."
        ),
    ]
    DEFAULT_CONFIG_NAME = "es"

    def _with_cervix(self) -> bool:
        return self.config.pool == "all"

    def _extra_features(self):
        return dict(EXTRA_COLUMNS)

    def _read_records(self, source: ResolvedSource) -> dict[str, list[Record]]:
        if self.config.pool not in ("all", "es"):
            raise ConfigError(f"pool must be 'all' or 'es', got {self.config.pool!r}")
        per_plane = self.config.per_plane
        if per_plane is not None and (
            isinstance(per_plane, bool) or not isinstance(per_plane, int) or per_plane < 1
        ):
            raise ConfigError(f"per_plane must be a whole number of at least 1, got {per_plane!r}")
        seed = self.config.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be a whole number of at least 0, got {seed!r}")
        csv_path = source.root / CSV_NAME
        header, rows = read_table(csv_path)
        require_columns(csv_path, header, COLUMNS)
        self._row_count = len(rows)
        splits: dict[str, list[Record]] = {"train": [], "test": []}
        seen: set[str] = set()
        images = source.root / "Images"
        for line, row in enumerate(rows, start=2):
            name = row["Image_name"]
            if not name:
                raise DataError(f"{csv_path} line {line}: empty Image_name")
            if name in seen:
                raise DataError(f"{csv_path} line {line}: image {name!r} is listed twice")
            seen.add(name)
            try:
                plane = canonical_plane(row["Plane"])
            except DataError as err:
                raise DataError(f"{csv_path} line {line}: {err}") from None
            flag = row["Train"]
            if flag not in ("0", "1"):
                raise DataError(f"{csv_path} line {line}: Train must be 0 or 1, got {flag!r}")
            record = Record(
                image_id=name,
                path=resolve_under(images, f"{name}.png", f"{csv_path} line {line} column Image_name"),
                plane=plane,
                patient_id=row["Patient_num"],
                extra={
                    "brain_plane": row["Brain_plane"],
                    "operator": row["Operator"],
                    "us_machine": row["US_Machine"],
                },
            )
            splits["train" if flag == "1" else "test"].append(record)
        if self.config.pool == "all":
            selected = splits
        else:
            selected = {"train": [r for r in splits["train"] if r.plane != CERVIX]}
        classes = list(PLANES) + ([CERVIX] if self._with_cervix() else [])
        if self.config.subset_csv:
            subset = Path(self.config.subset_csv)
            selected = self._select_listed(selected, subset, classes)
            self._provenance["subset"] = {
                "method": "csv",
                "csv": subset.name,
                "csv_sha256": hashlib.sha256(subset.read_bytes()).hexdigest(),
            }
        elif self.config.per_plane is not None:
            selected = {
                split: draw_per_plane(
                    rows_,
                    self.config.per_plane,
                    self.config.seed,
                    classes,
                    source.location,
                    hint=f"use a larger {self.source_option} or pass {self.option_flag('subset_csv')}",
                )
                for split, rows_ in selected.items()
            }
            self._provenance["subset"] = {
                "method": "seeded-draw",
                "per_plane": self.config.per_plane,
                "seed": self.config.seed,
                "rule": "fulora_data.splits.per_plane_positions",
            }
        return selected

    def _select_listed(self, selected, subset: Path, classes: list[str]) -> dict[str, list[Record]]:
        """Apply a subset CSV across every split of the pool."""
        everything = [r for rows in selected.values() for r in rows]
        kept = {r.image_id for r in select_listed(everything, subset, classes, self.config.pool)}
        return {split: [r for r in rows if r.image_id in kept] for split, rows in selected.items()}

    def _is_complete_release(self, source, records) -> bool:
        return getattr(self, "_row_count", 0) == self.COMPLETE_ROWS and not self.config.subset_csv
