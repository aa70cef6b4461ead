"""Hybrid training sets: real Spanish images plus synthetic ones, as in the FU-LoRA study.

Sources: the prepared ``spanish`` and ``synthetic`` datasets (built on demand through
``fulora_data.builders.build``, so their own sources, checksums and caches apply). License: the parts' (CC BY 4.0).

Configs:
    es1150-syn5000 (default): the study's hybrid set "HB": spanish ``es-1150`` (230 real images per plane)
        plus the 5,000 images of the ``synthetic`` release (1,000 per plane); five classes.
    es1150-generated: spanish ``es-1150`` plus every image of a fulora-generated folder.
Options choose the real config (``real_config``, a five-class one), the real and synthetic sources, the
synthetic config and how many synthetic images per plane (``synthetic_per_plane``, drawn by the same seeded
rule as the Spanish subsets: ``fulora_data.splits.per_plane_positions``).

Splits: ``train`` and ``validation``. The study held out 200 random training images for validation; here
``validation_size`` images are drawn by a seeded rule over groups, where a group is all real images of one
patient or one synthetic image, so one patient's images never straddle train and validation. Groups are
visited in the order of ``numpy.random.default_rng(seed).permutation`` and taken while they fit
(``fulora_data.splits.hold_out_groups``). The default
size is the study's 200, capped at a tenth of the set (so a tiny demo set keeps most of its images for
training); ``validation_size=0`` gives no validation split.

Why a builder that stores a plan and not the rows: a hybrid split is a selection of rows of two datasets
that are already built. The build writes only ``hybrid_plan.json`` (which rows of which part go to which
split, and a digest of the parts' image ids); ``as_dataset`` memory-maps the parts' Arrow files, aligns
their columns (real metadata empty for synthetic rows, generation provenance empty for real rows) and
returns ``concatenate_datasets(...).select(rows)``. No image byte is copied, so building takes about the
same time whatever the size, and ``fulora data prepare|info|export hybrid`` work as for any dataset.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from fulora_data import datasets_internals as hf
from fulora_data.builders.base import PROVENANCE_FILE, FuloraBuilder, FuloraConfig
from fulora_data.builders.build import build, column, load_provenance, make_builder
from fulora_data.builders.spanish import EXTRA_COLUMNS, SpanishBuilder
from fulora_data.builders.synthetic import STUDY_CITATION, SyntheticBuilder, provenance_features
from fulora_data.errors import ConfigError, DataError
from fulora_data.io import atomic_write_text
from fulora_data.splits import hold_out_groups, per_plane_positions
from fulora_data.taxonomy import PLANES, base_features

_VERSION = datasets.Version("1.0.0")
PLAN_FILE = "hybrid_plan.json"
STUDY_VALIDATION_SIZE = 200
REAL_COLUMNS = EXTRA_COLUMNS
"""The Spanish set's own columns, kept (empty for synthetic rows)."""


@dataclass
class HybridConfig(FuloraConfig):
    """Options of the ``hybrid`` builder.

    Attributes:
        real_config: The ``spanish`` config of the real part (five classes: ``es``, ``es-1150``, ``lora-100``).
        real_source: The Spanish archive or folder (``None`` downloads it).
        real_subset_csv: Keep exactly these Spanish images (e.g. the study's ``spain_train_1150_balanced.csv``).
        synthetic_config: The ``synthetic`` config of the synthetic part (``release`` or ``generated``).
        synthetic_source: The synthetic zip or folder (``None`` downloads the release).
        labels: Labels CSV for a synthetic release without per-plane folders.
        verify_checksum: Check the synthetic release archive's published md5.
        synthetic_per_plane: Synthetic images per plane; ``None`` keeps all.
        validation_size: Images held out for validation; ``None`` for the study's 200 capped at a tenth.
        seed: Seed of the synthetic draw and of the validation split.
    """

    real_config: str = "es-1150"
    real_source: str | None = None
    real_subset_csv: str | None = None
    synthetic_config: str = "release"
    synthetic_source: str | None = None
    labels: str | None = None
    verify_checksum: bool = True
    synthetic_per_plane: int | None = 1000
    validation_size: int | None = None
    seed: int = 0


def hybrid_features() -> datasets.Features:
    """The hybrid's columns: the shared ones, then the real part's, then the synthetic provenance."""
    return datasets.Features({**base_features(False), **REAL_COLUMNS, **provenance_features()})


def _ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


