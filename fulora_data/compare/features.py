"""Inception-V3 features of images, computed once per image and cached by pixel digest and network.

Two networks, each with its own weights file, preprocessing and cache folder:

- **torchvision's** ``inception_v3`` with its ImageNet weights (``IMAGENET1K_V1``, the file
  ``inception_v3_google-0cc3c7bd.pth``), in eval mode, with ``transform_input=True`` as torchvision builds
  it for those weights. Its ``logits`` (the 1000 ImageNet outputs) are what the study's t-SNE embedded
  ("Inception-V3 outputs"). Preprocessing is the study's transform: the grayscale image as three equal
  channels, resized to ``image_size`` x ``image_size`` (224; bilinear, antialiased), scaled to [0, 1] and
  normalised with the ImageNet mean and standard deviation. This is not the network of published FIDs:
  its pool features give FIDs that cannot be compared with any paper's.
- **The FID Inception** (``open_fid_network``): the 2015 TensorFlow Inception graph that FID was defined
  on, as pytorch-fid ports it (its ``FIDInceptionA/C/E`` blocks on torchvision's ``Inception3`` with 1008
  classes; the weights file ``pt_inception-2015-12-05-6726825d.pth``, which torchmetrics and clean-fid's
  legacy mode also use). Preprocessing is pytorch-fid's: the image as three equal channels in [0, 1],
  resized to 299 x 299 (bilinear, ``align_corners=False``, no antialiasing), scaled to [-1, 1]. Its pool
  features give FIDs comparable with published ones (at equal image counts).

One forward pass gives two features per image: ``pool``, the 2048 values of the global average pool
(before dropout and the classifier), the space of FID and KID; and ``logits``, the classifier's outputs.

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

FID_NETWORK = "fid_inception_v3"
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
FID_IMAGE_SIZE = 299
FID_CLASSES = 1008  # the 2015 graph's classifier: 1000 ImageNet classes and 8 unused outputs
FID_PREPROCESSING = "gray-to-3ch, [0, 1], resize 299x299 bilinear align_corners=False, 2x-1 (pytorch-fid)"


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


def _load_state(path: Path, model, option: str, what: str, how: str):
    """Load the state dict in ``path`` into ``model`` after checking every key and shape."""
    torch = require("torch", "eval")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"{option} {str(path)!r} is not a PyTorch state dict file ({err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"{option} {str(path)!r} holds a {type(state).__name__}, not a state dict of tensors; {how}"
        )
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        for kind, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} keys {kind} (e.g. {keys[0]!r})")
        raise ConfigError(f"{option} {str(path)!r} is not {what}: " + ", ".join(parts))
    model.load_state_dict(state)
    return model


def _torchvision_inception():
    models = require("torchvision.models", "eval")
    return models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)


def load_inception(path: Path, device: str = "cpu"):
    """Build torchvision's ``inception_v3`` in eval mode with the weights in ``path``.

    Raises:
        ConfigError: If the file is not a torchvision ``inception_v3`` state dict with its aux head.
    """
    model = _load_state(
        path,
        _torchvision_inception(),
        "--weights",
        "a torchvision inception_v3 state dict with its aux head",
        "save torchvision.models.inception_v3(...).state_dict()",
    )
    return model.eval().to(device)


def fid_inception():
    """The FID Inception's architecture, untrained: pytorch-fid's blocks on torchvision's ``Inception3``.

    The 2015 TensorFlow graph differs from torchvision's Inception-V3 in its classifier (1008 outputs),
    in average pools that leave padding out of the mean, and in a max pool in the last block's pool
    branch; pytorch-fid's ``FIDInception*`` classes reproduce those blocks.

    Raises:
        MissingExtraError: If pytorch-fid is not installed (``pip install -e '.[eval]'`` in a clone).
    """
    blocks = require("pytorch_fid.inception", "eval")
    models = require("torchvision.models", "eval")
    model = models.inception_v3(
        weights=None, num_classes=FID_CLASSES, aux_logits=False, init_weights=False, transform_input=False
    )
    model.Mixed_5b = blocks.FIDInceptionA(192, pool_features=32)
    model.Mixed_5c = blocks.FIDInceptionA(256, pool_features=64)
    model.Mixed_5d = blocks.FIDInceptionA(288, pool_features=64)
    model.Mixed_6b = blocks.FIDInceptionC(768, channels_7x7=128)
    model.Mixed_6c = blocks.FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6d = blocks.FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6e = blocks.FIDInceptionC(768, channels_7x7=192)
    model.Mixed_7b = blocks.FIDInceptionE_1(1280)
    model.Mixed_7c = blocks.FIDInceptionE_2(2048)
    return model


def load_fid_inception(path: Path, device: str = "cpu"):
    """Build the FID Inception in eval mode with the weights in ``path`` (pytorch-fid's key layout).

    Raises:
        ConfigError: If the file is not a state dict of the FID Inception.
    """
    model = _load_state(
        path,
        fid_inception(),
        "--fid-weights",
        f"the FID Inception's state dict (pytorch-fid's {FID_WEIGHTS_FILE})",
        f"download {FID_WEIGHTS_URL}",
    )
    return model.eval().to(device)


def _calibrated(model, seed: int, calibrate_size: int, path: str | os.PathLike) -> Path:
    torch = require("torch", "eval")
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
    torch.manual_seed(seed)
    return _calibrated(_torchvision_inception(), seed, calibrate_size, path)


def random_fid_inception_weights(
    path: str | os.PathLike, *, seed: int = 0, calibrate_size: int = FID_IMAGE_SIZE
) -> Path:
    """Save a randomly initialised FID Inception state dict in pytorch-fid's key layout, for tests.

    The keys and shapes are those of ``pt_inception-2015-12-05-6726825d.pth``; the values are random
    (batch norms calibrated as in ``random_inception_weights``), so no download is needed and the FIDs
    mean nothing.

    Returns:
        ``path``.
    """
    torch = require("torch", "eval")
    torch.manual_seed(seed)
    return _calibrated(fid_inception(), seed, calibrate_size, path)


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
    title = "torchvision Inception-V3 (ImageNet)"
    return _network(model, NETWORK, path, image_size, PREPROCESSING, title, False, device)


def open_fid_network(weights: str | os.PathLike, *, device: str | None = None) -> Network:
    """Check and load the FID Inception from its weights file (offline: no download is tried).

    Args:
        weights: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (or a file of the same layout).
        device: ``"cpu"``, ``"cuda"`` ... (default: CUDA when available).

    Raises:
        SourceNotFoundError: If ``weights`` is not a file (the message says where to get it).
        ConfigError: If it is not the FID Inception's state dict.
        MissingExtraError: If pytorch-fid is not installed.
    """
    path = Path(weights).expanduser()
    if not path.is_file():
        raise SourceNotFoundError(
            f"--fid-weights {str(weights)!r} is not a file; download {FID_WEIGHTS_URL} on a machine with "
            "internet and pass its path"
        )
    if device is None:
        device = "cuda" if require("torch", "eval").cuda.is_available() else "cpu"
    model = load_fid_inception(path, device)
    title = "FID Inception (2015 TF graph, pytorch-fid)"
    return _network(model, FID_NETWORK, path, FID_IMAGE_SIZE, FID_PREPROCESSING, title, True, device)


def _network(
    model, name: str, path: Path, image_size: int, preprocessing, title: str, comparable: bool, device
):
    """A loaded network with its cache key and description, both naming its weights by sha256."""
    sha = file_sha256(path)
    key = f"{name}-{sha[:16]}-{image_size}px-v{CACHE_FORMAT}"
    description = {
        "network": name,
        "weights_file": path.name,
        "weights_sha256": sha,
        "image_size": image_size,
        "preprocessing": preprocessing,
        "cache_format": CACHE_FORMAT,
        "key": key,
        "title": title,
        "comparable_with_published_fid": comparable,
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


def _preprocess(images: list, image_size: int, network: str = NETWORK):
    torch = require("torch", "eval")
    functional = require("torchvision.transforms.functional", "eval")
    batch = []
    if network == FID_NETWORK:
        # pytorch-fid's InceptionV3.forward: [0, 1] -> 299 x 299 bilinear (align_corners=False) -> [-1, 1],
        # one image at a time so images of any size batch together (pytorch-fid resizes inside the model).
        for gray in images:
            tensor = functional.pil_to_tensor(gray.convert("RGB")).float()[None] / 255.0
            tensor = torch.nn.functional.interpolate(
                tensor, size=(FID_IMAGE_SIZE, FID_IMAGE_SIZE), mode="bilinear", align_corners=False
            )
            batch.append(2 * tensor[0] - 1)
        return torch.stack(batch)
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
            batch = _preprocess(images, network.description["image_size"], network.description["network"]).to(
                network.device
            )
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
