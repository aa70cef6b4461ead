"""One pass over a dataset's stored image bytes: header mode and size, pixel digest, pHash and thumbnail.

Each image is decoded exactly once; everything the audit compares afterwards (exact duplicates, near
duplicates, memorisation) reads these features, never the pixels again.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import datasets
import numpy as np
from PIL import Image, UnidentifiedImageError

from fulora_data.audit.thresholds import HASH_BITS, THUMBNAIL_SIDE
from fulora_data.errors import DataError, require
from fulora_data.pixels import as_gray
from fulora_data.prepare import column


def _phash(image: Image.Image) -> int:
    imagehash = require("imagehash", "audit")
    bits = imagehash.phash(image, hash_size=8).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def image_features(data: bytes) -> dict:
    """Describe one image from its encoded bytes.

    Args:
        data: The image file's bytes as stored in the dataset.

    Returns:
        ``mode`` and ``width``/``height`` as stored in the file's header, ``digest`` (SHA-256 of the grayscale
        pixels and size, equal to ``fulora_data.pixels.pixel_digest``), ``phash`` (64-bit int) and
        ``thumbnail`` (32x32 grayscale bytes).

    Raises:
        PIL errors if the bytes are not an image (the caller names the image).
    """
    with Image.open(io.BytesIO(data)) as stored:
        mode, (width, height) = stored.mode, stored.size
        gray = as_gray(stored)  # as pixel_digest decodes: 16-bit scaled by value range
    # Same recipe as fulora_data.pixels.pixel_digest, without decoding a second time.
    digest = hashlib.sha256(f"{gray.width}x{gray.height}:".encode())
    digest.update(gray.tobytes())
    thumbnail = gray.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX)
    return {
        "mode": mode,
        "width": width,
        "height": height,
        "digest": digest.hexdigest(),
        "phash": _phash(gray),
        "thumbnail": thumbnail.tobytes(),
    }


def _features_batch(images: list[dict | None], indices: list[int], *, split: str) -> dict[str, list]:
    rows: dict[str, list] = {k: [] for k in ("mode", "width", "height", "digest", "phash", "thumbnail")}
    for image, index in zip(images, indices, strict=True):
        data = image.get("bytes") if image else None
        if data is None and image and image.get("path"):
            try:
                with open(image["path"], "rb") as handle:
                    data = handle.read()
            except OSError as err:
                raise DataError(
                    f"{split} row {index}: cannot read image file {image['path']} ({err})"
                ) from err
        if data is None:
            raise DataError(f"{split} row {index} has no image")
        try:
            features = image_features(data)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise DataError(f"{split} row {index}: the image does not decode ({err})") from err
        for key, value in features.items():
            # pHash bits are stored as a signed 64-bit integer: Arrow has no unsigned ints in every path.
            rows[key].append(value - (1 << HASH_BITS) if key == "phash" and value >= 1 << 63 else value)
    return rows


def _text_column(dataset: datasets.Dataset, name: str) -> list[str]:
    if name not in dataset.column_names:
        return [""] * len(dataset)
    return ["" if v is None else str(v) for v in column(dataset, name)]


@dataclass
class ImageTable:
    """The features of every image of a ``DatasetDict``, in split order, one row per image."""

    split: list[str] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    image_id: list[str] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    patient_id: list[str] = field(default_factory=list)
    mode: list[str] = field(default_factory=list)
    width: list[int] = field(default_factory=list)
    height: list[int] = field(default_factory=list)
    digest: list[str] = field(default_factory=list)
    phash: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    thumbnails: np.ndarray = field(
        default_factory=lambda: np.zeros((0, THUMBNAIL_SIDE * THUMBNAIL_SIDE), dtype=np.float32)
    )

    def __len__(self) -> int:
        return len(self.split)

    def ref(self, row: int) -> dict:
        """Identify one image for a report: split, row in that split, id, label and patient."""
        return {
            "split": self.split[row],
            "index": self.index[row],
            "image_id": self.image_id[row],
            "label": self.label[row],
            "patient_id": self.patient_id[row],
        }


def normalise_thumbnails(raw: np.ndarray) -> np.ndarray:
    """Centre each thumbnail and scale it to unit length (a flat image stays all zeros)."""
    vectors = raw.astype(np.float32)
    vectors -= vectors.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def check_images(splits: datasets.DatasetDict, what: str) -> None:
    """Refuse a dataset the audit cannot read.

    Raises:
        DataError: If it has no split, no ``image`` column of images, or no rows.
    """
    if not len(splits):
        raise DataError(f"{what} has no splits, so there are no images to audit")
    for split, dataset in splits.items():
        feature = dataset.features.get("image")
        if feature is None:
            raise DataError(
                f"{what} split {split!r} has no 'image' column (columns: {', '.join(dataset.column_names)})"
            )
        if not isinstance(feature, datasets.Image):
            raise DataError(f"{what} split {split!r}: the 'image' column holds {feature!r}, not images")
    if not sum(len(d) for d in splits.values()):
        raise DataError(f"{what} is empty: its splits ({', '.join(splits)}) have no images to audit")


def extract(
    splits: datasets.DatasetDict, *, num_proc: int | None = None, what: str = "the dataset"
) -> ImageTable:
    """Compute every image's features in one decoding pass.

    Args:
        splits: The dataset; each split needs an ``image`` column (``datasets.Image``).
        num_proc: Worker processes for ``datasets.map`` (``None``: this process).
        what: How to name the dataset in errors.

    Returns:
        An ``ImageTable`` with one row per image, splits in the ``DatasetDict``'s order.

    Raises:
        DataError: If the dataset is empty, has no images, or an image does not decode.
    """
    check_images(splits, what)
    table = ImageTable()
    hashes, thumbs = [], []
    for split, dataset in splits.items():
        if not len(dataset):
            continue
        raw = dataset.cast_column("image", datasets.Image(decode=False)).select_columns(["image"])
        features = raw.map(
            _features_batch,
            input_columns=["image"],
            with_indices=True,
            batched=True,
            batch_size=64,
            remove_columns=["image"],
            fn_kwargs={"split": split},
            num_proc=num_proc if num_proc and num_proc > 1 and len(raw) >= 2 * num_proc else None,
            keep_in_memory=True,
            load_from_cache_file=False,
            desc=f"Decoding {split}",
        ).with_format(None)
        columns = features[:]
        label_feature = dataset.features.get("label")
        if isinstance(label_feature, datasets.ClassLabel):
            labels = [
                label_feature.int2str(v) if v is not None and v >= 0 else "" for v in column(dataset, "label")
            ]
        else:
            labels = _text_column(dataset, "label")
        ids = _text_column(dataset, "image_id")
        table.split += [split] * len(dataset)
        table.index += list(range(len(dataset)))
        table.image_id += [i or f"{split}[{n}]" for n, i in enumerate(ids)]
        table.label += labels
        table.patient_id += _text_column(dataset, "patient_id")
        for key in ("mode", "width", "height", "digest"):
            getattr(table, key).extend(columns[key])
        hashes.append(np.asarray(columns["phash"], dtype=np.int64).view(np.uint64))
        thumbs.append(np.frombuffer(b"".join(columns["thumbnail"]), dtype=np.uint8).reshape(len(dataset), -1))
    table.phash = np.concatenate(hashes)
    table.thumbnails = normalise_thumbnails(np.concatenate(thumbs))
    return table
