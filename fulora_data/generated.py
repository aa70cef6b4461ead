"""The one on-disk format of image sets made by fulora's generator, with its writer and its reader.

A generated folder holds::

    fulora_generated.json      the manifest and commit point: format, version, shards, image count, complete
    metadata.jsonl             one JSON object per image, in shard order: its full provenance (see
                               ``GenerationRecord``) plus ``shard`` (the tar file) and ``sha256`` (of the PNG)
    images-00000.tar ...       WebDataset shards: ``<image_id>.png``, ``<image_id>.json`` (the same
                               provenance as the metadata row, so a shard describes itself when read with
                               ``webdataset.WebDataset`` alone) and ``<image_id>.cls`` (the integer label,
                               an index into ``fulora_data.taxonomy.PLANES``, for training loops that read
                               the shards directly). Sets written before ``.cls`` existed lack it; the
                               reader accepts both.

Writing is resumable shard by shard. A shard is written as ``images-NNNNN.tar.partial`` and renamed once
closed; its metadata rows are then appended to ``metadata.jsonl`` and the manifest is rewritten atomically
(temporary file, then rename). The manifest is the only commit point: on resume the writer removes partial
and uncommitted shards and truncates ``metadata.jsonl`` to the committed rows, so a crash at any moment
loses at most the shard being written. ``GeneratedWriter.done`` tells the generator which images to skip.

The reader (``read_generated``) checks that the manifest, the metadata file and the shards agree exactly:
the same images in the same shards, no image twice, PNG digests equal, and the set marked complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fulora_data.errors import DataError, SourceNotFoundError
from fulora_data.io import atomic_write_text, file_sha256, resolve_under
from fulora_data.taxonomy import PLANES

FORMAT = "fulora-generated"
FORMAT_VERSION = 1
MANIFEST = "fulora_generated.json"
METADATA = "metadata.jsonl"
SHARD_PATTERN = "images-{:05d}.tar"
_SHARD_RE = re.compile(r"^images-(\d{5})\.tar$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class GenerationRecord:
    """Everything needed to regenerate one image.

    Attributes:
        image_id: The image's name and WebDataset key (letters, digits, ``-`` and ``_``; no dots), e.g.
            ``"00000-2671683618"`` (generation index and seed, the study's naming).
        plane: The canonical plane the prompt asks for.
        prompt: The text prompt.
        negative_prompt: The negative prompt (``""`` for none).
        sampler: The scheduler's name, e.g. ``"EulerDiscreteScheduler"`` or ``"UniPCMultistepScheduler"``.
        steps: Number of inference steps.
        guidance_scale: Classifier-free guidance scale.
        seed: The seed of the image's initial noise.
        width: Generated width in pixels.
        height: Generated height in pixels.
        base_model: Base model repository, e.g. ``"stable-diffusion-v1-5/stable-diffusion-v1-5"``.
        base_model_revision: Its commit hash.
        adapter: LoRA adapter repository or path.
        adapter_revision: Its commit hash (``""`` for a local adapter).
        lora_rank: The adapter's rank.
        generation_index: The image's position in its generation run.
        adapter_sha256: The sha256 of the adapter file used (``""`` when not recorded).
        adapter_scale: The LoRA scale the adapter was applied with (1.0, diffusers' default, when not
            recorded).
        clip_skip: Clip skip in the study's (kohya's) sense: 1 uses the text encoder's last layer, 2 the
            penultimate one; ``0`` when not recorded.

    The last three fields came after the format's first sets; rows without them read with their defaults.
    """

    image_id: str
    plane: str
    prompt: str
    negative_prompt: str
    sampler: str
    steps: int
    guidance_scale: float
    seed: int
    width: int
    height: int
    base_model: str
    base_model_revision: str
    adapter: str
    adapter_revision: str
    lora_rank: int
    generation_index: int
    adapter_sha256: str = ""
    adapter_scale: float = 1.0
    clip_skip: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any], where: str) -> GenerationRecord:
        """Build a record from a metadata row, checking every field's presence and type.

        Raises:
            DataError: If a field is missing or has the wrong type; ``where`` names the file and line.
        """
        values = {}
        for field in dataclasses.fields(cls):
            if field.name not in row:
                if field.default is not dataclasses.MISSING:
                    continue  # a field added after the row was written
                raise DataError(f"{where}: missing field {field.name!r}")
            value = row[field.name]
            wanted = {"str": str, "int": int, "float": (int, float)}[field.type]
            if isinstance(value, bool) or not isinstance(value, wanted):
                raise DataError(f"{where}: field {field.name!r} must be a {field.type}, got {value!r}")
            values[field.name] = float(value) if field.type == "float" else value
        return cls(**values)


PROVENANCE_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(GenerationRecord) if f.name not in ("image_id", "plane")
)
"""The per-image provenance columns a synthetic dataset carries (besides the shared columns)."""


@dataclass(frozen=True)
class GeneratedImage:
    """One image of a generated folder, as listed by its metadata."""

    record: GenerationRecord
    shard: str
    sha256: str


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path} is not a {FORMAT} manifest (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path} has format_version {manifest.get('format_version')!r}; this fulora reads {FORMAT_VERSION}"
        )
    return manifest


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """Return a generated folder's manifest, or ``None`` when it has none; changes nothing.

    Raises:
        DataError: If the manifest is unreadable or of another format.
    """
    return _read_manifest(Path(folder))


def committed_ids(folder: str | os.PathLike) -> set[str]:
    """Return the ids of the images a (possibly unfinished) generated folder has committed; changes nothing.

    Raises:
        DataError: If the manifest is unreadable or the metadata has fewer rows than it commits.
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest is None or not manifest.get("num_images"):
        return set()
    path = folder / METADATA
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    if len(lines) < manifest["num_images"]:
        raise DataError(f"{path} has {len(lines)} rows but {MANIFEST} commits {manifest['num_images']}")
    return {json.loads(line)["image_id"] for line in lines[: manifest["num_images"]]}


