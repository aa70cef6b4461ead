"""The base every fulora dataset builder shares: its config, source resolution and example writing.

A builder subclass declares its provenance as class constants, reads its source's metadata into a list of
``Record``s per split (``_read_records``), and this base turns them into Arrow tables (an
``ArrowBasedBuilder``: ``datasets``' per-example encoding cost a fifth of a build). PNG bytes go into the
dataset exactly as they are in the source: nothing is re-encoded (except a 16-bit scan, stored as 8-bit by
value range); each image is decoded once, to check it, by ``fulora_data.builders.checks`` (in worker
processes for a large source), and the examples come out in the records' order.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets
import pyarrow as pa
from PIL import UnidentifiedImageError

from fulora_data import datasets_internals as hf
from fulora_data.archives import extract_archive, file_digests, remove_orphan_extractions, verify_checksum
from fulora_data.builders.checks import read_checked
from fulora_data.errors import ConfigError, DataError, SourceNotFoundError
from fulora_data.io import atomic_write_text
from fulora_data.pixels import eight_bit_bytes
from fulora_data.taxonomy import base_features, plane_names, prompt_for

PROVENANCE_FILE = "fulora_provenance.json"


@dataclass
class FuloraConfig(datasets.BuilderConfig):
    """Options every fulora builder accepts.

    Attributes:
        source: The dataset's archive, its extracted folder, or ``None`` to download the archive.
        source_fingerprint: Size and modification time of the source, set by ``fulora_data.prepare`` so
            that a changed source is rebuilt rather than served from the cache.
        drop_test_duplicates: Remove test images whose pixels equal a training image's (see the audit).
        archive_md5: The md5 the archive must have, for releases whose checksum fulora cannot know offline
            (it overrides ``ARCHIVE_MD5``).
    """

    source: str | None = None
    source_fingerprint: str | None = None
    drop_test_duplicates: bool = False
    archive_md5: str | None = None


@dataclass
class Record:
    """One image as listed by a source, before its bytes are read."""

    image_id: str
    path: Path
    plane: str
    patient_id: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResolvedSource:
    """Where a builder found its data, and how it knows it is the right data."""

    root: Path
    kind: str  # "folder", "archive" or "download"
    location: str
    digests: dict[str, Any] | None = None


class FuloraBuilder(datasets.ArrowBasedBuilder):
    """Shared behaviour of fulora's builders. Subclasses set the constants and ``_read_records``."""

    BUILDER_CONFIG_CLASS = FuloraConfig
    # The command-line option that gave this builder its source, named in hints (a hybrid's part is
    # given by --real-source or --synthetic-source, an audit's reference set by --against-source).
    source_option: str = "--source"
    # The same for its other options where they differ from --key-name (a hybrid's Spanish part takes its
    # subset_csv as --real-subset-csv); see ``option_flag``.
    option_flags: dict[str, str] = {}

    # Provenance, set by each subclass.
    NAME: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    HOMEPAGE: ClassVar[str] = ""
    SOURCE_URL: ClassVar[str | None] = None
    ARCHIVE_NAME: ClassVar[str] = ""
    ARCHIVE_MD5: ClassVar[str | None] = None
    ARCHIVE_SHA256: ClassVar[str | None] = None
    LICENSE: ClassVar[str] = ""
    CITATION: ClassVar[str] = ""
    RELEASE_NOTES: ClassVar[dict[str, str]] = {}
    # A file whose presence marks the root of the extracted source (searched up to two levels down).
    ROOT_MARKER: ClassVar[str] = ""
    # Split sizes of the complete published release, per config; checked when the source is complete.
    EXPECTED_SPLITS: ClassVar[dict[str, dict[str, int]]] = {}

    def option_flag(self, key: str) -> str:
        """The command-line flag that sets builder option ``key`` of this builder, for hints."""
        return self.option_flags.get(key) or f"--{key.replace('_', '-')}"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("dataset_name", self.NAME)
        super().__init__(*args, **kwargs)
        self._provenance: dict[str, Any] = {}

    # ----------------------------------------------------------------- subclass interface
    def _with_cervix(self) -> bool:
        """Whether this config keeps Maternal cervix as label 5."""
        return False

    def _extra_features(self) -> dict[str, datasets.features.FeatureType]:
        """Columns this dataset adds after the shared ones."""
        return {}

    def _read_records(self, source: ResolvedSource) -> dict[str, list[Record]]:
        """Read the source's metadata and return the records of each split, in a deterministic order."""
        raise NotImplementedError

    def _is_complete_release(self, source: ResolvedSource, records: dict[str, list[Record]]) -> bool:
        """Whether the source is the whole published release (so ``EXPECTED_SPLITS`` apply)."""
        return False

    # ----------------------------------------------------------------- datasets.DatasetBuilder
    def _info(self) -> datasets.DatasetInfo:
        features = base_features(self._with_cervix())
        features.update(self._extra_features())
        return datasets.DatasetInfo(
            description=self.DESCRIPTION,
            features=datasets.Features(features),
            homepage=self.HOMEPAGE,
            license=self.LICENSE,
            citation=self.CITATION,
        )

    def _split_generators(self, dl_manager):
        source = self._resolve_source(dl_manager)
        records = self._read_records(source)
        listed: dict[str, set[str]] = {}
        for split, rows in records.items():
            for record in rows:
                folder = str(record.path.parent)
                if folder not in listed:  # one directory listing instead of a stat per image
                    listed[folder] = _file_names(folder)
                if record.path.name not in listed[folder]:
                    raise DataError(
                        f"{record.path} is missing: the metadata lists image {record.image_id!r} "
                        f"({split} split) but the file is not in the source"
                    )
        if self.config.drop_test_duplicates:
            records, dropped = self._drop_test_duplicates(records)
            self._provenance["dropped_test_duplicates_of_train"] = dropped
        self._verify_split_sizes(source, records)
        empty = [split for split, rows in records.items() if not rows]
        if empty:
            # datasets would build and cache the split, then fail to read it back with a traceback.
            raise DataError(
                f"{source.location}: the {self.NAME} {self.config.name!r} {' and '.join(empty)} "
                f"split{'s' if len(empty) > 1 else ''} would hold no images (the metadata, subset list or "
                "options select none); use a source or config that has them"
            )
        self._provenance.update(self._source_provenance(source))
        self._provenance["splits"] = {split: len(rows) for split, rows in records.items()}
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"records": rows})
            for split, rows in records.items()
        ]

    def _generate_tables(self, records: list[Record]):
        yield from self._tables(read_checked(records), source="real")

    def _tables(self, checked, *, source: str):
        """Yield Arrow tables of ``TABLE_ROWS`` examples from ``(record, checked bytes)`` pairs, in order.

        The builder writes tables rather than examples: ``datasets``' per-example encoding cost a fifth of
        a build's time; the table is made straight in the dataset's schema, the same rows and types.
        """
        schema = self.info.features.arrow_schema
        batch: list[dict[str, Any]] = []
        for record, data in checked:
            batch.append(self._example(record, data, source=source))
            if len(batch) == TABLE_ROWS:
                yield batch[0]["image_id"], _table(batch, schema)
                batch = []
        if batch:
            yield batch[0]["image_id"], _table(batch, schema)

    def _example(self, record: Record, data: bytes, *, source: str) -> dict[str, Any]:
        """Return the example of a record whose image bytes have been read and checked."""
        example = {
            # No path: datasets would store a path instead of the bytes whenever one resolves to a file.
            # A 16-bit scan is stored as 8-bit by value range: the declared Image(mode="L") would clip it.
            "image": {"bytes": eight_bit_bytes(data, str(record.path)), "path": None},
            "label": plane_names(self._with_cervix()).index(record.plane),
            "text": prompt_for(record.plane),
            "source": source,
            "image_id": record.image_id,
            "patient_id": record.patient_id,
        }
        example.update(record.extra)
        return example

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        # Written inside the builder's temporary folder, so it lands atomically with the data.
        provenance = {
            "builder": self.NAME,
            "config": self.config.name,
            "version": str(self.config.version),
            **self._provenance,
        }
        atomic_write_text(
            Path(hf.output_dir(self), PROVENANCE_FILE), json.dumps(provenance, indent=2, sort_keys=True)
        )

    # ----------------------------------------------------------------- source resolution
    def _resolve_source(self, dl_manager) -> ResolvedSource:
        """Find the data: a given folder, a given archive, or a download, in that order.

        Raises:
            SourceNotFoundError: If the given path does not exist or the download is impossible.
        """
        given = self.config.source
        if given:
            path = Path(given).expanduser()
            if path.is_dir():
                if self.config.archive_md5:
                    raise ConfigError(
                        f"--md5 checks an archive but {self.source_option} {path} is a folder; pass the archive, "
                        "or drop --md5"
                    )
                return ResolvedSource(root=self._find_root(path), kind="folder", location=str(path))
            if path.is_file():
                return self._from_archive(path, kind="archive")
            raise SourceNotFoundError(
                f"{path} does not exist; pass {self.source_option} with the {self.ARCHIVE_NAME} archive or its extracted "
                f"folder (download it from {self.HOMEPAGE})"
            )
        if not self.SOURCE_URL:
            raise SourceNotFoundError(
                f"{self.NAME} has no download address; pass {self.source_option} with its archive or folder"
            )
        try:
            downloaded = dl_manager.download(self.SOURCE_URL)
        except Exception as err:  # every transport error means the same thing to the user
            raise SourceNotFoundError(
                f"could not download {self.SOURCE_URL} ({type(err).__name__}); download {self.ARCHIVE_NAME} "
                f"from {self.HOMEPAGE} and pass it with {self.source_option} PATH"
            ) from err
        return self._from_archive(Path(downloaded), kind="download", location=self.SOURCE_URL)

    def _expected_checksums(self) -> tuple[str | None, str | None]:
        """The ``(md5, sha256)`` an archive must have; ``None`` checks nothing (the digests are still recorded).

        The default is ``--md5`` when given, else ``ARCHIVE_MD5``, and ``ARCHIVE_SHA256``. A builder whose
        config can switch the check off (``synthetic --no-verify``) overrides this hook rather than changing
        its class constants.
        """
        return self.config.archive_md5 or self.ARCHIVE_MD5, self.ARCHIVE_SHA256

    def _from_archive(self, archive: Path, *, kind: str, location: str | None = None) -> ResolvedSource:
        digests = file_digests(archive)
        md5, sha256 = self._expected_checksums()
        verify_checksum(archive, digests, md5=md5, sha256=sha256)
        extracted_root = Path(hf.cache_root(self)) / "fulora_extracted"
        target = extracted_root / f"{self.NAME}-{digests['sha256'][:20]}"
        if not target.is_dir():
            from filelock import FileLock

            extracted_root.mkdir(parents=True, exist_ok=True)
            # Two builds from one archive (two configs at once) would both extract and race to rename.
            # The lock file sits beside fulora_extracted/, which then holds only whole extractions.
            with FileLock(str(extracted_root.parent / f".fulora_extract-{target.name}.lock")):
                if not target.is_dir():
                    remove_orphan_extractions(extracted_root, target.name)
                    extract_archive(archive, target)
                    self._extracted_now = target  # removed again if this build fails (prepare.build)
        return ResolvedSource(
            root=self._find_root(target, archive=archive),
            kind=kind,
            location=location or str(archive),
            digests=digests,
        )

    def _find_root(self, folder: Path, archive: Path | None = None) -> Path:
        """Return the folder holding ``ROOT_MARKER``: ``folder`` itself or one up to two levels down."""
        if (folder / self.ROOT_MARKER).is_file():
            return folder
        candidates = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]
        candidates += [q for p in candidates[1:] for q in sorted(p.iterdir()) if q.is_dir()]
        for candidate in candidates:
            if (candidate / self.ROOT_MARKER).is_file():
                return candidate
        where = archive or folder
        raise SourceNotFoundError(
            f"{where} has no {self.ROOT_MARKER}: it is not the {self.NAME} dataset "
            f"({self.ARCHIVE_NAME} from {self.HOMEPAGE}, or its extracted folder)"
        )

    def _source_provenance(self, source: ResolvedSource) -> dict[str, Any]:
        info: dict[str, Any] = {"source": {"kind": source.kind, "location": source.location}}
        if source.digests:
            info["source"]["archive"] = self.ARCHIVE_NAME
            info["source"].update(source.digests)
            info["source"]["expected_md5"] = self.config.archive_md5 or self.ARCHIVE_MD5
        return info

    # ----------------------------------------------------------------- checks
    def _verify_split_sizes(self, source: ResolvedSource, records: dict[str, list[Record]]) -> None:
        expected = self.EXPECTED_SPLITS.get(self.config.name)
        if not expected or self.config.drop_test_duplicates or not self._is_complete_release(source, records):
            return
        for split, count in expected.items():
            got = len(records.get(split, []))
            if got != count:
                raise DataError(
                    f"{source.location}: the {self.config.name!r} {split} split has {got} images but the "
                    f"published release has {count}; the source is damaged or not the published version"
                )

    def _drop_test_duplicates(self, records: dict[str, list[Record]]) -> tuple[dict[str, list[Record]], int]:
        """Remove test records whose pixels equal a training record's; return the records and the count."""
        from fulora_data.pixels import pixel_digest

        if "train" not in records or "test" not in records:
            raise ConfigError(
                f"drop_test_duplicates needs a train and a test split; {self.config.name!r} has "
                f"{', '.join(records)}"
            )

        def digest(record: Record) -> str:
            try:
                return pixel_digest(record.path.read_bytes())
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
                raise DataError(f"{record.path} does not decode as an image ({err})") from err

        train_digests = {digest(r) for r in records["train"]}
        kept = [r for r in records["test"] if digest(r) not in train_digests]
        dropped = len(records["test"]) - len(kept)
        self._provenance["dropped_test_ids"] = sorted(
            {r.image_id for r in records["test"]} - {r.image_id for r in kept}
        )
        return {**records, "test": kept}, dropped


