"""Classifier input: a 224x224 copy of a dataset split decoded once, and the study's augmentations.

The study resizes every image to 224x224 *before* augmenting it, so nothing is lost by resizing once:
``prepare_image_cache`` decodes each PNG of a split one time (grayscale, PIL bilinear resize, as
``torchvision.transforms.Resize((224, 224))`` does on a PIL image) into a uint8 ``.npy`` array under a
cache folder, keyed by the dataset's fingerprint and the size. The epoch loop reads that array through
a memory map and never touches a PNG.

Augmentation ("DA"), applied per image to the cached tensor, in the study's order:
``RandomRotation(15)``, ``RandomResizedCrop(size, scale=(0.08, 1))``, ``RandomHorizontalFlip()``.
The transforms run on the 8-bit PIL image, as in the study. Then the gray channel is repeated to three and
normalised with ImageNet's mean and std. Each image's
random draw is seeded by ``(seed, epoch, index)``, so an epoch's batches are the same whatever the
number of loader workers and whether training was interrupted and resumed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fulora_data import datasets_internals as hf
from fulora_data.classifier.models import IMAGENET_MEAN, IMAGENET_STD
from fulora_data.errors import DataError, require
from fulora_data.io import atomic_file, atomic_write_json
from fulora_data.pixels import as_gray

CACHE_FORMAT = 1  # bump when the way the cache is made changes, so old caches are not reused
_CHUNK = 64


def default_cache_root() -> Path:
    """Where resized copies go when the caller names no folder: ``$FULORA_CACHE`` or ``~/.cache/fulora``."""
    root = os.environ.get("FULORA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "fulora"
    )
    return Path(root) / "image-cache"


def default_image_cache(dataset) -> Path | None:
    """Beside the built dataset's Arrow files (so it goes when the dataset cache is cleared), if it has any."""
    files = getattr(dataset, "cache_files", None) or []
    return Path(files[0]["filename"]).parent / "fulora-image-cache" if files else None


def cache_key(dataset, image_size: int) -> str:
    """Identify a split's resized copy: the dataset's fingerprint, its length and the size."""
    fingerprint = hf.fingerprint(dataset)
    if not fingerprint:
        raise DataError("the dataset has no fingerprint; load it with fulora_data.prepare or datasets")
    text = f"{fingerprint}:{len(dataset)}:{image_size}:v{CACHE_FORMAT}"
    return f"{hashlib.sha256(text.encode()).hexdigest()[:20]}-{image_size}px"


