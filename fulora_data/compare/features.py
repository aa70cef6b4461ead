"""Inception-V3 features of images, computed once per image and cached by pixel digest and network.

The network is torchvision's ``inception_v3`` with its ImageNet weights (``IMAGENET1K_V1``, the file
``inception_v3_google-0cc3c7bd.pth``), in eval mode, with ``transform_input=True`` as torchvision builds
it for those weights. One forward pass gives two features per image:

- ``pool``: the 2048 values of the global average pool (before dropout and the classifier), the space of
  FID and KID (as in pytorch-fid, clean-fid and torch-fidelity, which use these pool features);
- ``logits``: the 1000 ImageNet outputs, what the study's t-SNE embedded ("Inception-V3 outputs").

Preprocessing is the study's transform: the grayscale image as three equal channels, resized to
``image_size`` x ``image_size`` (224; bilinear, antialiased), scaled to [0, 1] and normalised with the
ImageNet mean and standard deviation.

The cache holds one folder per network, named by the network, the SHA-256 of its weights file, the input
size and the preprocessing version; features of one network are never read for another (a file whose
recorded network differs from its folder's is ignored and reported). Each run adds one ``.npz`` file
with the features of the images it computed, keyed by ``fulora_data.pixels.pixel_digest``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fulora_data.errors import ConfigError, DataError, SourceNotFoundError, require
from fulora_data.io import atomic_write_bytes, atomic_write_json, file_sha256
from fulora_data.pixels import decode_gray

NETWORK = "inception_v3"
WEIGHTS_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
PREPROCESSING = "gray-to-3ch, resize square bilinear antialias, ImageNet mean/std, transform_input"
CACHE_FORMAT = 1  # bump when preprocessing or the file layout changes, so old features are not reused
MIN_IMAGE_SIZE = 75  # torchvision's inception_v3 needs at least 75 px: smaller inputs vanish in its pools
POOL_DIM = 2048
LOGITS_DIM = 1000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_feature_cache(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where features go: ``CACHE_DIR/fulora-features``, else ``$FULORA_CACHE`` or ``~/.cache/fulora``."""
    if cache_dir is not None:
        return Path(cache_dir) / "fulora-features"
    root = os.environ.get("FULORA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "fulora"
    )
    return Path(root) / "features"


def _hub_weights_path() -> Path:
    torch = require("torch", "eval")
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def resolve_weights(weights: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Find the Inception-V3 weights file: ``weights``, torchvision's cached download, or a new download.

    Args:
        weights: A torchvision ``inception_v3`` state dict file (aux head included), for offline machines.
        download: Whether to download torchvision's ImageNet weights when they are not cached.

    Returns:
        The weights file.

    Raises:
        SourceNotFoundError: If ``weights`` does not exist, or there is no file and none can be downloaded;
            the message says where to get it.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise SourceNotFoundError(f"--weights {str(weights)!r} is not a file")
        return path
    cached = _hub_weights_path()
    if cached.is_file():
        return cached
    how = (
        f"download {WEIGHTS_URL} on a machine with internet and pass it as --weights FILE "
        f"(or put it at {cached})"
    )
    if not download:
        raise SourceNotFoundError(f"the Inception-V3 ImageNet weights are not at {cached}; {how}")
    torch = require("torch", "eval")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(WEIGHTS_URL, str(cached), hash_prefix="0cc3c7bd", progress=True)
    except Exception as err:  # any network or file error: the user's way out is the same
        raise SourceNotFoundError(
            f"could not download the Inception-V3 ImageNet weights ({type(err).__name__}: {err}); {how}"
        ) from None
    return cached


def load_inception(path: Path, device: str = "cpu"):
    """Build torchvision's ``inception_v3`` in eval mode with the weights in ``path``.

    Raises:
        ConfigError: If the file is not a torchvision ``inception_v3`` state dict with its aux head.
    """
    torch = require("torch", "eval")
    models = require("torchvision.models", "eval")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"--weights {str(path)!r} is not a PyTorch state dict file ({err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"--weights {str(path)!r} holds a {type(state).__name__}, not a state dict of tensors; "
            "save torchvision.models.inception_v3(...).state_dict()"
        )
    model = models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} keys {what} (e.g. {keys[0]!r})")
        raise ConfigError(
            f"--weights {str(path)!r} is not a torchvision inception_v3 state dict with its aux head: "
            + ", ".join(parts)
        )
    model.load_state_dict(state)
    return model.eval().to(device)