class HybridBuilder(FuloraBuilder):
    """Real plus synthetic training sets (FU-LoRA's "HB"): see the module docstring."""

    NAME = "hybrid"
    VERSION = _VERSION
    DESCRIPTION = (
        "Hybrid training sets of the FU-LoRA study: real FETAL_PLANES_DB images plus synthetic images "
        "generated by Stable Diffusion 1.5 with a LoRA adapter; five classes; a patient-safe validation split."
    )
    HOMEPAGE = "https://arxiv.org/abs/2407.20072"
    LICENSE = "cc-by-4.0"
    RELEASE_NOTES = {"1.0.0": "First release: configs es1150-syn5000 (the study's HB) and es1150-generated."}

    BUILDER_CONFIG_CLASS = HybridConfig
    BUILDER_CONFIGS = [
        HybridConfig(
            name="es1150-syn5000",
            version=_VERSION,
            description="The study's hybrid set: spanish es-1150 + the 5,000 synthetic images of the release.",
        ),
        HybridConfig(
            name="es1150-generated",
            version=_VERSION,
            synthetic_config="generated",
            synthetic_per_plane=None,
            description="spanish es-1150 + every image of a fulora-generated folder.",
        ),
    ]
    DEFAULT_CONFIG_NAME = "es1150-syn5000"

    CITATION = f"{STUDY_CITATION}\n\n{SpanishBuilder.CITATION}"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=self.DESCRIPTION,
            features=hybrid_features(),
            homepage=self.HOMEPAGE,
            license=self.LICENSE,
            citation=self.CITATION,
        )

    # ------------------------------------------------------------------ parts
    def _part_requests(self) -> dict[str, tuple[type[FuloraBuilder], str, dict[str, Any]]]:
        """The ``make_builder`` arguments of each part: ``{part: (builder class, config, options)}``."""
        c = self.config
        if c.source:
            raise ConfigError(
                "hybrid is assembled from the spanish and synthetic datasets: pass --real-source and "
                f"--synthetic-source instead of --source (got {c.source!r})"
            )
        # Options every builder inherits that mean nothing to an assembly of two parts: refuse them rather than
        # let a user believe an archive was checked or a split filtered.
        if c.archive_md5 is not None:
            raise ConfigError(
                f"hybrid checks no archive itself (got --md5 {c.archive_md5!r}); prepare the spanish or "
                "synthetic part with --md5 to check its archive"
            )
        if c.drop_test_duplicates:
            raise ConfigError("hybrid has no test split, so --drop-test-duplicates does not apply to it")
        real = {"source": c.real_source, "subset_csv": c.real_subset_csv}
        synthetic = {"source": c.synthetic_source, "labels": c.labels}
        if c.synthetic_config == "release" and not c.verify_checksum:
            # Only when off: passing the default would give the part another cache key than a plain prepare.
            synthetic["verify_checksum"] = False
        return {
            "real": (SpanishBuilder, c.real_config, real),
            "synthetic": (SyntheticBuilder, c.synthetic_config, synthetic),
        }

    def _load_parts(self) -> dict[str, tuple[FuloraBuilder, datasets.Dataset]]:
        """Build (or reuse) both parts once per builder instance: the plan and the assembly share them."""
        cached = getattr(self, "_parts_cache", None)
        if cached is not None:
            return cached
        parts = {}
        for part, (cls, config, options) in self._part_requests().items():
            name = cls.NAME
            source = options.pop("source")
            builder = make_builder(cls, config, source=source, cache_dir=hf.cache_root(self), **options)
            builder.source_option = f"--{part}-source"
            builder.option_flags = {"subset_csv": "--real-subset-csv"} if part == "real" else {}
            splits = build(builder)
            if "train" not in splits:
                raise ConfigError(f"{name} config {config!r} has no train split to draw a hybrid from")
            names = splits["train"].features["label"].names
            if names != list(PLANES):
                raise ConfigError(
                    f"hybrid needs five-class parts; {name} config {config!r} has classes {', '.join(names)}"
                )
            parts[part] = (builder, splits["train"])
        self._parts_cache = parts
        return parts

    # ------------------------------------------------------------------ build: write the plan
    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        c = self.config
        parts = self._load_parts()
        real, synthetic = parts["real"][1], parts["synthetic"][1]
        real_ids, syn_ids = column(real, "image_id"), column(synthetic, "image_id")
        if c.synthetic_per_plane is None:
            syn_rows = list(range(len(synthetic)))
        elif c.synthetic_per_plane < 0:
            raise ConfigError(f"synthetic_per_plane must be at least 0, got {c.synthetic_per_plane!r}")
        else:
            syn_rows = per_plane_positions(
                [PLANES[label] for label in column(synthetic, "label")],
                syn_ids,
                c.synthetic_per_plane,
                c.seed,
                PLANES,
                shortfall=(
                    "the synthetic source has {available} {plane} images but synthetic_per_plane={per_plane} "
                    "asks for more; lower --synthetic-per-plane or use a larger synthetic source"
                ),
            )
        # One pool in split order: real rows, then the drawn synthetic rows.
        pool = [("real", i) for i in range(len(real))] + [("synthetic", j) for j in syn_rows]
        patients = column(real, "patient_id")
        groups = [
            f"patient:{patients[i]}" if part == "real" and patients[i] else f"{part}:{i}" for part, i in pool
        ]
        size = self._validation_size(len(pool))
        held_out = set(hold_out_groups(groups, size, c.seed))
        splits = {"train": [k for k in range(len(pool)) if k not in held_out]}
        if size:
            splits["validation"] = sorted(held_out)
        plan = {
            "parts": {
                part: {
                    "name": builder.NAME,
                    "config": builder.config.name,
                    "num_rows": len(dataset),
                    "image_ids_sha256": _ids_digest(real_ids if part == "real" else syn_ids),
                }
                for part, (builder, dataset) in parts.items()
            },
            "splits": {
                split: {
                    "real": [pool[k][1] for k in rows if pool[k][0] == "real"],
                    "synthetic": [pool[k][1] for k in rows if pool[k][0] == "synthetic"],
                }
                for split, rows in splits.items()
            },
        }
        out = Path(hf.output_dir(self))
        atomic_write_text(out / PLAN_FILE, json.dumps(plan))
        split_dict = datasets.SplitDict(dataset_name=self.dataset_name)
        for split, rows in splits.items():
            split_dict.add(
                datasets.SplitInfo(name=split, num_examples=len(rows), dataset_name=self.dataset_name)
            )
        self.info.splits = split_dict
        provenance = {
            "builder": self.NAME,
            "config": c.name,
            "version": str(c.version),
            "parts": {part: load_provenance(builder) for part, (builder, _) in parts.items()},
            "synthetic_draw": {
                "per_plane": c.synthetic_per_plane,
                "seed": c.seed,
                "rule": "fulora_data.splits.per_plane_positions",
            },
            "validation": {
                "size": len(held_out),
                "requested": c.validation_size,
                "seed": c.seed,
                "rule": "fulora_data.splits.hold_out_groups (whole patients; study: 200 random images)",
            },
            "splits": {split: len(rows) for split, rows in splits.items()},
            "sources": {
                split: {name: len(rows_) for name, rows_ in plan["splits"][split].items()} for split in splits
            },
        }
        atomic_write_text(out / PROVENANCE_FILE, json.dumps(provenance, indent=2, sort_keys=True))

    def _validation_size(self, total: int) -> int:
        wanted = self.config.validation_size
        if wanted is None:
            return min(STUDY_VALIDATION_SIZE, total // 10)
        if isinstance(wanted, bool) or not isinstance(wanted, int) or not 0 <= wanted < total:
            raise ConfigError(
                f"validation_size must be between 0 and {total - 1} (the hybrid set has {total} images), "
                f"got {wanted!r}"
            )
        return wanted

    # ------------------------------------------------------------------ load: assemble from the plan
    def _as_dataset(self, split=datasets.Split.TRAIN, in_memory: bool = False) -> datasets.Dataset:
        split = str(split)
        plan = json.loads(Path(hf.output_dir(self), PLAN_FILE).read_text())
        if split not in plan["splits"]:
            raise ConfigError(
                f"hybrid {self.config.name!r} has no split {split!r}; it has {', '.join(plan['splits'])}"
            )
        combined, offset = self._combined(plan)
        rows = plan["splits"][split]
        indices = rows["real"] + [offset + j for j in rows["synthetic"]]
        digest = hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()
        dataset = combined.select(
            indices, keep_in_memory=True, new_fingerprint=hf.derived_fingerprint(combined, "select", digest)
        )
        return hf.set_split(dataset, split)

    def _combined(self, plan: dict) -> tuple[datasets.Dataset, int]:
        """Return both parts as one dataset (real rows first) and the synthetic part's offset."""
        cached = getattr(self, "_combined_cache", None)
        if cached is not None:
            return cached
        parts = self._load_parts()
        features = hybrid_features()
        aligned = []
        for part in ("real", "synthetic"):
            builder, dataset = parts[part]
            expected = plan["parts"][part]
            if (
                len(dataset) != expected["num_rows"]
                or _ids_digest(column(dataset, "image_id")) != expected["image_ids_sha256"]
            ):
                raise DataError(
                    f"the cached {builder.NAME} {builder.config.name!r} build at {hf.output_dir(builder)} is not the "
                    f"one this hybrid was built from; delete {hf.output_dir(self)} to rebuild the hybrid"
                )
            aligned.append(align_columns(dataset, features))
        combined = datasets.concatenate_datasets(aligned)
        self._combined_cache = (combined, len(aligned[0]))
        return self._combined_cache


def align_columns(dataset: datasets.Dataset, features: datasets.Features) -> datasets.Dataset:
    """Give a dataset exactly ``features``' columns, in order, without touching its image bytes.

    Missing text columns are filled with ``""`` and missing numeric ones with ``None``; the new columns are
    small in-memory Arrow arrays joined to the memory-mapped table.

    Raises:
        DataError: If a column the dataset has differs in type from ``features``, or is not in it.
    """
    unknown = [name for name in dataset.column_names if name not in features]
    if unknown:
        raise DataError(
            f"column {unknown[0]!r} of {dataset.info.builder_name or 'a part'} has no place in the hybrid"
        )
    for name, feature in features.items():
        if name in dataset.features:
            if dataset.features[name] != feature:
                raise DataError(
                    f"column {name!r} is {dataset.features[name]!r} in a part but {feature!r} in the hybrid"
                )
            continue
        is_text = isinstance(feature, datasets.Value) and feature.dtype == "string"
        dataset = dataset.add_column(
            name,
            ["" if is_text else None] * len(dataset),
            feature=feature,
            new_fingerprint=hf.derived_fingerprint(dataset, "add_column", name, str(feature)),
        )
    return dataset.select_columns(list(features))
