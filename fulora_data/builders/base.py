"""The base every fulora dataset builder shares: its config, source resolution and example writing.

A builder subclass declares its provenance as class constants, reads its source's metadata into a list of
``Record``s per split (``_read_records``), and this base turns them into examples. PNG bytes go into the
dataset exactly as they are in the source: nothing is re-encoded (except a 16-bit scan, stored as 8-bit by
value range); each image is decoded once, to check it. The checks run in a thread pool
(:func:`in_order`): reading a file and inflating its pixel stream release the GIL (zlib does, for the
whole buffer), so on N cores N images are checked at once while the main thread writes Arrow, and the
examples still come out in the records' order.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets
import numpy as np
from PIL import Image, UnidentifiedImageError

from fulora_data import datasets_internals as hf
from fulora_data.archives import extract_archive, file_digests, remove_orphan_extractions, verify_checksum
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


class FuloraBuilder(datasets.GeneratorBasedBuilder):
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

    def _generate_examples(self, records: list[Record]):
        for record, data in in_order(_read_checked, records):
            yield record.image_id, self._example(record, data, source="real")

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


# The most pixels an image may have (width x height): 8192 x 8192, far above any ultrasound frame and far
# below what would exhaust memory when decoded. A larger header is refused before decoding.
MAX_IMAGE_PIXELS = 8192 * 8192


CHECK_THREADS = max(1, min(8, os.cpu_count() or 1))
"""Threads that read and check images during a build (one per core, at most 8)."""


def in_order(func, items, *, threads: int | None = None):
    """Yield ``func(item)`` for every item, in order, computed ``threads`` at a time in a thread pool.

    At most ``4 * threads`` results wait at once, so a slow consumer never holds a whole source in memory.
    An exception raised by ``func`` is raised here, at that item's place, and the pool stops.
    """
    import collections
    from concurrent.futures import ThreadPoolExecutor

    threads = threads or CHECK_THREADS
    if threads == 1:
        yield from map(func, items)
        return
    window = 4 * threads
    with ThreadPoolExecutor(threads, thread_name_prefix="fulora-check") as pool:
        pending: collections.deque = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _read_checked(record: Record) -> tuple[Record, bytes]:
    data = record.path.read_bytes()
    check_image_bytes(data, record.path)
    return record, data


def check_image_bytes(data: bytes, path: Path) -> None:
    """Check that bytes are an image whose pixel data decompresses completely, within ``MAX_IMAGE_PIXELS``.

    PIL's ``verify`` alone checks the PNG chunks' CRCs but never decompresses, so a file whose compressed
    data is corrupt under valid CRCs used to pass and fail only when read later. Now a non-interlaced PNG
    (every image of the study's sources) has its pixel stream inflated (zlib's own checksum verified), its
    size compared with what the header's dimensions require and every row's filter byte checked: what a
    decoder would reject, at about a third of the cost of a full decode. Any other image is fully decoded.

    Raises:
        DataError: If the bytes are not an image, do not decode, or declare more than ``MAX_IMAGE_PIXELS``.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(
                    f"{path} declares {width}x{height} pixels, more than fulora's cap of {MAX_IMAGE_PIXELS} "
                    "(fulora_data.builders.base.MAX_IMAGE_PIXELS); it is corrupt or not an ultrasound image"
                )
            if image.format == "PNG" and not image.info.get("interlace"):
                image.verify()
                _check_png_pixels(data, path)
            else:
                image.load()
    except Image.DecompressionBombError as err:
        raise DataError(
            f"{path} declares more pixels than fulora's cap of {MAX_IMAGE_PIXELS} ({err}); it is corrupt or "
            "not an ultrasound image"
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, zlib.error) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path} does not decode as an image ({err})") from err


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_INFLATE_PIECE = 64 * 1024


def _check_png_pixels(data: bytes, path: Path) -> None:
    """Inflate a non-interlaced PNG's pixel stream and check it against the header (see check_image_bytes)."""
    position, idat, header = 8, [], None
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None or header[3] not in _PNG_CHANNELS:
        raise DataError(f"{path} does not decode as an image (bad PNG header)")
    width, height, depth, colour = header
    row = (width * _PNG_CHANNELS[colour] * depth + 7) // 8 + 1  # one filter byte per row
    # Inflated in 64 KiB pieces that stay in the CPU cache (about a fifth faster than one piece the size
    # of the image), each checked and dropped; bounded: no bomb can expand past what the header needs.
    inflater, pending, size, bad_filter = zlib.decompressobj(), b"".join(idat), 0, False
    needed = row * height
    while size <= needed and not inflater.eof:
        piece = inflater.decompress(pending, min(_INFLATE_PIECE, needed + 1 - size))
        pending = inflater.unconsumed_tail
        if not piece and not pending:  # input used up (zlib may still hand out what it holds: asked again)
            break
        first = (-size) % row  # where the next row's filter byte falls in this piece
        bad_filter = bad_filter or bool((np.frombuffer(piece, dtype=np.uint8)[first::row] > 4).any())
        size += len(piece)
    if size != needed or not inflater.eof:
        raise DataError(
            f"{path} does not decode as an image (its pixel data inflates to {size} bytes, "
            f"{'complete' if inflater.eof else 'cut short'}, where {width}x{height} needs {needed})"
        )
    if bad_filter:
        raise DataError(f"{path} does not decode as an image (a row has an unknown PNG filter type)")


def _file_names(folder: str) -> set[str]:
    """Names of the regular files in a folder (empty when it does not exist)."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name for entry in entries if entry.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return set()
