"""The seeded selection rules every dataset and trainer shares: one per-plane draw, two validation policies.

* ``per_plane_positions``: the per-plane draw (the Spanish subsets ``es-1150`` and ``lora-100``, the hybrid's
  synthetic draw). For each class in order, sort its rows by image id and take the positions chosen by
  ``numpy.random.default_rng(seed).choice(n, per_plane, replace=False)`` (one generator, advanced class by
  class); the result keeps the source order.
* ``hold_out_groups``: the patient-grouped validation policy (``patient``). Groups (all images of one patient,
  or one image without a patient) are visited in the order of ``numpy.random.default_rng(seed).permutation``
  and taken whole while they fit, so one patient never straddles train and validation.
* ``hold_out_random``: the study's validation policy (``study``): ``size`` random images, patient-blind.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from fulora_data.errors import ConfigError, DataError

_SHORTFALL = (
    "{where} has {available} {plane} images to draw from but {per_plane} per plane are needed; {hint}"
)

VALIDATION_POLICIES = ("patient", "study")
"""``patient``: whole patients held out (``hold_out_groups``); ``study``: random images (``hold_out_random``)."""


def per_plane_positions(
    classes_of_rows: Sequence[Hashable],
    ids: Sequence[str],
    per_plane: int,
    seed: int,
    classes: Sequence[Hashable],
    *,
    shortfall: str = _SHORTFALL,
    **context: object,
) -> list[int]:
    """Draw ``per_plane`` rows of each class, reproducibly; return their positions in source order.

    Args:
        classes_of_rows: Each row's class (a plane name).
        ids: Each row's image id (the draw sorts a class's rows by it, so it does not depend on row order).
        per_plane: Rows to draw per class.
        seed: Seed of the draw.
        classes: The classes to draw from, in order (the generator advances class by class).
        shortfall: The message when a class is short: a ``str.format`` template given ``plane``,
            ``available``, ``per_plane`` and ``context``.
        **context: More fields for ``shortfall`` (the default uses ``where`` and ``hint``).

    Raises:
        DataError: If a class has fewer than ``per_plane`` rows.
    """
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for plane in classes:
        pool = sorted((i for i, value in enumerate(classes_of_rows) if value == plane), key=lambda i: ids[i])
        if len(pool) < per_plane:
            raise DataError(
                shortfall.format(plane=plane, available=len(pool), per_plane=per_plane, **context)
            )
        chosen += [pool[i] for i in rng.choice(len(pool), size=per_plane, replace=False)]
    return sorted(chosen)


def hold_out_groups(groups: Sequence[Hashable], size: int, seed: int) -> list[int]:
    """Choose at most ``size`` positions for validation without splitting a group; return them sorted.

    Groups (equal values) are visited in a seeded random order and taken whole while they fit.
    """
    members: dict[Hashable, list[int]] = {}
    for position, group in enumerate(groups):
        members.setdefault(group, []).append(position)
    order = list(members)
    taken: list[int] = []
    for index in np.random.default_rng(seed).permutation(len(order)):
        if len(taken) == size:
            break
        group = members[order[index]]
        if len(taken) + len(group) <= size:
            taken += group
    return sorted(taken)


def validation_size(n: int, requested: int) -> tuple[int, str | None]:
    """How many of ``n`` training images to hold out when ``requested`` are asked for, and a note if fewer.

    The study held out 200 random images of ~6,000. A set too small to spare that many (fewer than five
    training images per validation image) keeps a fifth for validation instead, and a note says so.

    Raises:
        ConfigError: If ``requested`` is negative or the set is too small to train on.
    """
    if requested < 0:
        raise ConfigError(f"validation_size must be 0 or more; got {requested!r}")
    if n < 2:
        raise ConfigError(f"the training set has {n} images; at least 2 are needed")
    if requested > n // 5:
        size = max(1, n // 5)
        return size, (
            f"the training set has only {n} images: holding out {size} for validation instead of {requested}"
        )
    return requested, None


def hold_out_random(n: int, requested: int, seed: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The ``study`` policy: hold out ``requested`` random images for validation, fewer for a tiny set.

    Args:
        n: Images in the training split.
        requested: Images to hold out (0 disables validation); scaled down as ``validation_size`` says.
        seed: Seed of the draw.

    Returns:
        ``(train_indices, validation_indices, note)``, the indices sorted, ``note`` None unless scaled down.

    Raises:
        ConfigError: If ``requested`` is negative or the set is too small to train on.
    """
    size, note = validation_size(n, requested)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[size:]), np.sort(order[:size]), note


def hold_out_patients(
    patient_ids: Sequence[str], requested: int, seed: int
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The ``patient`` policy: hold out about ``requested`` images, whole patients at a time.

    Images without a patient id are groups of their own. Taking whole patients may hold out a few images
    fewer than asked (never more).

    Returns:
        ``(train_indices, validation_indices, note)`` as ``hold_out_random``.

    Raises:
        ConfigError: If ``requested`` is negative or the set is too small to train on.
    """
    n = len(patient_ids)
    size, note = validation_size(n, requested)
    groups = [f"patient:{p}" if p else f"image:{i}" for i, p in enumerate(patient_ids)]
    held = np.asarray(hold_out_groups(groups, size, seed), dtype=np.int64)
    if size and not len(held):
        raise ConfigError(
            f"every patient has more than {size} images, so no whole patient fits the validation split; "
            "raise --validation-size or use --validation-policy study"
        )
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held, note
