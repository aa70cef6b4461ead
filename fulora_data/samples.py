"""Seeded, procedural stand-ins for the real archives, in their exact layouts.

They power ``fulora demo``, the tests and the benchmarks where the real data cannot be downloaded. The
images are not ultrasound: each plane gets a distinct bright structure (a skull ring for brain, a bone
for femur, ribs for thorax, ...) inside a speckled ultrasound fan, so that a classifier can learn them.
"""

from __future__ import annotations

import csv
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fulora_data.builders.african import COUNTRIES
from fulora_data.io import atomic_file
from fulora_data.pixels import png_bytes
from fulora_data.taxonomy import CERVIX, PLANES, STUDY_PLANE_CODES

SPANISH_HEADER = ["Image_name", "Patient_num", "Plane", "Brain_plane", "Operator", "US_Machine", "Train "]
AFRICAN_HEADER = ["Patient_num", "Plane", "Train", "Center", "Image_name"]
_CODE_OF = {plane: code for code, plane in STUDY_PLANE_CODES.items()}
_COUNTRY_CODES = {"Algeria": "DZA", "Egypt": "EGY", "Ghana": "GHA", "Malawi": "MWI", "Uganda": "UGA"}
# The real per-country sizes (width, height), divided by 8 for the default tiny archives.
AFRICAN_SIZES = {
    "Algeria": (500, 430),
    "Egypt": (400, 450),
    "Ghana": (500, 500),
    "Malawi": (500, 400),
    "Uganda": (600, 500),
}
_AFRICAN_RGB = {"Egypt", "Uganda"}


def render_plane_image(
    plane: str, size: tuple[int, int], rng: np.random.Generator, mode: str = "L"
) -> Image.Image:
    """Draw a procedural ultrasound-like image of a plane.

    Args:
        plane: A canonical plane name.
        size: ``(width, height)``.
        rng: The random generator that makes this image.
        mode: ``"L"`` or ``"RGB"`` (gray content stored as three equal channels).

    Returns:
        The image.
    """
    width, height = size
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    # The ultrasound fan: a sector opening downwards from the top centre.
    apex = (width / 2, -height * 0.05)
    radius = height * 1.0
    draw.pieslice([apex[0] - radius, apex[1] - radius, apex[0] + radius, apex[1] + radius], 50, 130, fill=60)
    cx, cy = width * rng.uniform(0.4, 0.6), height * rng.uniform(0.45, 0.6)
    s = min(width, height) * rng.uniform(0.25, 0.32)
    line = max(1, int(min(width, height) / 40))
    if plane == "Fetal brain":
        draw.ellipse([cx - s * 1.2, cy - s, cx + s * 1.2, cy + s], outline=230, width=line * 2)
        draw.line([cx - s * 1.1, cy, cx + s * 1.1, cy], fill=170, width=line)
    elif plane == "Fetal abdomen":
        draw.ellipse([cx - s, cy - s, cx + s, cy + s], fill=110, outline=190, width=line)
        draw.ellipse([cx - s / 3, cy - s / 2, cx + s / 6, cy], fill=15)
    elif plane == "Fetal femur":
        angle = rng.uniform(-0.4, 0.4)
        dx, dy = np.cos(angle) * s * 1.4, np.sin(angle) * s * 1.4
        draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=250, width=line * 3)
    elif plane == "Fetal thorax":
        draw.ellipse([cx - s, cy - s, cx + s, cy + s], outline=140, width=line)
        for k in range(5):
            y = cy - s + (k + 0.5) * 2 * s / 5
            draw.arc([cx - s, y - s / 4, cx + s, y + s / 4], 200, 340, fill=235, width=line)
    elif plane == CERVIX:
        draw.rectangle([cx - s * 1.5, cy - s / 4, cx + s * 1.5, cy + s / 4], fill=20)
    else:
        for _ in range(4):
            x, y, r = rng.uniform(0, width), rng.uniform(0, height), s * rng.uniform(0.2, 0.6)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.integers(90, 200)))
    pixels = np.asarray(canvas, dtype=np.float32)
    speckle = rng.rayleigh(scale=0.5, size=pixels.shape).astype(np.float32)
    pixels = np.clip(pixels * speckle * 1.2 + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L")
    return image.convert("RGB") if mode == "RGB" else image


def _pack(folder: Path, archive: Path, *, top: str | None = None) -> Path:
    """Pack a folder into a zip (members at the root) or a tar.xz (members under ``top/``)."""
    with atomic_file(archive) as partial:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as zf:
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(folder).as_posix())
        else:
            with tarfile.open(partial, "w:xz") as tf:
                tf.add(folder, arcname=top or folder.name)
    return archive


def write_fetal_planes_csv(path: Path, rows: Iterable[dict], *, bom: bool = True) -> None:
    """Write rows in FETAL_PLANES_DB's CSV dialect (``;``, ``Train `` header with a trailing space)."""
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
        writer.writerow(SPANISH_HEADER)
        for row in rows:
            writer.writerow([row[c.strip()] for c in SPANISH_HEADER])


