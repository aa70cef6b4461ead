"""The sets a comparison reads: ``NAME[/CONFIG][:SPLIT]`` specs, their images by plane, the seeded draw.

A set may also be a published fulora dataset, ``ORG/NAME[@REVISION][/CONFIG][:SPLIT]`` (e.g.
``fulora/synthetic@v1.0.0:train``), read from the Hub or its cache; it has no ``--source``.

The draw reproduces the study's ``df.groupby('Plane').sample(n=35, random_state=1234)`` (pandas) without
calling pandas: pandas makes one ``numpy.random.RandomState(random_state)``, visits the groups in sorted
order of the plane name, and for each takes the rows at ``state.choice(len(group), n, replace=False)`` of
the group (rows in frame order), advancing the one generator group after group. ``draw_per_plane`` does
exactly that on the set's rows in dataset order (the builders keep their source CSV's order), so the same
rows in the same order give pandas' draw, image for image and in pandas' output order (a test checks it
against pandas). Where pandas would raise (a plane with fewer rows than asked), the draw takes all of that
plane's rows, does not advance the generator, and says so; the planes after it then differ from any pandas
draw, which had none.

What this cannot promise: the study's own frames were read from its CSV lists, whose row order fulora's
builders need not keep (a builder emits its source's order; the study's 1,150-image Spanish list and
5,000-image synthetic list have orders of their own). The draw is pandas' draw on fulora's row order; it
picks the study's very images only where the two orders agree.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fulora_data.audit.run import parse_against
from fulora_data.errors import ConfigError, DataError, OptionValueError

STUDY_PLANES: tuple[str, ...] = ("Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax")
"""The four planes of the African set, the planes the study compared."""

STUDY_PER_PLANE = 35
STUDY_SEED = 1234

# The study's legend names and colours (CARTO "Temps"); further sets take the palette's other colours.
STUDY_LABELS = {"african": "Africa", "synthetic": "Synthesis", "spanish": "Spain", "hybrid": "Hybrid"}
STUDY_COLOURS = {"african": "#009392", "synthetic": "#eeb479", "spanish": "#cf597e"}
OTHER_COLOURS = ("#39b185", "#e88471", "#9ccb86", "#e9e29c", "#6c5ba7", "#3b6ea8", "#8c564b", "#7f7f7f")


@dataclass(frozen=True)
class SetSpec:
    """One set of a comparison: a registered dataset (or a Hub repo), its config and optionally one split.

    ``name`` is a registered dataset's name, or ``ORG/NAME[@REVISION]`` for a published one.
    """

    name: str
    config: str | None = None
    split: str | None = None

    @property
    def on_hub(self) -> bool:
        """Whether the set is a published dataset (no registered name holds a ``/``)."""
        return "/" in self.name

    @property
    def dataset(self) -> str:
        """The dataset's name: a registered name, or the ``NAME`` of ``ORG/NAME[@REVISION]``."""
        return self.name.split("/", 1)[1].split("@", 1)[0] if self.on_hub else self.name

    def __str__(self) -> str:
        text = self.name + (f"/{self.config}" if self.config else "")
        return text + (f":{self.split}" if self.split else "")


def parse_set(value: str) -> SetSpec:
    """Read ``NAME[/CONFIG][:SPLIT]``, e.g. ``african:test``, ``synthetic/generated``, ``spanish/es-1150``.

    A published dataset reads as ``ORG/NAME[@REVISION][/CONFIG][:SPLIT]``, e.g.
    ``fulora/synthetic@v1.0.0:train`` (``ORG`` not a registered dataset's name).

    Raises:
        ConfigError: If the value or one of its parts is empty.
    """
    text = str(value).strip()
    head, split = text.rsplit(":", 1) if ":" in text else (text, None)
    name, config = "", None
    if head and split != "" and ":" not in head:
        with contextlib.suppress(ConfigError):  # the audit's NAME[/CONFIG] reading; ':' is the split's
            name, config = parse_against(head)
    if not name:
        raise OptionValueError(
            f"a set must be NAME[/CONFIG][:SPLIT] (e.g. african:test or spanish/es-1150) or a published "
            f"ORG/NAME[@REVISION][/CONFIG][:SPLIT], got {value!r}"
        )
    return SetSpec(name, config, split)


