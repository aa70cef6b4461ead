"""Synthetic fetal-ultrasound planes made by Stable Diffusion 1.5 with a LoRA adapter (FU-LoRA).

Two kinds of source, one config each:

``release`` (default): the study's published set, Zenodo record 13228158, ``synthetic_train_5000.zip``
    (md5 ``af2aa250402ed01a09f3219ce050b9a1``): 5,000 PNGs, 1,000 per plane, named
    ``<generation index>-<seed>`` (e.g. ``00000-2671683618``), made with the Euler and UniPC samplers from
    the rank-128 adapter. The zip's inner layout is not documented, so PNGs are found anywhere inside it
    (``__MACOSX`` and dot-files ignored). Labels come from per-plane folder names when every image sits in
    one (``Fetal brain/``, ``fetal_brain/``, ``brain/`` ...); otherwise from a labels CSV
    (``Image_name,Plane,...`` like the study's ``synthetic_train_5000.csv``) given as ``labels``. When both
    exist they must agree. Which sampler made which image is not recorded by the release, so ``sampler`` and
    the other generation fields are empty; ``seed`` and ``generation_index`` are parsed from the file name.
    A local archive that is not the published file (e.g. a re-zipped subset) fails the checksum; build it
    with ``verify_checksum=False`` (``--no-verify``), which the provenance and the card record.
``generated``: a folder written by fulora's generator (format in ``fulora_data.generated``), whose
    metadata records every image's full provenance; it is cross-checked against its shards.

One split, ``train``; five classes; ``source`` is ``"synthetic"`` and ``patient_id`` is empty.
"""

from __future__ import annotations

import hashlib
import re
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
from fulora_data.builders.checks import check_image_bytes, in_order, read_checked
from fulora_data.errors import ChecksumError, ConfigError, DataError, SourceNotFoundError
from fulora_data.generated import (
    PROVENANCE_FIELDS,
    GeneratedImage,
    is_generated_folder,
    iter_images,
    read_generated,
)
from fulora_data.taxonomy import CERVIX, PLANES, canonical_plane


def _checked(pair: tuple[Record, bytes]) -> tuple[Record, bytes]:
    """Check one image of a generated set's stream (run in ``in_order``'s thread pool)."""
    record, data = pair
    check_image_bytes(data, record.path / record.image_id if record.generated else record.path)
    return pair

_VERSION = datasets.Version("1.1.0")
NAME_RE = re.compile(r"^(\d+)-(\d+)$")
"""The release's file names: generation index, a dash, the seed."""

STUDY_CITATION = """@misc{wang2024fulora,
  title={FU-LoRA: Synthetic Fetal Ultrasound Images for Standard Anatomical Planes Classification},
  author={Wang, Fangyijie and Silvestre, Gu{\\'e}nol{\\'e} and Curran, Kathleen M.},
  year={2024},
  eprint={2407.20072},
  archivePrefix={arXiv},
  url={https://arxiv.org/abs/2407.20072}
}"""

_STRING_FIELDS = ("sampler", "prompt", "negative_prompt", "base_model", "base_model_revision", "adapter",
                  "adapter_revision", "adapter_sha256")  # fmt: skip


def provenance_features() -> dict[str, datasets.features.FeatureType]:
    """The per-image generation columns of synthetic data, in order (empty/``None`` where unknown)."""
    kinds = {
        "sampler": datasets.Value("string"),
        "seed": datasets.Value("int64"),
        "generation_index": datasets.Value("int64"),
        "prompt": datasets.Value("string"),
        "negative_prompt": datasets.Value("string"),
        "steps": datasets.Value("int32"),
        "guidance_scale": datasets.Value("float64"),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "base_model": datasets.Value("string"),
        "base_model_revision": datasets.Value("string"),
        "adapter": datasets.Value("string"),
        "adapter_revision": datasets.Value("string"),
        "lora_rank": datasets.Value("int32"),
        "adapter_sha256": datasets.Value("string"),
        "adapter_scale": datasets.Value("float64"),
        "clip_skip": datasets.Value("int32"),
    }
    if set(kinds) != set(PROVENANCE_FIELDS):  # keeps this table and the generated format in step
        raise RuntimeError(f"provenance columns {sorted(kinds)} differ from {sorted(PROVENANCE_FIELDS)}")
    return kinds