def spanish_rows(
    *, per_plane: int, test_per_plane: int, with_cervix: bool, rng: np.random.Generator
) -> list[dict]:
    """Make FETAL_PLANES_DB metadata rows: patients with one to three images of a plane each."""
    planes = [*PLANES, CERVIX] if with_cervix else list(PLANES)
    rows, patient = [], 0
    for train, count in ((1, per_plane), (0, test_per_plane)):
        for plane in planes:
            made = 0
            while made < count:
                patient += 1
                n = int(min(rng.integers(1, 4), count - made))
                for i in range(1, n + 1):
                    brain = str(rng.choice(["Trans-thalamic", "Trans-cerebellum", "Trans-ventricular"]))
                    rows.append(
                        {
                            "Image_name": f"Patient{patient:05d}_Plane{_CODE_OF[plane] + 1}_{i}_of_{n}",
                            "Patient_num": str(patient),
                            "Plane": plane,
                            "Brain_plane": brain if plane == "Fetal brain" else "Not A Brain",
                            "Operator": str(rng.choice(["Op. 1", "Op. 2", "Op. 3", "Other"])),
                            "US_Machine": str(rng.choice(["Voluson E6", "Aloka", "Voluson S10", "Other"])),
                            "Train": str(train),
                        }
                    )
                made += n
    return rows