def random_inception_weights(path: str | os.PathLike, *, seed: int = 0, calibrate_size: int = 96) -> Path:
    """Save a randomly initialised ``inception_v3`` state dict (aux head included) for tests and benchmarks.

    Its features mean nothing about images; they only exercise the pipeline where the ImageNet file cannot
    be had. A freshly initialised network's activations vanish (PyTorch's default initialisation) or blow
    up (torchvision's) over its 94 batch-norm layers, so every batch norm is given the mean and variance of
    its input on ``seed``-ed noise images first, which keeps the pool features of order one.

    Returns:
        ``path``.
    """
    torch = require("torch", "eval")
    models = require("torchvision.models", "eval")
    torch.manual_seed(seed)
    model = models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one batch sets the statistics exactly
    aux, model.AuxLogits = model.AuxLogits, None  # the aux head needs 299 px inputs in training mode
    model.train()
    with torch.no_grad():
        model(
            torch.rand(16, 3, calibrate_size, calibrate_size, generator=torch.Generator().manual_seed(seed))
        )
    model.AuxLogits = aux
    for norm in norms:
        norm.momentum = 0.1
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return atomic_write_bytes(path, buffer.getvalue())


@dataclass
class Network:
    """A loaded feature network and the key its cached features are filed under."""

    model: Any
    key: str
    description: dict[str, Any]
    device: str = "cpu"


def open_network(
    weights: str | os.PathLike | None = None,
    *,
    image_size: int = 224,
    device: str | None = None,
    download: bool = True,
) -> Network:
    """Find, check and load the Inception-V3 weights; name the network for the cache.

    Raises:
        ConfigError: For an image size under 75 px or weights that are not Inception-V3.
        SourceNotFoundError: If no weights file is found (see ``resolve_weights``).
    """
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"--image-size must be an integer of at least {MIN_IMAGE_SIZE}, got {image_size!r}")
    path = resolve_weights(weights, download=download)
    if device is None:
        device = "cuda" if require("torch", "eval").cuda.is_available() else "cpu"
    model = load_inception(path, device)
    sha = file_sha256(path)
    key = f"{NETWORK}-{sha[:16]}-{image_size}px-v{CACHE_FORMAT}"
    description = {
        "network": NETWORK,
        "weights_file": path.name,
        "weights_sha256": sha,
        "image_size": image_size,
        "preprocessing": PREPROCESSING,
        "cache_format": CACHE_FORMAT,
        "key": key,
    }
    return Network(model, key, description, device)


def gray_and_digest(data: bytes):
    """Decode image bytes to grayscale and return it with its ``pixel_digest`` (same recipe, one decode)."""
    gray = decode_gray(data)
    digest = hashlib.sha256(f"{gray.width}x{gray.height}:".encode())
    digest.update(gray.tobytes())
    return gray, digest.hexdigest()


@dataclass
class FeatureCache:
    """The cached features of one network: ``digest -> (pool, logits)``, read from its folder."""

    folder: Path
    key: str
    pool: dict[str, np.ndarray] = field(default_factory=dict)
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, root: str | os.PathLike, network: Network) -> FeatureCache:
        """Read every feature file of ``network`` under ``root`` (files of another network are ignored)."""
        folder = Path(root) / network.key
        cache = cls(folder, network.key)
        if not folder.is_dir():
            return cache
        for path in sorted(folder.glob("features-*.npz")):
            try:
                with np.load(path, allow_pickle=False) as stored:
                    if str(stored["network"]) != network.key:
                        cache.ignored.append(f"{path.name} (features of {stored['network']})")
                        continue
                    digests, pool, logits = stored["digest"], stored["pool"], stored["logits"]
            except (OSError, KeyError, ValueError) as err:
                cache.ignored.append(f"{path.name} (unreadable: {err})")
                continue
            for i, digest in enumerate(digests.tolist()):
                cache.pool[digest] = pool[i]
                cache.logits[digest] = logits[i]
        return cache

    def add(self, network: Network, digests: list[str], pool: np.ndarray, logits: np.ndarray) -> Path | None:
        """Write new features as one file (atomically) and keep them in memory."""
        if not digests:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        # A killed writer's temporary files; only old ones, as another run may be writing into this folder.
        for leftover in self.folder.glob(".features-*.npz.tmp-*"):
            with contextlib.suppress(OSError):
                if time.time() - leftover.stat().st_mtime > 3600:
                    leftover.unlink()
        info = self.folder / "network.json"
        if not info.is_file():
            atomic_write_json(info, network.description)
        name = hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()[:20]
        buffer = io.BytesIO()
        np.savez(
            buffer,
            network=np.array(network.key),
            digest=np.array(digests),
            pool=pool.astype(np.float32),
            logits=logits.astype(np.float32),
        )
        path = atomic_write_bytes(self.folder / f"features-{name}.npz", buffer.getvalue())
        for i, digest in enumerate(digests):
            self.pool[digest] = pool[i]
            self.logits[digest] = logits[i]
        return path


