"""The study's five classifiers (torchvision), with ImageNet weights or a random start and a new head.

FU-LoRA compared DenseNet169, MobileNetV2, EfficientNet-B0, ResNet18 and ViT-B/16, each fine-tuned from
ImageNet with its last layer replaced by a 5-way plane classifier. ``build_model`` builds one of them:

* ``weights="imagenet"``: torchvision's ImageNet weights, downloaded once into the torch hub cache
  (``$TORCH_HOME``); offline, a clear error says which file to fetch and pass as a path instead.
* ``weights=PATH``: the same ImageNet state dict from a local ``.pth``/``.pt`` or ``.safetensors`` file.
* ``weights="none"``: random initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fulora_data.errors import ConfigError, SourceNotFoundError, require


@dataclass(frozen=True)
class Architecture:
    """How to build one torchvision classifier and where its classification layer is.

    Attributes:
        name: The torchvision model name (also the id in the study's results table).
        title: The name the study uses.
        head: Dotted path of the final ``nn.Linear`` to replace.
        patch_size: For vision transformers, the input size must be a multiple of this.
    """

    name: str
    title: str
    head: str
    patch_size: int | None = None


ARCHITECTURES: dict[str, Architecture] = {
    "densenet169": Architecture("densenet169", "DenseNet169", "classifier"),
    "mobilenet_v2": Architecture("mobilenet_v2", "MobileNetV2", "classifier.1"),
    "efficientnet_b0": Architecture("efficientnet_b0", "EfficientNet-B0", "classifier.1"),
    "resnet18": Architecture("resnet18", "ResNet18", "fc"),
    "vit_b_16": Architecture("vit_b_16", "ViT-B/16", "heads.head", patch_size=16),
}
"""The study's classifiers by torchvision name, in the order of its results table."""

MIN_IMAGE_SIZE = 32
"""The smallest input every convolutional architecture accepts (five stride-2 stages)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def architecture(name: str) -> Architecture:
    """Return the architecture registered under ``name`` (e.g. ``"resnet18"``).

    Raises:
        ConfigError: If the name is not one of the study's classifiers.
    """
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}"
        ) from None


def check_weights_option(weights: str) -> None:
    """Refuse a ``weights`` value that is neither ``imagenet``, ``none`` nor an existing file.

    Raises:
        ConfigError: Naming the bad value.
    """
    if weights in ("imagenet", "none"):
        return
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"--weights must be 'imagenet', 'none' or a weights file; got {weights!r}, which is not a file"
        )


def check_image_size(arch: str, image_size: int, weights: str) -> None:
    """Refuse an input size the architecture cannot take.

    Raises:
        ConfigError: If the size is too small, not a multiple of the ViT patch size, or not 224 for a
            pretrained ViT (its position embeddings are for 14x14 patches).
    """
    spec = architecture(arch)
    if image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"image_size must be at least {MIN_IMAGE_SIZE}; got {image_size!r}")
    if spec.patch_size and image_size % spec.patch_size:
        raise ConfigError(
            f"{arch} needs an image_size that is a multiple of {spec.patch_size}; got {image_size!r}"
        )
    if spec.patch_size and weights != "none" and image_size != 224:
        raise ConfigError(f"pretrained {arch} takes 224 px images; got image_size {image_size!r}")


def _load_state_dict_file(path: Path) -> dict:
    """Read a state dict from a ``.safetensors`` or a torch pickle (weights only)."""
    torch = require("torch", "train")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # any reader failure means the same thing: not a weights file
        raise ConfigError(f"{path} is not a readable weights file ({type(err).__name__}: {err})") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path} does not hold a state dict (got a {type(state).__name__})")
    return state


def _imagenet_state_dict(arch: str) -> dict:
    """Return torchvision's ImageNet weights for ``arch``, downloading them into the torch hub cache once.

    Raises:
        SourceNotFoundError: If the file is not cached and cannot be downloaded.
    """
    torch = require("torch", "train")
    models = require("torchvision.models", "train")
    weights = models.get_model_weights(arch).DEFAULT
    cached = Path(torch.hub.get_dir(), "checkpoints", Path(weights.url).name)
    try:
        return weights.get_state_dict(progress=True, check_hash=False)
    except Exception as err:  # URLError, HTTPError, socket errors, SSL errors, partial files
        raise SourceNotFoundError(
            f"could not download the ImageNet weights of {arch} from {weights.url} "
            f"({type(err).__name__}); fetch that file on a connected machine and pass it with "
            f"--weights PATH, or copy it to {cached}, or train from scratch with --weights none"
        ) from err


def _replace_head(model, head: str, num_classes: int) -> None:
    nn = require("torch.nn", "train")
    parent_name, _, attr = head.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    if not isinstance(old, nn.Linear):  # a torchvision layout change would otherwise go unnoticed
        raise ConfigError(f"expected a Linear layer at {head!r}, found {type(old).__name__}")
    setattr(parent, attr, nn.Linear(old.in_features, num_classes))


def build_model(arch: str, num_classes: int = 5, *, weights: str = "imagenet", image_size: int = 224):
    """Build a classifier with a fresh ``num_classes``-way head.

    The backbone is built with torchvision's 1000-class ImageNet layout, loaded with the requested weights
    (strictly: a file for another architecture is refused), then its final linear layer is replaced.

    Args:
        arch: One of ``ARCHITECTURES``.
        num_classes: Outputs of the new head (5 for the study's planes).
        weights: ``"imagenet"``, ``"none"`` or the path of a local ImageNet weights file.
        image_size: Input size (only ViT-B/16 is built for it; the CNNs are size-agnostic).

    Returns:
        A ``torch.nn.Module`` in training mode.

    Raises:
        ConfigError: For an unknown architecture, a bad size, or a weights file that does not fit.
        SourceNotFoundError: When ImageNet weights are needed but cannot be downloaded.
    """
    spec = architecture(arch)
    check_weights_option(weights)
    check_image_size(arch, image_size, weights)
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2; got {num_classes!r}")
    models = require("torchvision.models", "train")
    kwargs = {"image_size": image_size} if spec.patch_size else {}
    model = models.get_model(arch, weights=None, num_classes=1000, **kwargs)
    if weights != "none":
        if weights == "imagenet":
            state, origin = _imagenet_state_dict(arch), "torchvision ImageNet weights"
        else:
            path = Path(weights).expanduser()
            state, origin = _load_state_dict_file(path), str(path)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ConfigError(f"{origin} are not {arch} ImageNet weights ({first})") from None
    _replace_head(model, spec.head, num_classes)
    return model