@dataclass
class LoadedSet:
    """A set's images: where they come from, and each row's plane (rows of its splits, in order)."""

    spec: SetSpec
    label: str
    colour: str
    source: str | None
    splits: Any  # the datasets.DatasetDict of the chosen split(s)
    rows: list[tuple[str, int]] = field(default_factory=list)  # (split, index) of every row, in order
    planes: list[str] = field(default_factory=list)  # the plane of every row

    def counts(self) -> dict[str, int]:
        """Images per plane."""
        out: dict[str, int] = {}
        for plane in self.planes:
            out[plane] = out.get(plane, 0) + 1
        return out

    def image_bytes(self, positions: list[int]) -> list[bytes]:
        """Return the stored bytes of the rows at ``positions`` (as the dataset holds them, undecoded).

        Raises:
            DataError: If a row has no image.
        """
        import datasets

        out: list[bytes] = []
        by_split: dict[str, list[int]] = {}
        for position in positions:
            split, index = self.rows[position]
            by_split.setdefault(split, []).append(index)
        found: dict[tuple[str, int], bytes] = {}
        for split, indices in by_split.items():
            raw = (
                self.splits[split]
                .cast_column("image", datasets.Image(decode=False))
                .select_columns(["image"])
            )
            for index, row in zip(indices, raw.select(indices).with_format(None)["image"], strict=True):
                data = row.get("bytes") if row else None
                if data is None and row and row.get("path"):
                    data = Path(row["path"]).read_bytes()
                if data is None:
                    raise DataError(f"{self.spec} {split} row {index} has no image")
                found[(split, index)] = data
        for position in positions:
            out.append(found[self.rows[position]])
        return out


def default_labels(specs: list[SetSpec], sources: list[str | None]) -> list[str]:
    """Name each set in figures and tables: the study's names where a dataset appears once, else the spec.

    A spec given twice (e.g. ``synthetic/generated`` for the r8, r32 and r128 generations) is told apart by
    its source's file name.
    """
    names = [s.dataset for s in specs]
    labels = []
    for spec, source in zip(specs, sources, strict=True):
        if names.count(spec.dataset) == 1 and spec.dataset in STUDY_LABELS:
            labels.append(STUDY_LABELS[spec.dataset])
        elif [str(s) for s in specs].count(str(spec)) > 1 and source is not None:
            labels.append(f"{spec} ({Path(source).name})")
        else:
            labels.append(str(spec))
    return labels


def colours(specs: list[SetSpec]) -> list[str]:
    """The study's colour for the first set of each of its datasets; the palette's others for the rest."""
    taken: set[str] = set()
    spare = iter(OTHER_COLOURS)
    out = []
    for spec in specs:
        colour = STUDY_COLOURS.get(spec.dataset)
        if colour is None or colour in taken:
            colour = next(spare, "#444444")
        taken.add(colour)
        out.append(colour)
    return out


def load_set(
    spec: SetSpec,
    *,
    label: str,
    colour: str,
    source: str | os.PathLike | None,
    cache_dir: str | os.PathLike | None,
) -> LoadedSet:
    """Build (or reuse, or for a published set download) a set's dataset and list its rows' planes.

    Raises:
        ConfigError: For an unknown dataset, config or split.
        DataError: If the chosen splits hold no images.
        SourceNotFoundError: If a published set's repo or revision does not exist.
    """
    from fulora_data.prepare import column, prepare

    if spec.on_hub:
        from fulora_data.hub_pull import load_repo_dataset

        splits = load_repo_dataset(spec.name, spec.config)
    else:
        splits = prepare(spec.name, spec.config, source=source, cache_dir=cache_dir)
    if spec.split is not None:
        if spec.split not in splits:
            raise ConfigError(f"{spec} has no split {spec.split!r}; its splits are {', '.join(splits)}")
        splits = {spec.split: splits[spec.split]}
    loaded = LoadedSet(spec, label, colour, None if source is None else str(source), splits)
    for split, dataset in splits.items():
        feature = dataset.features.get("label")
        if feature is None or not hasattr(feature, "int2str"):
            raise DataError(f"{spec} split {split!r} has no ClassLabel 'label' column, so no planes")
        labels = column(dataset, "label")
        loaded.rows += [(split, i) for i in range(len(dataset))]
        loaded.planes += [feature.int2str(v) if v is not None and v >= 0 else "" for v in labels]
    if not loaded.rows:
        raise DataError(f"{spec} has no images (splits: {', '.join(splits) or 'none'})")
    return loaded


def draw_per_plane(
    planes: list[str], per_plane: int | None, seed: int
) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Draw up to ``per_plane`` rows of every plane as pandas' ``groupby('Plane').sample`` does.

    Args:
        planes: The plane of every row, in the set's order.
        per_plane: Rows per plane; ``None`` takes every row, in order.
        seed: pandas' ``random_state``.

    Returns:
        The drawn row positions of each plane (in pandas' order), and the planes that had fewer rows than
        asked, with how many they had (all of them were taken).
    """
    groups: dict[str, list[int]] = {}
    for position, plane in enumerate(planes):
        if plane:
            groups.setdefault(plane, []).append(position)
    state = np.random.RandomState(seed)
    drawn: dict[str, list[int]] = {}
    short: dict[str, int] = {}
    for plane in sorted(groups):  # every group advances the one generator, as in pandas
        members = groups[plane]
        if per_plane is None:
            drawn[plane] = members
        elif len(members) < per_plane:
            drawn[plane] = members
            short[plane] = len(members)
        else:
            drawn[plane] = [members[i] for i in state.choice(len(members), size=per_plane, replace=False)]
    return drawn, short