def _resize_png(data: bytes, image_size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        gray = as_gray(image)  # 16-bit scans scaled by value range, not clipped
        return np.asarray(gray.resize((image_size, image_size), Image.BILINEAR), dtype=np.uint8)


def decode_resized(dataset, image_size: int, indices=None) -> np.ndarray:
    """Decode images of a split straight from their PNG bytes and resize them (no cache).

    Returns:
        A uint8 array ``[n, image_size, image_size]``.
    """
    import datasets

    raw = dataset.cast_column("image", datasets.Image(decode=False))
    indices = range(len(dataset)) if indices is None else indices
    rows = [raw[int(i)]["image"]["bytes"] for i in indices]
    return (
        np.stack([_resize_png(b, image_size) for b in rows])
        if rows
        else np.zeros((0, image_size, image_size), np.uint8)
    )


def prepare_image_cache(
    dataset, image_size: int = 224, *, cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Write (once) a split's images resized to ``image_size`` as a uint8 ``.npy`` file.

    The file appears only when complete: it is written under a temporary name and renamed. A second call
    with the same split and size returns the existing file without decoding anything.

    Args:
        dataset: A ``datasets.Dataset`` with an ``image`` and a ``label`` column.
        image_size: Side of the square copy.
        cache_dir: Folder for the copies (default: ``default_cache_root()``).
        progress: Show a tqdm bar while decoding.

    Returns:
        The folder holding ``images.npy``, ``labels.npy`` and ``meta.json``.

    Raises:
        DataError: If the split is empty or lacks an ``image``/``label`` column.
    """
    import datasets
    from tqdm.auto import tqdm

    for name in ("image", "label"):
        if name not in dataset.column_names:
            raise DataError(
                f"the dataset has no {name!r} column (columns: {', '.join(dataset.column_names)})"
            )
    if len(dataset) == 0:
        raise DataError("the dataset split is empty: there are no images to train or predict on")
    folder = Path(cache_dir or default_cache_root()) / cache_key(dataset, image_size)
    if (folder / "meta.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    raw = dataset.cast_column("image", datasets.Image(decode=False)).select_columns(["image"])
    bar = tqdm(total=n, desc=f"resizing to {image_size}px (once)", unit="img", disable=not progress)
    with atomic_file(folder / "images.npy") as partial:
        images = np.lib.format.open_memmap(
            partial, mode="w+", dtype=np.uint8, shape=(n, image_size, image_size)
        )
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL releases the GIL
            for start in range(0, n, _CHUNK):
                chunk = raw[start : start + _CHUNK]["image"]
                arrays = pool.map(lambda item: _resize_png(item["bytes"], image_size), chunk)
                for offset, array in enumerate(arrays):
                    images[start + offset] = array
                bar.update(len(chunk))
        images.flush()
        del images
    bar.close()
    labels = np.asarray(dataset.select_columns(["label"]).with_format(None)["label"][:], dtype=np.int64)
    with atomic_file(folder / "labels.npy") as partial, open(partial, "wb") as handle:
        np.save(handle, labels)
    meta = {"n": n, "image_size": image_size, "fingerprint": hf.fingerprint(dataset), "format": CACHE_FORMAT}
    atomic_write_json(folder / "meta.json", meta)  # written last: its presence means the copy is complete
    return folder


def augmentation(image_size: int):
    """The study's data augmentation, for a grayscale PIL image already at ``image_size``.

    Applied to PIL images as in the study's torchvision pipeline (rotation with nearest-neighbour
    sampling, bilinear crop resize); on an 8-bit image this is also far cheaper than on a float tensor.
    """
    transforms = require("torchvision.transforms", "train")
    return transforms.Compose(
        [
            transforms.RandomRotation(15),
            transforms.RandomResizedCrop(image_size, scale=(0.08, 1.0)),
            transforms.RandomHorizontalFlip(),
        ]
    )


_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Turn ``[H, W]`` uint8 gray pixels into a ``[3, H, W]`` float32 array: repeated, ImageNet-normalised."""
    gray = np.asarray(pixels, dtype=np.float32) * np.float32(1 / 255)
    return (gray[None] - _MEAN) / _STD


def model_input(pixels: np.ndarray, transform=None, seed: int | None = None):
    """Turn one cached image into the model's input tensor, augmented with a seeded draw if asked.

    Args:
        pixels: ``[S, S]`` uint8 gray pixels.
        transform: The augmentation (``augmentation(S)``) or None.
        seed: Seed of this image's augmentation draw (the global torch RNG is left as it was).

    Returns:
        A ``[3, S, S]`` float32 tensor.
    """
    torch = require("torch", "train")
    if transform is not None:
        from PIL import Image

        # torchvision draws from the global CPU generator: seed it for this image, then put it back.
        # (torch.manual_seed would also queue CUDA/XPU seeding calls, which costs more than the transforms.)
        generator = torch.default_generator
        saved = generator.get_state()
        generator.manual_seed(seed or 0)
        try:
            pixels = np.asarray(transform(Image.fromarray(np.asarray(pixels), mode="L")))
        finally:
            generator.set_state(saved)
    return torch.from_numpy(normalise(pixels))


class CachedImages:
    """A map-style torch dataset over a resized copy: ``(image [3, S, S] float32, label)`` pairs.

    (It does not subclass ``torch.utils.data.Dataset`` so that importing this module needs no torch.)

    Args:
        folder: A folder written by ``prepare_image_cache``.
        indices: The rows to serve (e.g. the training part after the validation hold-out).
        augment: Apply the study's augmentation.
        seed: Seed of the augmentation draws.
    """

    def __init__(self, folder: str | os.PathLike, indices=None, *, augment: bool = False, seed: int = 0):
        self.folder = Path(folder)
        meta = json.loads((self.folder / "meta.json").read_text())
        self.image_size = int(meta["image_size"])
        self.labels = np.load(self.folder / "labels.npy")
        self.indices = np.arange(len(self.labels)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._images = None  # opened lazily, so that loader workers each map the file themselves
        self._transform = augmentation(self.image_size) if augment else None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws ``__getitem__`` makes."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_images"] = None  # never pickle a memory map into a worker
        return state

    def __getitem__(self, item: int):
        if self._images is None:
            self._images = np.load(self.folder / "images.npy", mmap_mode="r")
        row = int(self.indices[item])
        seed = augmentation_seed(self.seed, self.epoch, row) if self._transform is not None else None
        return model_input(self._images[row], self._transform, seed), int(self.labels[row])


def augmentation_seed(seed: int, epoch: int, row: int) -> int:
    """The seed of one image's augmentation in one epoch (independent of order and workers)."""
    return (seed * 1_000_003 + epoch * 7_919_993 + row * 2_654_435_761) % (2**63 - 1)


def load_training_set(config):
    """Build (or reuse) the training data a ``TrainConfig`` names.

    ``ES`` is the ``spanish`` ``es`` train split (``source`` is its archive or folder); ``HB`` is the
    ``hybrid`` ``es1150-syn5000`` set (``source`` is its real part, ``synthetic_source`` its synthetic part),
    whose builder already holds out a patient-grouped validation split.

    Returns:
        ``(train, validation)``: ``datasets.Dataset`` splits; ``validation`` is None when the builder has none.
    """
    from fulora_data.prepare import prepare

    name, config_name = config.dataset
    if name == "hybrid":
        options = {"real_source": config.source, "synthetic_source": config.synthetic_source}
        splits = prepare(
            name, config_name, cache_dir=config.data_cache_dir, **options, **config.dataset_options
        )
    else:
        splits = prepare(
            name, config_name, source=config.source, cache_dir=config.data_cache_dir, **config.dataset_options
        )
    if "train" not in splits:
        raise DataError(f"{name}/{config_name} has no train split (splits: {', '.join(splits)})")
    return splits["train"], splits.get("validation")
