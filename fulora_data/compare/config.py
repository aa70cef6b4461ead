"""The settings of a comparison (``fulora data compare``): ``CompareConfig``, on the one config protocol."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fulora_data.compare.metrics import DEFAULT_BOOTSTRAP
from fulora_data.compare.sets import STUDY_PER_PLANE, STUDY_PLANES, STUDY_SEED, default_labels
from fulora_data.dataset_ref import DatasetRef
from fulora_data.errors import OptionValueError
from fulora_data.presets import RunConfig, field_error
from fulora_data.taxonomy import canonical_plane

TSNE_FEATURES = ("logits", "pool")


@dataclass
class CompareConfig(RunConfig):
    """Everything a comparison reads; the defaults are the study's.

    Attributes:
        sets: Two or more ``NAME[/CONFIG][:SPLIT]`` specs (no split: all splits of the config), or
            published fulora datasets ``ORG/NAME[@REVISION][/CONFIG][:SPLIT]`` (no config: the default).
        sources: One archive or folder per set, in order; ``None`` or ``"-"`` for a set without one (a
            published set, or one to download); empty: none for any set.
        labels: One name per set for figures and tables (default: Africa, Synthesis, Spain, or the spec).
        planes: Planes to compare (default: the study's four: abdomen, brain, femur, thorax).
        per_plane: Images drawn per plane and set (the study's 35); ``None`` takes every image.
        seed: The draw's ``random_state`` (the study's 1234); also seeds t-SNE and the bootstrap.
        image_size: Side of the square network input (the study's 224; at least 75).
        weights: A torchvision ``inception_v3`` state dict file (default: torchvision's ImageNet weights),
            the network of the t-SNE figure.
        fid_weights: The FID Inception's weights (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``):
            FID and KID are computed on its pool features, comparable with published FIDs. Without it
            they are computed on torchvision's network and the report says they are not comparable.
        download: Whether torchvision's weights may be downloaded when not cached.
        cache_dir: Where built datasets are cached (features go to its ``fulora-features`` folder).
        feature_cache: Where features are cached (overrides the folder under ``cache_dir``).
        report: A folder for ``report.md``, ``compare.json`` and the t-SNE figures.
        bootstrap: Bootstrap replicates of each FID and KID interval (0: no interval).
        tsne_features: ``"logits"`` (the study's Inception outputs) or ``"pool"`` (FID's features).
        batch_size: Images per forward pass.
        device: ``"cpu"``, ``"cuda"`` ... (default: CUDA when available).
    """

    KIND = "compare"

    sets: list[str] = field(default_factory=list)
    sources: list[str | os.PathLike | None] | None = None
    labels: list[str] | None = None
    planes: list[str] | None = None
    per_plane: int | None = STUDY_PER_PLANE
    seed: int = STUDY_SEED
    image_size: int = 224
    weights: str | os.PathLike | None = None
    fid_weights: str | os.PathLike | None = None
    download: bool = True
    cache_dir: str | os.PathLike | None = None
    feature_cache: str | os.PathLike | None = None
    report: str | os.PathLike | None = None
    bootstrap: int = DEFAULT_BOOTSTRAP
    tsne_features: str = "logits"
    batch_size: int = 16
    device: str | None = None

    def validate(self) -> None:
        """Refuse bad sets and options before any set is loaded or any network opened.

        Raises:
            ConfigError: For a bad set spec, an unknown dataset, a count of sources or labels that is not
                one per set, two sets with one label, a bad plane, ``per_plane`` or ``tsne_features``.
        """
        self.resolved()

    def resolved(self) -> tuple[list[DatasetRef], list[str | None], list[str], list[str]]:
        """The checked sets, their sources (None: none), labels and planes (canonical, in order).

        Raises:
            ConfigError: As :meth:`validate`.
        """
        from fulora_data.prepare import option_names

        sets = list(self.sets)
        if len(sets) < 2:
            raise OptionValueError(
                f"compare needs at least two sets, got {len(sets)}: {', '.join(map(str, sets))}"
            )
        specs = [DatasetRef.parse(s, option="a SET") for s in sets]
        for spec in specs:
            if not spec.on_hub:
                option_names(spec.name)  # an unknown dataset fails here, before the network loads
        given = list(self.sources or [])
        if given and len(given) != len(specs):
            raise field_error(
                "sources",
                f"must be given once per set, in the sets' order ('-' for a published set or one to "
                f"download): {len(specs)} sets but {len(given)} `sources`",
            )
        sources = [None if s is None or str(s) == "-" else str(s) for s in given] or [None] * len(specs)
        for spec, source in zip(specs, sources, strict=True):
            if spec.on_hub and source is not None:
                raise OptionValueError(
                    f"set {str(spec)!r} is a published dataset, read from the Hub: give `sources` - for it, "
                    f"not {source!r}"
                )
        labels = list(self.labels or []) or default_labels(specs, sources)
        if len(labels) != len(specs):
            raise field_error(
                "labels", f"must be given once per set: {len(specs)} sets but {len(labels)} `labels`"
            )
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise OptionValueError(f"two sets would share the name {repeated[0]!r}; tell them apart with `labels`")
        planes = [canonical_plane(p) for p in self.planes] if self.planes else list(STUDY_PLANES)
        if self.per_plane is not None and (not isinstance(self.per_plane, int) or self.per_plane < 1):
            raise field_error("per_plane", f"must be a whole number of at least 1, got {self.per_plane!r}")
        if self.tsne_features not in TSNE_FEATURES:
            raise field_error(
                "tsne_features", f"must be one of {', '.join(TSNE_FEATURES)}, got {self.tsne_features!r}"
            )
        return specs, sources, labels, list(dict.fromkeys(planes))


CompareConfig.PRESETS = {"study": {}}
"""The study's comparison is the defaults (35 per plane, seed 1234, the four planes, Inception logits)."""