def is_generated_folder(folder: str | os.PathLike) -> bool:
    """Whether a folder holds a generated set's manifest."""
    return (Path(folder) / MANIFEST).is_file()


def _manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as standard JSON: a NaN or infinite number is refused, never written as ``NaN``.

    Raises:
        DataError: If the manifest holds a non-finite number.
    """
    try:
        return json.dumps(manifest, indent=2, allow_nan=False)
    except ValueError as err:
        raise DataError(f"the {MANIFEST} to write holds a number JSON cannot store ({err})") from None


class GeneratedWriter:
    """Write a generated folder shard by shard; resumes where a previous run stopped.

    Use as a context manager. Leaving the block normally commits the last (possibly short) shard and marks
    the set complete; leaving it with an exception discards only the shard being written.

    Example::

        with GeneratedWriter(folder, info={"run": "hb-rank128"}) as writer:
            for record in planned_records:
                if record.image_id in writer.done:
                    continue
                writer.add(png, record)

    Args:
        folder: The folder to write into (created if needed).
        shard_size: Images per shard.
        info: Run-level facts stored in the manifest (e.g. the generation command); merged on resume.
    """

    def __init__(self, folder: str | os.PathLike, *, shard_size: int = 1000, info: dict | None = None):
        if shard_size < 1:
            raise DataError(f"shard_size must be at least 1, got {shard_size!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        existing = _read_manifest(self.folder)
        manifest = existing or {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "shards": [],
            "num_images": 0,
            "complete": False,
            "info": {},
        }
        if info:
            manifest["info"] = {**manifest.get("info", {}), **info}
        manifest["complete"] = False
        self._manifest = manifest
        if existing is None:
            self._refuse_foreign_files()
        self._repair()
        self.done: set[str] = {row["image_id"] for row in self._committed_rows()}
        self._pending: list[tuple[bytes, GenerationRecord]] = []

    # ------------------------------------------------------------------ resume
    def _committed_rows(self) -> list[dict[str, Any]]:
        path = self.folder / METADATA
        if not path.is_file():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines[: self._manifest["num_images"]]]

    def _refuse_foreign_files(self) -> None:
        """Refuse a folder without a manifest that holds files this writer would truncate or delete.

        The writer commits its manifest before its first shard, so such files were not written by it.
        """
        for path in sorted(self.folder.iterdir()):
            if path.name == METADATA or _SHARD_RE.match(path.name):
                raise DataError(
                    f"{self.folder} holds {path.name} but no {MANIFEST}: it is not a generated folder this "
                    "writer started, and resuming would overwrite it; write into an empty or new folder"
                )

    def _repair(self) -> None:
        """Bring the folder back to its last committed state."""
        committed = {s["file"] for s in self._manifest["shards"]}
        for path in self.folder.iterdir():
            name = path.name
            uncommitted = _SHARD_RE.match(name) and name not in committed
            # Only this writer's own leftovers: a shard being written, or a manifest/metadata temp file.
            partial = name.endswith(".partial") and _SHARD_RE.match(name.removesuffix(".partial"))
            temporary = name.startswith((f".{MANIFEST}.tmp-", f".{METADATA}.tmp-"))
            if uncommitted or partial or temporary:
                path.unlink()
        metadata = self.folder / METADATA
        n = self._manifest["num_images"]
        if metadata.is_file():
            lines = metadata.read_text(encoding="utf-8").splitlines()
            if len(lines) < n:
                raise DataError(
                    f"{metadata} has {len(lines)} rows but {MANIFEST} commits {n}; the folder is damaged"
                )
            if len(lines) > n:
                atomic_write_text(metadata, "".join(line + "\n" for line in lines[:n]))
        elif n:
            raise DataError(f"{metadata} is missing but {MANIFEST} commits {n} images; the folder is damaged")
        atomic_write_text(self.folder / MANIFEST, _manifest_text(self._manifest))

    # ------------------------------------------------------------------ writing
    def add(self, image: bytes | Any, record: GenerationRecord) -> None:
        """Queue one image; a full shard is written and committed at once.

        Args:
            image: PNG bytes or a PIL image (encoded as PNG).
            record: The image's provenance.

        Raises:
            DataError: If the image id is not a valid key or was already written.
        """
        if not _KEY_RE.match(record.image_id):
            raise DataError(
                f"image_id must hold only letters, digits, '-' and '_' (it is a WebDataset key), "
                f"got {record.image_id!r}"
            )
        try:
            json.dumps(record.to_dict(), allow_nan=False)
        except ValueError:
            raise DataError(
                f"image {record.image_id!r}: its record holds a NaN or infinite number, which JSON cannot store"
            ) from None
        if record.image_id in self.done or any(r.image_id == record.image_id for _, r in self._pending):
            raise DataError(f"image {record.image_id!r} was already written to {self.folder}")
        if not isinstance(image, bytes):
            from fulora_data.pixels import png_bytes

            image = png_bytes(image)
        self._pending.append((image, record))
        if len(self._pending) >= self.shard_size:
            self._commit_shard()

    def _commit_shard(self) -> None:
        import webdataset

        if not self._pending:
            return
        name = SHARD_PATTERN.format(len(self._manifest["shards"]))
        final = self.folder / name
        partial = self.folder / f"{name}.partial"
        rows = []
        with open(partial, "wb") as handle:
            writer = webdataset.TarWriter(handle, mtime=0.0)
            try:
                for data, record in self._pending:
                    meta = record.to_dict()
                    sample = {"__key__": record.image_id, "png": data, "json": meta}
                    if record.plane in PLANES:
                        sample["cls"] = PLANES.index(record.plane)
                    writer.write(sample)
                    rows.append({**meta, "shard": name, "sha256": hashlib.sha256(data).hexdigest()})
            finally:
                writer.close()  # on failure too, so the tar stream is not flushed into a closed file later
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(final)
        with open(self.folder / METADATA, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, sort_keys=True, allow_nan=False) + "\n" for row in rows)
            handle.flush()
            os.fsync(handle.fileno())
        self._manifest["shards"].append(
            {
                "file": name,
                "num_images": len(rows),
                "sha256": file_sha256(final),
                "num_bytes": final.stat().st_size,
            }
        )
        self._manifest["num_images"] += len(rows)
        atomic_write_text(self.folder / MANIFEST, _manifest_text(self._manifest))
        self.done.update(r["image_id"] for r in rows)
        self._pending = []

    def close(self, *, complete: bool = True) -> Path:
        """Commit the last shard and, with ``complete``, mark the set finished. Returns the folder."""
        self._commit_shard()
        self._manifest["complete"] = complete
        atomic_write_text(self.folder / MANIFEST, _manifest_text(self._manifest))
        return self.folder

    def __enter__(self) -> GeneratedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._pending = []  # the shard being written is lost; everything committed stays


def read_generated(folder: str | os.PathLike) -> tuple[dict[str, Any], list[GeneratedImage]]:
    """Read and cross-check a generated folder's manifest, metadata and shard listings.

    The PNG digests are checked when the images are read (``iter_images``), so this stays cheap.

    Returns:
        The manifest and the images in metadata order.

    Raises:
        SourceNotFoundError: If the folder has no manifest.
        DataError: If the set is incomplete or its manifest, metadata and shards disagree.
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest is None:
        raise SourceNotFoundError(
            f"{folder} has no {MANIFEST}: it is not a folder written by fulora's generator"
        )
    if not manifest.get("complete"):
        raise DataError(
            f"{folder} is an unfinished generation ({manifest.get('num_images', 0)} images committed); "
            "run the generator again to resume it"
        )
    metadata = folder / METADATA
    if not metadata.is_file():
        raise DataError(f"{metadata} is missing")
    images: list[GeneratedImage] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{metadata} line {line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where} is not valid JSON ({err})") from err
        record = GenerationRecord.from_dict(row, where)
        if record.image_id in seen:
            raise DataError(
                f"{where}: image {record.image_id!r} is listed twice (first on line {seen[record.image_id]})"
            )
        seen[record.image_id] = line_no
        images.append(GeneratedImage(record, str(row.get("shard", "")), str(row.get("sha256", ""))))
    if len(images) != manifest["num_images"]:
        raise DataError(f"{metadata} lists {len(images)} images but {MANIFEST} says {manifest['num_images']}")
    listed = {s["file"]: s for s in manifest["shards"]}
    by_shard: dict[str, list[str]] = {name: [] for name in listed}
    for image in images:
        if image.shard not in listed:
            raise DataError(
                f"{metadata}: image {image.record.image_id!r} names shard {image.shard!r}, not in {MANIFEST}"
            )
        by_shard[image.shard].append(image.record.image_id)
    for name, ids in by_shard.items():
        path = resolve_under(folder, name, f"{folder / MANIFEST} shard")
        if not path.is_file():
            raise DataError(f"{path} is missing: {MANIFEST} lists it")
        keys = _shard_keys(path)
        if sorted(keys) != sorted(ids):
            extra = sorted(set(keys) - set(ids))
            missing = sorted(set(ids) - set(keys))
            detail = (
                f"not in the metadata: {extra[:3]}" if extra else f"missing from the shard: {missing[:3]}"
            )
            raise DataError(f"{path} does not match {METADATA}: images {detail}")
    return manifest, images