def _preprocess(images: list, image_size: int):
    torch = require("torch", "eval")
    functional = require("torchvision.transforms.functional", "eval")
    batch = []
    for gray in images:
        tensor = functional.pil_to_tensor(gray.convert("RGB"))
        tensor = functional.resize(tensor, [image_size, image_size], antialias=True)
        tensor = functional.normalize(tensor.float() / 255.0, IMAGENET_MEAN, IMAGENET_STD)
        batch.append(tensor)
    return torch.stack(batch)


def forward(network: Network, images: list) -> tuple[np.ndarray, np.ndarray]:
    """Pool features and logits of PIL grayscale images (one batch)."""
    torch = require("torch", "eval")
    pooled: list = []
    handle = network.model.avgpool.register_forward_hook(lambda _m, _i, out: pooled.append(out))
    try:
        with torch.inference_mode():
            batch = _preprocess(images, network.description["image_size"]).to(network.device)
            logits = network.model(batch)
    finally:
        handle.remove()
    pool = torch.flatten(pooled[0], 1)
    return pool.float().cpu().numpy(), logits.float().cpu().numpy()


@dataclass
class Extraction:
    """Features of a list of images, in order, and what computing them cost."""

    pool: np.ndarray
    logits: np.ndarray
    digests: list[str]
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0


def extract(
    images: list[bytes],
    network: Network,
    cache: FeatureCache | None = None,
    *,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> Extraction:
    """Return the pool features and logits of encoded images, computing only those not in the cache.

    Args:
        images: Encoded image files (PNG, JPEG ...).
        network: The feature network.
        cache: Its feature cache; new features are added to it (``None``: compute all, keep nothing).
        batch_size: Images per forward pass.
        progress: Called with the number of images done after each batch.

    Raises:
        DataError: If an image does not decode (its position is named).
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size!r}")
    start = time.perf_counter()
    digests: list[str] = []
    todo: dict[str, Any] = {}
    for position, data in enumerate(images):
        try:
            gray, digest = gray_and_digest(data)
        except Exception as err:
            raise DataError(f"image {position} does not decode ({err})") from None
        digests.append(digest)
        if (cache is None or digest not in cache.pool) and digest not in todo:
            todo[digest] = gray
    new_pool: dict[str, np.ndarray] = {}
    new_logits: dict[str, np.ndarray] = {}
    pending = list(todo.items())
    for begin in range(0, len(pending), batch_size):
        chunk = pending[begin : begin + batch_size]
        pool, logits = forward(network, [gray for _, gray in chunk])
        for i, (digest, _) in enumerate(chunk):
            new_pool[digest], new_logits[digest] = pool[i], logits[i]
        if progress is not None:
            progress(len(chunk))
    if cache is not None:
        keys = list(new_pool)
        if keys:
            cache.add(
                network, keys, np.stack([new_pool[k] for k in keys]), np.stack([new_logits[k] for k in keys])
            )
        new_pool, new_logits = cache.pool, cache.logits
    pool = np.stack([new_pool[d] for d in digests]) if digests else np.zeros((0, POOL_DIM), np.float32)
    logits = np.stack([new_logits[d] for d in digests]) if digests else np.zeros((0, LOGITS_DIM), np.float32)
    return Extraction(
        pool=pool,
        logits=logits,
        digests=digests,
        computed=len(todo),
        cached=len(images) - sum(1 for d in digests if d in todo),
        seconds=time.perf_counter() - start,
    )
