"""The one label taxonomy shared by every fulora dataset.

Every dataset labels images with the study's five planes, in the study's class order. Only configs that
keep FETAL_PLANES_DB's sixth class add ``Maternal cervix`` as index 5, so a label index means the same
plane in every dataset and every model.
"""

from __future__ import annotations

import datasets

from fulora_data.errors import DataError

PLANES: tuple[str, ...] = ("Other", "Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax")
"""The study's five classes, in the study's order: label ``i`` is ``PLANES[i]``."""

CERVIX = "Maternal cervix"
PLANES_WITH_CERVIX: tuple[str, ...] = (*PLANES, CERVIX)

PROMPTS: dict[str, str] = {
    "Other": "a photo of fetal ultrasound",
    "Fetal abdomen": "a photo of fetal abdomen",
    "Fetal brain": "a photo of fetal brain",
    "Fetal femur": "a photo of fetal femur",
    "Fetal thorax": "a photo of fetal thorax",
    CERVIX: "a photo of maternal cervix",
}
"""The text prompt the study paired with each plane when it fine-tuned and sampled Stable Diffusion."""

SOURCES: tuple[str, ...] = ("real", "synthetic")

# The study's published lists code planes as numbers: FETAL_PLANES_DB's "PlaneN" file-name part minus one.
# These are *not* fulora label indices (femur is 4 here, 3 in fulora).
STUDY_PLANE_CODES: dict[int, str] = {
    0: "Other",
    1: "Fetal abdomen",
    2: "Fetal brain",
    3: CERVIX,
    4: "Fetal femur",
    5: "Fetal thorax",
}

_ALIASES: dict[str, str] = {name.lower(): name for name in PLANES_WITH_CERVIX}
_ALIASES.update(
    {
        "other": "Other",
        "others": "Other",
        "abdomen": "Fetal abdomen",
        "brain": "Fetal brain",
        "femur": "Fetal femur",
        "thorax": "Fetal thorax",
        "cervix": CERVIX,
        "fetal_abdomen": "Fetal abdomen",
        "fetal_brain": "Fetal brain",
        "fetal_femur": "Fetal femur",
        "fetal_thorax": "Fetal thorax",
        "fetal-abdomen": "Fetal abdomen",
        "fetal-brain": "Fetal brain",
        "fetal-femur": "Fetal femur",
        "fetal-thorax": "Fetal thorax",
        "maternal_cervix": CERVIX,
        "maternal-cervix": CERVIX,
    }
)


def plane_names(with_cervix: bool = False) -> list[str]:
    """Return the class names of a dataset, in label order.

    Args:
        with_cervix: Whether the dataset keeps ``Maternal cervix`` as label 5.

    Returns:
        The list of plane names.
    """
    return list(PLANES_WITH_CERVIX if with_cervix else PLANES)


def class_label(with_cervix: bool = False) -> datasets.ClassLabel:
    """Return the shared ``label`` feature.

    Args:
        with_cervix: Whether the dataset keeps ``Maternal cervix`` as label 5.

    Returns:
        A ``datasets.ClassLabel`` with the study's class names.
    """
    return datasets.ClassLabel(names=plane_names(with_cervix))


def canonical_plane(value: object, *, study_codes: bool = False) -> str:
    """Map a plane as written in any source to its canonical name.

    Accepts the canonical names in any case, short names (``abdomen``, ``other``, ``cervix``) and, with
    ``study_codes``, the study's numeric codes (see ``STUDY_PLANE_CODES``).

    Args:
        value: The plane as read from a CSV cell, folder name or option.
        study_codes: Read integers as the study's plane codes.

    Returns:
        One of ``PLANES_WITH_CERVIX``.

    Raises:
        DataError: If the value names no known plane.
    """
    text = str(value).strip()
    if study_codes and text.lstrip("-").isdigit():
        code = int(text)
        if code in STUDY_PLANE_CODES:
            return STUDY_PLANE_CODES[code]
    name = _ALIASES.get(text.lower())
    if name is None:
        raise DataError(
            f"unknown plane {value!r}; expected one of {', '.join(PLANES_WITH_CERVIX)}"
            + (" or a study code 0-5" if study_codes else "")
        )
    return name


def label_index(plane: str, names: list[str] | tuple[str, ...]) -> int:
    """Return the label index of a canonical plane name among a dataset's class names.

    Raises:
        DataError: If the plane is not one of the dataset's classes.
    """
    try:
        return list(names).index(plane)
    except ValueError:
        raise DataError(f"plane {plane!r} is not a class of this dataset ({', '.join(names)})") from None


def prompt_for(plane: str) -> str:
    """Return the study's prompt for a canonical plane name."""
    return PROMPTS[plane]


def base_features(with_cervix: bool = False) -> dict[str, datasets.features.FeatureType]:
    """Return the columns every fulora dataset has, in order.

    ``image`` is decoded to grayscale (mode ``L``): ultrasound is single-channel, and the African archive
    mixes grayscale and RGB files of the same content. The stored bytes are the source's bytes, untouched.
    """
    return {
        "image": datasets.Image(mode="L"),
        "label": class_label(with_cervix),
        "text": datasets.Value("string"),
        "source": datasets.Value("string"),
        "image_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
    }