def _shard_keys(path: Path) -> list[str]:
    """Return the keys of a shard's PNGs, checking every key has exactly one PNG and one JSON.

    A ``.cls`` member (the integer label) is optional, at most one per key and only beside a PNG.
    """
    pngs, jsons, labels = [], [], []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.rpartition("/")[2].partition(".")
                {"png": pngs, "json": jsons, "cls": labels}.get(ext, []).append(key)
    except tarfile.TarError as err:
        raise DataError(f"{path} is not a readable tar shard ({err})") from err
    if set(labels) - set(pngs):
        raise DataError(f"{path} holds {sorted(set(labels) - set(pngs))[0]}.cls without its .png")
    for kind, keys in (("png", pngs), ("json", jsons), ("cls", labels)):
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise DataError(f"{path} holds {dup}.{kind} twice")
    if sorted(pngs) != sorted(jsons):
        raise DataError(f"{path}: every image needs a .png and a .json member")
    return pngs


def iter_images(
    folder: str | os.PathLike, images: list[GeneratedImage]
) -> Iterator[tuple[GeneratedImage, bytes]]:
    """Yield ``(image, png_bytes)`` for the given images, reading each shard once, in the given order.

    Members are streamed: in metadata order (how the writer stores them) only one image is held at a time.

    Raises:
        DataError: If a PNG's digest differs from its metadata row, or its JSON member from the row.
    """
    folder = Path(folder)
    wanted: dict[str, list[GeneratedImage]] = {}
    for image in images:
        wanted.setdefault(image.shard, []).append(image)
    for shard, queue in wanted.items():
        path = folder / shard
        expected = {image.record.image_id for image in queue}
        buffered: dict[str, dict[str, bytes]] = {}
        position = 0
        with tarfile.open(path, "r|") as tar:
            for member in tar:
                key, _, ext = member.name.rpartition("/")[2].partition(".")
                handle = tar.extractfile(member)
                if key not in expected or handle is None:
                    continue
                buffered.setdefault(key, {})[ext] = handle.read()
                # Members are written in sorted order (cls, json, png), so png completes an image.
                while (
                    position < len(queue)
                    and {"png", "json"} <= buffered.get(queue[position].record.image_id, {}).keys()
                ):
                    image = queue[position]
                    parts = buffered.pop(image.record.image_id)
                    yield image, _checked(path, image, parts)
                    position += 1
        if position < len(queue):
            raise DataError(f"{path} lacks {queue[position].record.image_id}.png or .json")


def _checked(path: Path, image: GeneratedImage, parts: dict[str, bytes]) -> bytes:
    key = image.record.image_id
    data = parts.get("png", b"")
    if hashlib.sha256(data).hexdigest() != image.sha256:
        raise DataError(f"{path}: {key}.png does not match its sha256 in {METADATA}")
    stored = json.loads(parts.get("json", b"null"))
    if not isinstance(stored, dict):
        raise DataError(f"{path}: {key}.json is not a JSON object")
    expected = image.record.to_dict()
    for field in _ADDED_FIELDS:  # an older shard's JSON lacks the fields added since
        if field.name not in stored:
            stored[field.name] = field.default
    if stored != expected:
        raise DataError(f"{path}: {key}.json does not match its row in {METADATA}")
    if "cls" in parts:
        try:
            label = int(parts["cls"].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise DataError(f"{path}: {key}.cls is not an integer label") from None
        if image.record.plane not in PLANES or label != PLANES.index(image.record.plane):
            raise DataError(f"{path}: {key}.cls is {label} but the image's plane is {image.record.plane!r}")
    return data


_ADDED_FIELDS = tuple(f for f in dataclasses.fields(GenerationRecord) if f.default is not dataclasses.MISSING)