def empty_provenance() -> dict[str, object]:
    """Provenance values of an image whose source records nothing: ``""`` for text, ``None`` for numbers."""
    return {name: "" if name in _STRING_FIELDS else None for name in provenance_features()}


@dataclass
class SyntheticConfig(FuloraConfig):
    """Options of the ``synthetic`` builder.

    Attributes:
        kind: ``"release"`` (the study's zip or its extracted folder) or ``"generated"`` (a fulora folder).
        labels: A labels CSV (``Image_name`` and ``Plane`` columns) for a release without per-plane folders.
        verify_checksum: Check a release archive's md5 against the published one. Turn off only to build
            from a local archive that is knowingly not the published file.
    """

    kind: str = "release"
    labels: str | None = None
    verify_checksum: bool = True


@dataclass
class SyntheticRecord(Record):
    """A synthetic image: a PNG file, or an entry of a generated folder's shard."""

    generated: GeneratedImage | None = None


def _is_ignored(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


class SyntheticBuilder(FuloraBuilder):
    """Synthetic planes of the FU-LoRA study or of fulora's generator: see the module docstring."""

    NAME = "synthetic"
    VERSION = _VERSION
    DESCRIPTION = (
        "Synthetic fetal-ultrasound images of five standard planes generated by Stable Diffusion 1.5 "
        "fine-tuned with LoRA on 100 images of FETAL_PLANES_DB (FU-LoRA). Generated, not acquired: not "
        "for clinical use."
    )
    HOMEPAGE = "https://zenodo.org/records/13228158"
    SOURCE_URL = "https://zenodo.org/records/13228158/files/synthetic_train_5000.zip"
    ARCHIVE_NAME = "synthetic_train_5000.zip"
    ARCHIVE_MD5 = "af2aa250402ed01a09f3219ce050b9a1"
    # The Zenodo record's licence as listed there; it could not be re-checked offline when this was written.
    LICENSE = "cc-by-4.0"
    CITATION = STUDY_CITATION
    RELEASE_NOTES = {
        "1.0.0": "First release: config release (Zenodo record 13228158) and generated (fulora's generator).",
        "1.1.0": "generated: the provenance columns adapter_sha256, adapter_scale and clip_skip (`fulora "
        "generate`'s records); a cache built before them is rebuilt.",
    }
    RELEASE_FACTS = {
        "generator": "Stable Diffusion 1.5 with a rank-128 LoRA adapter fine-tuned on 100 FETAL_PLANES_DB images",
        "samplers": "Euler and UniPC (which image used which is not recorded in the release)",
        "per_plane": 1000,
    }
    EXPECTED_SPLITS = {"release": {"train": 5000}}

    BUILDER_CONFIG_CLASS = SyntheticConfig
    BUILDER_CONFIGS = [
        SyntheticConfig(
            name="release",
            version=_VERSION,
            kind="release",
            description="The study's 5,000 synthetic images (Zenodo 13228158), 1,000 per plane.",
        ),
        SyntheticConfig(
            name="generated",
            version=_VERSION,
            kind="generated",
            description="A folder written by fulora's generator, with full per-image provenance.",
        ),
    ]
    DEFAULT_CONFIG_NAME = "release"

    def _extra_features(self):
        return provenance_features()

    # ------------------------------------------------------------------ source resolution
    def _resolve_source(self, dl_manager) -> ResolvedSource:
        if self.config.kind not in ("release", "generated"):
            raise ConfigError(f"kind must be 'release' or 'generated', got {self.config.kind!r}")
        if self.config.kind == "release":
            return super()._resolve_source(dl_manager)
        if not self.config.source:
            raise SourceNotFoundError(
                f"the generated config needs {self.source_option}: a folder written by fulora's generator"
            )
        path = Path(self.config.source).expanduser()
        if not path.is_dir() or not is_generated_folder(path):
            raise SourceNotFoundError(
                f"{path} is not a folder written by fulora's generator (no fulora_generated.json); "
                "for the study's zip use --config release"
            )
        return ResolvedSource(root=path, kind="folder", location=str(path))

    def _expected_checksums(self) -> tuple[str | None, str | None]:
        if not self.config.verify_checksum:  # --no-verify: only an explicit --md5 is checked
            return self.config.archive_md5, self.ARCHIVE_SHA256
        return super()._expected_checksums()

    def _from_archive(self, archive: Path, *, kind: str, location: str | None = None) -> ResolvedSource:
        try:
            return super()._from_archive(archive, kind=kind, location=location)
        except ChecksumError as err:
            if not self.config.verify_checksum:
                raise
            raise ChecksumError(
                f"{err}; to build from a local archive that is not the published {self.ARCHIVE_NAME}, "
                "pass --no-verify (verify_checksum=False)"
            ) from None

    def _find_root(self, folder: Path, archive: Path | None = None) -> Path:
        return folder  # the release's inner layout is undocumented: images are searched for everywhere

    def _source_provenance(self, source: ResolvedSource) -> dict:
        info = super()._source_provenance(source)
        if source.digests:
            info["source"]["checksum_verified"] = source.digests["md5"] == self.ARCHIVE_MD5
        return info

    # ------------------------------------------------------------------ records
    def _read_records(self, source: ResolvedSource) -> dict[str, list[Record]]:
        if self.config.kind == "generated":
            if self.config.labels:
                raise ConfigError(
                    f"a generated folder labels its own images; --labels {self.config.labels!r} is only for "
                    "a release without per-plane folders"
                )
            return {"train": self._generated_records(source)}
        return {"train": self._release_records(source)}

    def _release_records(self, source: ResolvedSource) -> list[Record]:
        root = source.root
        pngs = sorted(
            p
            for p in root.rglob("*")
            if p.suffix.lower() == ".png" and p.is_file() and not _is_ignored(p, root)
        )
        if not pngs:
            hint = (
                " (it is a fulora-generated folder: use --config generated)"
                if is_generated_folder(root)
                else ""
            )
            raise DataError(f"{source.location} holds no PNG images{hint}")
        paths: dict[str, Path] = {}
        for path in pngs:
            if path.stem in paths:
                raise DataError(
                    f"{source.location}: image name {path.stem!r} appears twice "
                    f"({paths[path.stem].relative_to(root)} and {path.relative_to(root)})"
                )
            paths[path.stem] = path
        folder_planes = self._folder_planes(paths, root)
        if self.config.labels:
            planes = self._csv_planes(Path(self.config.labels), paths, source.location)
            for name, plane in (folder_planes or {}).items():
                if planes[name] != plane:
                    raise DataError(
                        f"{self.config.labels} labels {name!r} as {planes[name]!r} but it sits in a "
                        f"{plane!r} folder"
                    )
            labels = Path(self.config.labels)
            self._provenance["labels_from"] = {
                "csv": labels.name,
                "csv_sha256": hashlib.sha256(labels.read_bytes()).hexdigest(),
            }
        elif folder_planes is not None:
            planes = folder_planes
            self._provenance["labels_from"] = "per-plane folders"
        else:
            raise DataError(
                f"{source.location} has {len(paths)} PNGs but no per-plane folders to label them; pass --labels "
                "with a CSV of Image_name and Plane (like the study's synthetic_train_5000.csv)"
            )
        records = []
        order = {plane: i for i, plane in enumerate(PLANES)}
        for name in sorted(paths, key=lambda n: (order[planes[n]], paths[n].relative_to(root).as_posix())):
            extra = empty_provenance()
            match = NAME_RE.match(name)
            if match:
                extra["generation_index"], extra["seed"] = int(match.group(1)), int(match.group(2))
            records.append(SyntheticRecord(name, paths[name], planes[name], "", extra))
        self._provenance["release_facts"] = self.RELEASE_FACTS
        self._provenance["unparsed_names"] = sum(1 for r in records if r.extra["seed"] is None)
        return records

    def _folder_planes(self, paths: dict[str, Path], root: Path) -> dict[str, str] | None:
        """Return planes from the images' parent folder names, or ``None`` if the images are not so filed."""
        planes = {}
        for name, path in paths.items():
            if path.parent == root:
                return None
            try:
                plane = canonical_plane(path.parent.name)
            except DataError:
                return None
            if plane == CERVIX:
                raise DataError(f"{path.parent}: {CERVIX!r} is not a plane of the synthetic set")
            planes[name] = plane
        return planes

    def _csv_planes(self, csv_path: Path, paths: dict[str, Path], location: str) -> dict[str, str]:
        header, rows = read_table(csv_path)
        require_columns(csv_path, header, ("Image_name", "Plane"))
        planes: dict[str, str] = {}
        for line, row in enumerate(rows, start=2):
            name = row["Image_name"].removesuffix(".png")
            if name in planes:
                raise DataError(f"{csv_path} line {line}: image {name!r} is listed twice")
            try:
                plane = canonical_plane(row["Plane"], study_codes=True)
            except DataError as err:
                raise DataError(f"{csv_path} line {line}: {err}") from None
            if plane == CERVIX:
                raise DataError(f"{csv_path} line {line}: {plane!r} is not a plane of the synthetic set")
            planes[name] = plane
        absent = sorted(set(planes) - set(paths))
        if absent:
            raise DataError(
                f"{csv_path} lists {len(absent)} images that are not in {location} (first: {absent[0]!r})"
            )
        unlabelled = sorted(set(paths) - set(planes))
        if unlabelled:
            raise DataError(
                f"{location} holds {len(unlabelled)} images that {csv_path} does not label "
                f"(first: {unlabelled[0]!r})"
            )
        return planes

    def _generated_records(self, source: ResolvedSource) -> list[Record]:
        manifest, images = read_generated(source.root)
        records = []
        for image in images:
            record = image.record
            try:
                plane = canonical_plane(record.plane)
            except DataError as err:
                raise DataError(f"{source.root}: image {record.image_id!r}: {err}") from None
            if plane == CERVIX:
                raise DataError(
                    f"{source.root}: image {record.image_id!r} has plane {plane!r}, not a synthetic plane"
                )
            extra = {name: getattr(record, name) for name in provenance_features()}
            records.append(
                SyntheticRecord(record.image_id, source.root / image.shard, plane, "", extra, generated=image)
            )
        self._provenance["generated"] = {
            "info": manifest.get("info", {}),
            "shards": manifest["shards"],
            "num_images": manifest["num_images"],
        }
        return records

    def _is_complete_release(self, source, records) -> bool:
        return bool(source.digests) and source.digests["md5"] == self.ARCHIVE_MD5

    def _verify_split_sizes(self, source, records) -> None:
        super()._verify_split_sizes(source, records)
        if self.config.kind == "release" and self._is_complete_release(source, records):
            for plane in PLANES:
                got = sum(1 for r in records["train"] if r.plane == plane)
                if got != self.RELEASE_FACTS["per_plane"]:
                    raise DataError(
                        f"{source.location}: {got} {plane} images but the published release has "
                        f"{self.RELEASE_FACTS['per_plane']}; check the labels"
                    )

    # ------------------------------------------------------------------ examples
    def _generate_tables(self, records: list[Record]):
        generated = [r.generated for r in records if r.generated is not None]
        if generated:
            folder = Path(self.config.source).expanduser()
            by_id = {r.image_id: r for r in records}
            stream = ((by_id[image.record.image_id], data) for image, data in iter_images(folder, generated))
            yield from self._tables(in_order(_checked, stream), source="synthetic")
        else:
            yield from self._tables(read_checked(records), source="synthetic")
