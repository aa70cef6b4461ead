"""Maternal-fetal ultrasound planes from low-resource settings in five African countries.

Source: Sendra-Balcells et al., "Generalisability of fetal ultrasound deep learning models to low-resource
imaging settings in five African countries", Sci Rep 13, 2728 (2023); Zenodo record 7540448, file
``Zenodo_dataset.tar.xz``. License: CC BY 4.0.

The archive holds ``Zenodo_dataset/African_planes_database.csv`` (``,``-separated; columns include
``Patient_num, Plane, Train, Center, Image_name``) and one folder per country (``Algeria/ Egypt/ Ghana/
Malawi/ Uganda/``) of ``<Image_name>.png``: 450 images of four planes (no Other), grayscale and RGB mixed,
sizes differing by country. Images are delivered in one mode, grayscale ``L`` (the shared ``image``
feature); the stored bytes are the archive's.

Splits ``train`` and ``test`` come from ``Train``; ``test`` (233 images) is fulora's zero-shot target.
Configs: ``all`` and one per country. Patient numbers restart in each country, so ``patient_id`` is
``<Country>-<Patient_num>``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from fulora_data.taxonomy import CERVIX, canonical_plane

_VERSION = datasets.Version("1.0.0")
CSV_NAME = "African_planes_database.csv"
COUNTRIES = ("Algeria", "Egypt", "Ghana", "Malawi", "Uganda")
COLUMNS = ("Patient_num", "Plane", "Train", "Center", "Image_name")


@dataclass
class AfricanConfig(FuloraConfig):
    """Options of the ``african`` builder.

    Attributes:
        country: Keep one country's images (one of ``COUNTRIES``); ``None`` keeps all five.
    """

    country: str | None = None


class AfricanBuilder(FuloraBuilder):
    """The African fetal planes set (Sendra-Balcells et al. 2023), CC BY 4.0: see the module docstring."""

    NAME = "african"
    DESCRIPTION = (
        "Maternal-fetal ultrasound images of four fetal planes (abdomen, brain, femur, thorax) acquired in "
        "five centres in Algeria, Egypt, Ghana, Malawi and Uganda with low-resource equipment."
    )
    HOMEPAGE = "https://zenodo.org/records/7540448"
    SOURCE_URL = "https://zenodo.org/records/7540448/files/Zenodo_dataset.tar.xz"
    ARCHIVE_NAME = "Zenodo_dataset.tar.xz"
    ARCHIVE_MD5 = None  # not knowable offline: recorded in the provenance, not checked
    LICENSE = "cc-by-4.0"
    CITATION = """@article{sendra2023african,
  title={Generalisability of fetal ultrasound deep learning models to low-resource imaging settings in five African countries},
  author={Sendra-Balcells, Carla and Campello, V{\\'i}ctor M. and Torrents-Barrena, Jordina and Ahmed, Yahya Ali and Elattar, Mustafa and Ohene-Botwe, Benard and Nyangulu, Pempho and Stones, William and Ammar, Mohammed and Benamer, Lamya Nawal and others},
  journal={Scientific Reports},
  volume={13},
  pages={2728},
  year={2023},
  doi={10.1038/s41598-023-29490-3}
}"""
    RELEASE_NOTES = {
        "1.0.0": "First release: configs all and one per country, from Zenodo record 7540448 v1.0."
    }
    VERSION = _VERSION
    ROOT_MARKER = CSV_NAME
    COMPLETE_ROWS = 450
    EXPECTED_SPLITS = {"all": {"train": 217, "test": 233}}

    BUILDER_CONFIG_CLASS = AfricanConfig
    BUILDER_CONFIGS = [
        AfricanConfig(name="all", version=_VERSION, description="All five countries."),
        *(
            AfricanConfig(name=country, version=_VERSION, country=country, description=f"{country} only.")
            for country in COUNTRIES
        ),
    ]
    DEFAULT_CONFIG_NAME = "all"

    def _extra_features(self):
        return {"country": datasets.Value("string")}

    def _country(self) -> str | None:
        wanted = self.config.country
        if wanted is None:
            return None
        for country in COUNTRIES:
            if country.lower() == str(wanted).strip().lower():
                if self.config.name in COUNTRIES and self.config.name != country:
                    # The card of config "Ghana" says "Ghana only": building Egypt under it would be wrong data.
                    raise ConfigError(
                        f"config {self.config.name!r} is {self.config.name} only but --country is {wanted!r}; "
                        f"use -c {country} (or -c all --country {country})"
                    )
                return country
        raise ConfigError(f"country must be one of {', '.join(COUNTRIES)}, got {wanted!r}")

    def _read_records(self, source: ResolvedSource) -> dict[str, list[Record]]:
        country = self._country()
        csv_path = source.root / CSV_NAME
        header, rows = read_table(csv_path, delimiter=",")
        # Find columns by name, whatever their order or case.
        lookup = {name.lower(): name for name in header}
        require_columns(csv_path, [name.lower() for name in header], tuple(c.lower() for c in COLUMNS))
        col = {c: lookup[c.lower()] for c in COLUMNS}
        self._row_count = len(rows)
        splits: dict[str, list[Record]] = {"train": [], "test": []}
        seen: set[str] = set()
        for line, row in enumerate(rows, start=2):
            name, center = row[col["Image_name"]], row[col["Center"]]
            if name in seen:
                raise DataError(f"{csv_path} line {line}: image {name!r} is listed twice")
            seen.add(name)
            try:
                plane = canonical_plane(row[col["Plane"]])
            except DataError as err:
                raise DataError(f"{csv_path} line {line}: {err}") from None
            if plane == CERVIX:
                raise DataError(f"{csv_path} line {line}: {plane!r} is not a plane of this dataset")
            flag = row[col["Train"]]
            if flag not in ("0", "1"):
                raise DataError(f"{csv_path} line {line}: Train must be 0 or 1, got {flag!r}")
            if country is not None and center != country:
                continue
            record = Record(
                image_id=name,
                path=resolve_under(
                    resolve_under(source.root, center, f"{csv_path} line {line} column Center"),
                    f"{name}.png",
                    f"{csv_path} line {line} column Image_name",
                ),
                plane=plane,
                patient_id=f"{center}-{row[col['Patient_num']]}",
                extra={"country": center},
            )
            splits["train" if flag == "1" else "test"].append(record)
        return splits

    def _is_complete_release(self, source, records) -> bool:
        return getattr(self, "_row_count", 0) == self.COMPLETE_ROWS