def read_table(path: Path, *, delimiter: str | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV whose header may carry a BOM and padded names; return stripped names and rows.

    Raises:
        DataError: If the file cannot be read as a CSV, or a row has fewer cells than the header names.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} cannot be read as a UTF-8 CSV ({err})") from err
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise DataError(f"{path} is empty") from None
    # Cells past the last named column (a trailing separator) may be absent; a row missing a named one
    # would otherwise surface as a KeyError far from the file.
    width = max((i + 1 for i, name in enumerate(header) if name), default=0)
    rows = []
    for row in reader:
        if not any(row):
            continue
        if len(row) < width:
            raise DataError(
                f"{path} line {reader.line_num}: {len(row)} cells but the header names {width} columns"
            )
        rows.append(dict(zip(header, (cell.strip() for cell in row), strict=False)))
    return header, rows


def require_columns(path: Path, header: list[str], required: tuple[str, ...]) -> None:
    """Raise a DataError naming the file and the columns it lacks."""
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{path} has no column {', '.join(map(repr, missing))} (columns: {', '.join(header)})"
        )


TABLE_ROWS = 64
"""Examples per Arrow table a build writes (about 10 MiB of scans)."""


def _table(examples: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    # In the system allocator: pyarrow's default (mimalloc) hands the freed memory of each 10 MiB table
    # back to the kernel, and faulting it in again cost a build about 1.5 s in 12,400 images.
    pool = pa.system_memory_pool()
    arrays = [pa.array([ex[f.name] for ex in examples], type=f.type, memory_pool=pool) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _file_names(folder: str) -> set[str]:
    """Names of the regular files in a folder (empty when it does not exist)."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name for entry in entries if entry.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return set()