def write_spanish_source(
    dest: str | Path,
    *,
    per_plane: int = 6,
    test_per_plane: int = 2,
    with_cervix: bool = True,
    seed: int = 0,
    archive: bool = False,
    sizes: tuple[tuple[int, int], ...] = ((80, 56), (96, 64), (72, 60)),
    bom: bool = True,
) -> Path:
    """Write a procedural FETAL_PLANES_DB in the real layout.

    Args:
        dest: Folder to write into (created if needed).
        per_plane: Training images per class.
        test_per_plane: Test images per class.
        with_cervix: Include Maternal cervix images.
        seed: Seed of everything random.
        archive: Write ``FETAL_PLANES_ZENODO.zip`` instead of the extracted folder.
        sizes: Image sizes to pick from.
        bom: Start the CSV with a UTF-8 BOM, as some copies of the archive do.

    Returns:
        The extracted folder (``dest/FETAL_PLANES_DB``) or the zip (``dest/FETAL_PLANES_ZENODO.zip``).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = spanish_rows(per_plane=per_plane, test_per_plane=test_per_plane, with_cervix=with_cervix, rng=rng)
    work = Path(tempfile.mkdtemp(dir=dest)) / "FETAL_PLANES_DB" if archive else dest / "FETAL_PLANES_DB"
    (work / "Images").mkdir(parents=True, exist_ok=True)
    for row in rows:
        size = sizes[int(rng.integers(len(sizes)))]
        image = render_plane_image(row["Plane"], size, rng)
        (work / "Images" / f"{row['Image_name']}.png").write_bytes(png_bytes(image))
    write_fetal_planes_csv(work / "FETAL_PLANES_DB_data.csv", rows, bom=bom)
    if not archive:
        return work
    try:
        return _pack(work, dest / "FETAL_PLANES_ZENODO.zip")
    finally:
        shutil.rmtree(work.parent)


def write_african_source(
    dest: str | Path,
    *,
    patients_per_country: int = 4,
    seed: int = 0,
    archive: bool = False,
    scale: float = 1 / 8,
) -> Path:
    """Write a procedural African fetal planes set in the real layout.

    Each patient has up to four planes (one is sometimes missing, as in the real set); the first half of
    each country's patients is ``Train=1``. Egypt and Uganda are stored as RGB, the rest as grayscale,
    at each country's real size times ``scale``.

    Args:
        dest: Folder to write into (created if needed).
        patients_per_country: Patients per country.
        seed: Seed of everything random.
        archive: Write ``Zenodo_dataset.tar.xz`` instead of the extracted folder.
        scale: Factor applied to the real per-country image sizes.

    Returns:
        The extracted folder (``dest/Zenodo_dataset``) or the archive (``dest/Zenodo_dataset.tar.xz``).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(dir=dest)) / "Zenodo_dataset" if archive else dest / "Zenodo_dataset"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    fetal = [p for p in PLANES if p != "Other"]
    for country in COUNTRIES:
        (work / country).mkdir(exist_ok=True)
        width, height = AFRICAN_SIZES[country]
        size = (max(16, int(width * scale)), max(16, int(height * scale)))
        mode = "RGB" if country in _AFRICAN_RGB else "L"
        for patient in range(1, patients_per_country + 1):
            skip = int(rng.integers(0, 8))  # sometimes one plane is missing
            for index, plane in enumerate(fetal):
                if skip == index:
                    continue
                name = f"patient{patient:03d}_{_COUNTRY_CODES[country]}_plane{index}"
                image = render_plane_image(plane, size, rng, mode=mode)
                (work / country / f"{name}.png").write_bytes(png_bytes(image))
                train = 1 if patient <= patients_per_country // 2 else 0
                rows.append(
                    {
                        "Patient_num": patient,
                        "Plane": plane,
                        "Train": train,
                        "Center": country,
                        "Image_name": name,
                    }
                )
    with open(work / "African_planes_database.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=AFRICAN_HEADER)
        writer.writeheader()
        writer.writerows(rows)
    if not archive:
        return work
    try:
        return _pack(work, dest / "Zenodo_dataset.tar.xz", top="Zenodo_dataset")
    finally:
        shutil.rmtree(work.parent)


SYNTHETIC_FOLDERS = {
    "Other": "Other",
    "Fetal abdomen": "Fetal abdomen",
    "Fetal brain": "Fetal brain",
    "Fetal femur": "Fetal femur",
    "Fetal thorax": "Fetal thorax",
}


def synthetic_names(per_plane: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Make ``(image name, plane)`` pairs in the release's naming: ``<index:05d>-<seed>``, seeds consecutive
    from a random start per plane, as the study's generation runs produced them."""
    pairs = []
    for plane in PLANES:
        start = int(rng.integers(0, 2**32 - per_plane))
        pairs += [(f"{i:05d}-{start + i}", plane) for i in range(per_plane)]
    return pairs


def write_synthetic_labels_csv(path: Path, pairs: Iterable[tuple[str, str]]) -> Path:
    """Write a labels CSV in the study's dialect (``Image_name,Plane,Train``, UTF-8 BOM, CRLF)."""
    with open(path, "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["Image_name", "Plane", "Train"])
        writer.writerows([name, plane, 1] for name, plane in pairs)
    return path


def write_synthetic_release(
    dest: str | Path,
    *,
    per_plane: int = 4,
    seed: int = 0,
    layout: str = "folders",
    archive: bool = True,
    size: tuple[int, int] = (48, 48),
) -> tuple[Path, Path]:
    """Write a procedural stand-in for the study's ``synthetic_train_5000.zip`` and its labels CSV.

    Args:
        dest: Folder to write into (created if needed).
        per_plane: Images per plane (the release has 1,000).
        seed: Seed of everything random.
        layout: ``"folders"`` (``synthetic_train_5000/<plane>/<name>.png``) or ``"flat"`` (all PNGs in
            ``synthetic_train_5000/``, labels only in the CSV): the real zip's inner layout is undocumented.
        archive: Write ``synthetic_train_5000.zip`` instead of the extracted folder.
        size: Image size (the release's images are RGB).

    Returns:
        The zip or folder, and ``dest/synthetic_train_5000.csv`` (the labels, written for both layouts).
    """
    if layout not in ("folders", "flat"):
        raise ValueError(f"layout must be 'folders' or 'flat', got {layout!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pairs = synthetic_names(per_plane, rng)
    work = Path(tempfile.mkdtemp(dir=dest)) if archive else dest
    top = work / "synthetic_train_5000"
    for name, plane in pairs:
        folder = top / SYNTHETIC_FOLDERS[plane] if layout == "folders" else top
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.png").write_bytes(png_bytes(render_plane_image(plane, size, rng, mode="RGB")))
    labels = write_synthetic_labels_csv(dest / "synthetic_train_5000.csv", pairs)
    if not archive:
        return top, labels
    try:
        return _pack(work, dest / "synthetic_train_5000.zip"), labels
    finally:
        shutil.rmtree(work)


def write_generated_folder(
    dest: str | Path,
    *,
    per_plane: int = 4,
    seed: int = 0,
    shard_size: int = 7,
    size: tuple[int, int] = (48, 48),
    sampler: str = "EulerDiscreteScheduler",
) -> Path:
    """Write a procedural set in fulora's generated-folder format (``fulora_data.generated``).

    Args:
        dest: The folder to write (created if needed).
        per_plane: Images per plane.
        seed: Seed of everything random.
        shard_size: Images per WebDataset shard.
        size: Image size.
        sampler: The sampler name recorded for every image.

    Returns:
        ``dest``.
    """
    from fulora_data.generated import GeneratedWriter, GenerationRecord
    from fulora_data.taxonomy import prompt_for

    rng = np.random.default_rng(seed)
    pairs = synthetic_names(per_plane, rng)
    with GeneratedWriter(dest, shard_size=shard_size, info={"command": "fulora_data.samples"}) as writer:
        for index, (name, plane) in enumerate(pairs):
            record = GenerationRecord(
                image_id=name,
                plane=plane,
                prompt=prompt_for(plane),
                negative_prompt="",
                sampler=sampler,
                steps=20,
                guidance_scale=7.5,
                seed=int(name.split("-")[1]),
                width=size[0],
                height=size[1],
                base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
                base_model_revision="0" * 40,
                adapter="fulora/lora-rank128",
                adapter_revision="1" * 40,
                lora_rank=128,
                generation_index=index,
            )
            writer.add(png_bytes(render_plane_image(plane, size, rng, mode="RGB")), record)
    return Path(dest)
