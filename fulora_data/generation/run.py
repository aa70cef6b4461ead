"""A generation run: resumable, split across processes, merged into one generated folder.

Layout while a run is under way::

    OUT/fulora_generated.json      the final set's manifest; ``info.settings`` holds every setting that
                                   decides the pixels, written before the first image
    OUT/.parts/rank-<r>/           each process's own generated folder (its shards and metadata)

Each process takes every N-th batch of the plan (``config.batches``), skips the images already committed
in the final set or in any part, and writes the rest to its part through ``GeneratedWriter`` (committed
shard by shard). The main process then merges: it copies every image into the final folder in plan order,
so the final shards are the same whatever the number of processes, and removes ``.parts``. A run killed at
any moment leaves committed shards and at most one partial shard per process; the same command resumes,
regenerating only whole batches, so every image keeps the pixels of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fulora_data import __version__
from fulora_data.console import log_stderr
from fulora_data.errors import ConfigError, DataError, require
from fulora_data.generated import (
    MANIFEST,
    METADATA,
    GeneratedWriter,
    GenerationRecord,
    committed_ids,
    read_manifest,
)
from fulora_data.generation.config import (
    SAMPLERS,
    SEED_SCHEME,
    GenerateConfig,
    PlannedImage,
    batches,
    plan,
    prompt,
)

PARTS = ".parts"
LOCK = ".fulora-generate.lock"
HOLDER = ".fulora-generate.pid"
"""The run's lock (``filelock``) and the file naming the process that holds it."""
CONTACT_SHEET = "contact_sheet.png"
CARD = "README.md"
MEMORISATION = "memorisation.json"
_SAMPLER_NAMES = {cls: name for name, cls in SAMPLERS.items()}


def run_settings(
    config: GenerateConfig,
    base: tuple[str, str],
    adapter,
    clip_skip: int,
    device_type: str,
    schedulers: dict | None = None,
) -> dict:
    """Every setting that decides which images a run makes and their pixels, in a fixed order.

    Batch size is one of them: batched and one-by-one sampling agree only up to float rounding.
    ``schedulers`` holds each sampler's full diffusers scheduler config and time grid
    (``pipeline.sampler_record``). The result is standard JSON (as the manifest stores it), so a resumed
    run compares like with like.

    Raises:
        ConfigError: If a setting is not standard JSON (a NaN or infinite number).
    """
    settings = {
        "base_model": base[0],
        "base_model_revision": base[1],
        "adapter": adapter.name if adapter else "",
        "adapter_revision": adapter.revision if adapter else "",
        "adapter_sha256": adapter.sha256 if adapter else "",
        "adapter_scale": float(config.adapter_scale) if adapter else 0.0,
        "clip_skip": clip_skip,
        "planes": list(config.planes),
        "per_plane": config.per_plane,
        "samplers": list(config.samplers),
        "prompts": {plane: prompt(plane) for plane in config.planes},
        "negative_prompt": config.negative_prompt,
        "steps": config.steps,
        "guidance_scale": float(config.guidance_scale),
        "width": config.width,
        "height": config.height,
        "seed": config.seed,
        "seed_scheme": SEED_SCHEME,
        "batch_size": config.batch_size,
        "shard_size": config.shard_size,
        "device_type": device_type,
        "mixed_precision": "no" if device_type == "cpu" else config.mixed_precision,
        "schedulers": schedulers or {},
    }
    try:
        return json.loads(json.dumps(settings, allow_nan=False))
    except ValueError as err:  # validated() refuses non-finite options first; this is the last guard
        raise ConfigError(f"a generation setting is not a finite number ({err})") from None


def check_folder(folder: Path, settings: dict) -> None:
    """Refuse to write into a generated folder made with other settings, naming the first that differs.

    Raises:
        ConfigError: If the folder holds another generation.
    """
    manifest = read_manifest(folder)
    if manifest is None:
        # Checked here, by every process, so that all of them stop (the writer would stop the main one only).
        found = sorted(
            p.name for p in folder.glob("*") if p.name == METADATA or re.match(r"images-\d{5}\.tar$", p.name)
        )
        if found:
            raise ConfigError(
                f"{folder} holds {found[0]} but no {MANIFEST}: another generation's shards; refusing to mix "
                "them: write into an empty or new folder"
            )
        others = sorted(
            p.name
            for p in (folder.iterdir() if folder.is_dir() else ())
            # A writer killed before its manifest was committed leaves only its own temporary files.
            if p.name not in (PARTS, LOCK, HOLDER)
            and not p.name.startswith((f".{MANIFEST}.tmp-", f".{METADATA}.tmp-"))
        )
        if others:
            # The card, the contact sheet and memorisation.json would overwrite files of the same names.
            raise ConfigError(
                f"{folder} is not empty (it holds {others[0]!r}) and holds no {MANIFEST}: refusing to write "
                "a generation over other files: write into an empty or new folder"
            )
        return
    if _holds_no_image(folder, manifest):
        # A run that failed before its first image left only its own manifest: nothing to mix with.
        return
    found = manifest.get("info", {}).get("settings")
    if not isinstance(found, dict):
        raise ConfigError(
            f"{folder} holds another generation's shards (its {MANIFEST} records no `fulora generate` "
            "settings); refusing to mix them: write into an empty or new folder"
        )
    for key, value in settings.items():
        if found.get(key) != value:
            raise ConfigError(
                f"{folder} was generated with other settings: {key} is {_short(found.get(key))} there but "
                f"{_short(value)} now; refusing to mix them: use the same options, or a new folder"
            )
    for key in found:
        if key not in settings:
            raise ConfigError(f"{folder} was generated with setting {key!r} this fulora does not know")


def _short(value: Any, limit: int = 120) -> str:
    """A setting's repr for a message, cut at ``limit`` characters (a sampler record runs to kilobytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _holds_no_image(folder: Path, manifest: dict | None = None) -> bool:
    """Whether a generated folder (and its parts) commits no image at all."""
    manifest = read_manifest(folder) if manifest is None else manifest
    if manifest is not None and manifest.get("num_images", 0):
        return False
    parts = folder / PARTS
    for part in sorted(parts.glob("rank-*")) if parts.is_dir() else []:
        part_manifest = read_manifest(part)
        if part_manifest is not None and part_manifest.get("num_images", 0):
            return False
    return True


def _discard_empty_run(out: Path, created: bool) -> None:
    """After a failed run that committed no image, remove what it wrote, so any command can start afresh.

    Only fulora's own files go: the manifest and metadata of a set with no image, the parts folder, and,
    when this run created ``out``, the folder itself if nothing else is in it.
    """
    if not out.is_dir() or not _holds_no_image(out):
        return
    with contextlib.suppress(OSError):
        if (out / PARTS).is_dir():
            shutil.rmtree(out / PARTS)
        for name in (MANIFEST, METADATA):
            if (out / name).is_file():
                (out / name).unlink()
        for path in out.iterdir():
            if path.name.startswith((f".{MANIFEST}.tmp-", f".{METADATA}.tmp-")):
                path.unlink()
        if created and {p.name for p in out.iterdir()} <= {LOCK, HOLDER}:
            for name in (HOLDER, LOCK):
                (out / name).unlink(missing_ok=True)
            out.rmdir()


@contextlib.contextmanager
def run_lock(out: Path, enabled: bool = True):
    """Hold ``out`` for one run: a ``filelock`` in ``out/.fulora-generate.lock``, the holder's PID beside it.

    A second run into the same folder refuses at once, naming the PID. Yields whether this run created
    ``out`` (so a run that fails before its first image can remove it again).

    Raises:
        ConfigError: If another process holds the folder, or it cannot be created.
    """
    from filelock import FileLock, Timeout

    from fulora_data.io import atomic_write_text

    created = not out.exists()
    if not enabled:
        yield created
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(out / LOCK))
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = (out / HOLDER).read_text(encoding="utf-8").strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise ConfigError(
            f"{out} is being written by another `fulora generate` (PID {holder}); wait for it to finish, "
            "or write into another folder"
        ) from None
    except OSError as err:
        raise ConfigError(f"--out {out} cannot be written: {err.strerror or err}") from None
    try:
        atomic_write_text(out / HOLDER, f"{os.getpid()}\n")
        yield created
    finally:
        with contextlib.suppress(OSError):
            (out / HOLDER).unlink(missing_ok=True)
        lock.release()


class _Parts:
    """Random access to the committed images of the per-process part folders."""

    def __init__(self, root: Path):
        self.rows: dict[str, tuple[Path, dict]] = {}
        self._tars: dict[Path, tarfile.TarFile] = {}
        for part in sorted(root.glob("rank-*")) if root.is_dir() else []:
            manifest = read_manifest(part)
            if manifest is None:
                continue
            path = part / METADATA
            lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
            for line in lines[: manifest["num_images"]]:
                row = json.loads(line)
                self.rows.setdefault(row["image_id"], (part, row))

    def read(self, image_id: str) -> tuple[bytes, GenerationRecord]:
        part, row = self.rows[image_id]
        shard = part / row["shard"]
        if shard not in self._tars:
            self._tars[shard] = tarfile.open(shard, "r:")  # noqa: SIM115  (kept open across reads; closed in close())
        handle = self._tars[shard].extractfile(f"{image_id}.png")
        data = handle.read() if handle else b""
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise DataError(f"{shard}: {image_id}.png does not match its sha256; delete {part} and run again")
        return data, GenerationRecord.from_dict(row, f"{part / METADATA}")

    def close(self) -> None:
        for tar in self._tars.values():
            tar.close()


def _record(image: PlannedImage, config: GenerateConfig, settings: dict, adapter) -> GenerationRecord:
    return GenerationRecord(
        image_id=image.image_id,
        plane=image.plane,
        prompt=prompt(image.plane),
        negative_prompt=config.negative_prompt,
        sampler=SAMPLERS[image.sampler],
        steps=config.steps,
        guidance_scale=float(config.guidance_scale),
        seed=image.seed,
        width=config.width,
        height=config.height,
        base_model=settings["base_model"],
        base_model_revision=settings["base_model_revision"],
        adapter=settings["adapter"],
        adapter_revision=settings["adapter_revision"],
        lora_rank=adapter.info.rank if adapter else 0,
        generation_index=image.position,
        adapter_sha256=settings["adapter_sha256"],
        adapter_scale=settings["adapter_scale"],
        clip_skip=settings["clip_skip"],
    )


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="generating", disable=not enabled, dynamic_ncols=True)


def prepare_run(config: GenerateConfig, device_type: str):
    """Validate the options and resolve the base and the adapter.

    Returns:
        ``(config, base, adapter, clip_skip, settings)``; ``base`` is a ``pipeline.ResolvedBase``.
    """
    from fulora_data.generation.pipeline import read_base_scheduler, resolve_adapter, resolve_base

    config = config.validated()
    adapter = (
        resolve_adapter(config.adapter, config.weight_name, config.adapter_revision)
        if config.adapter
        else None
    )
    if config.clip_skip is not None:
        clip_skip = config.clip_skip
    elif adapter is not None and adapter.info.clip_skip > 0:
        clip_skip = adapter.info.clip_skip
    else:
        clip_skip = 1
    base = resolve_base(config.base, config.base_revision)
    schedulers = sampler_records(config, read_base_scheduler(base))
    settings = run_settings(config, (base.name, base.revision), adapter, clip_skip, device_type, schedulers)
    return config, base, adapter, clip_skip, settings


def sampler_records(config: GenerateConfig, base_scheduler: dict) -> dict[str, dict]:
    """Each sampler's full scheduler config and time grid, after checking ``--steps`` against the base.

    Raises:
        ConfigError: If ``--steps`` exceeds the base's training timesteps.
    """
    from fulora_data.generation.pipeline import sampler_record
    from fulora_data.generation.samplers import check_steps

    check_steps(config.samplers, config.steps, base_scheduler)
    return {name: sampler_record(name, base_scheduler, config.steps) for name in config.samplers}


def generate(
    config: GenerateConfig,
    out: str | Path,
    *,
    log: Callable[[str], None] = log_stderr,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate a synthetic set into ``out`` (resuming what is there) and write its sheet and card.

    Under ``accelerate launch --num_processes N`` every process runs this function; the work is split by
    batch and the main process merges.

    Args:
        config: The run's options.
        out: The generated folder to write (created, or resumed when it holds this run's settings).
        log: Where progress lines go.
        progress: Show a progress bar (images/s and ETA) on the main process.

    Returns:
        A summary: the folder, counts per plane and sampler, images made now, seconds, images/s, the
        contact sheet, the card, the settings and the memorisation summary (or why it was skipped).

    Raises:
        ConfigError: For a bad option, an adapter that does not fit the base, or a folder made with other
            settings.
        DataError: If writing fails (what was committed stays; the same command resumes).
    """
    accelerate = require("accelerate", "train")
    state = accelerate.PartialState(cpu=config.cpu)
    from fulora_data.generation.pipeline import pick_device

    device = pick_device(config.cpu or state.device.type == "cpu")
    # Everything that can be checked without writing is checked first: options, base, adapter, steps,
    # and the memorisation source.
    config, base, adapter, clip_skip, settings = prepare_run(config, device.type)
    if config.against is not None:
        from fulora_data.generation.card import check_against

        check_against(config)
    out = Path(out)
    main = state.is_main_process
    check_folder(
        out, settings
    )  # read-only: a foreign or other run's folder is refused before the lock is made
    with run_lock(out, enabled=main) as created:
        try:
            summary = _run(config, out, state, device, base, adapter, clip_skip, settings, log, progress)
        except BaseException:
            if main:
                _discard_empty_run(out, created)
            raise
    return summary


def _run(config, out, state, device, base, adapter, clip_skip, settings, log, progress) -> dict[str, Any]:
    """The body of ``generate`` once the folder is held: check it, load, sample, merge, finish."""
    from fulora_data.generation.pipeline import load_pipeline

    rank, world, main = state.process_index, state.num_processes, state.is_main_process
    check_folder(out, settings)
    parts_root = out / PARTS
    for part in sorted(parts_root.glob("rank-*")) if parts_root.is_dir() else []:
        check_folder(part, settings)
    # Loaded (adapter applied, clip skip checked) before anything is written, so a bad base, adapter or
    # clip skip leaves no manifest behind to refuse the corrected command.
    loading = time.perf_counter()
    pipe = load_pipeline(config, adapter, device, base, clip_skip)
    load_seconds = time.perf_counter() - loading
    fit = pipe.__dict__.get("_fulora_adapter_fit")
    images = plan(config)
    info = {"settings": settings, "command": "fulora generate", "fulora_version": __version__}
    if fit is not None:
        info["adapter_modules"] = fit.to_dict()
    final = GeneratedWriter(out, shard_size=config.shard_size, info=info) if main else None
    state.wait_for_everyone()
    done = committed_ids(out) | set(_Parts(parts_root).rows)
    state.wait_for_everyone()  # every process has read what is done before any writes
    mine = [b for k, b in enumerate(batches(images, config.batch_size)) if k % world == rank]
    mine = [b for b in mine if any(i.image_id not in done for i in b)]
    todo = sum(1 for b in mine for i in b if i.image_id not in done)
    if main:
        log(
            f"generating {len(images)} images ({len(config.planes)} planes x {len(config.samplers)} samplers x "
            f"{config.per_plane}) into {out}: {len(images) - len(done)} to make"
            + (f" on {world} processes" if world > 1 else "")
        )
        if fit is not None:
            log(
                f"adapter modules applied: {fit.unet} in the UNet, {fit.text_encoder} in the text encoder"
                + (
                    f"; {len(fit.unmatched_keys)} keys matched nothing (--allow-unmatched)"
                    if fit.unmatched_keys
                    else ""
                )
            )
    start = time.perf_counter()
    if mine:
        _generate_part(config, pipe, adapter, clip_skip, settings, mine, done, parts_root / f"rank-{rank}",
                       progress and main, info, todo)  # fmt: skip
    elapsed = time.perf_counter() - start  # the sampling and writing alone: the load is timed apart
    if world > 1:
        log(f"process {rank} of {world} made {todo} images in {elapsed:.1f} s")
    state.wait_for_everyone()
    summary: dict[str, Any] = {"out": str(out), "rank": rank, "processes": world}
    if main:
        summary.update(_merge(final, images, parts_root, progress=progress))
        summary.update(
            {
                "generated_now": len(images) - len(done),
                "seconds": round(elapsed, 3),
                "load_seconds": round(load_seconds, 3),
                "images_per_second": round((len(images) - len(done)) / elapsed, 3)
                if elapsed > 0 and len(images) > len(done)
                else None,
                "settings": settings,
                "adapter_modules": fit.to_dict() if fit is not None else None,
            }
        )
        summary.update(_finish(config, out, settings, adapter, log))
    state.wait_for_everyone()
    return summary


def _generate_part(config, pipe, adapter, clip_skip, settings, mine, done, folder, show, info, todo) -> None:
    from fulora_data.generation.pipeline import sample

    try:
        # Parts commit every batch (the merge repacks them into shard_size shards): a killed run loses
        # at most one batch per process.
        with (
            GeneratedWriter(folder, shard_size=config.batch_size, info=info) as writer,
            _progress(todo, show) as bar,
        ):
            for batch in mine:
                pictures = sample(pipe, batch, config, clip_skip)
                for image, picture in zip(batch, pictures, strict=True):
                    if image.image_id in done or image.image_id in writer.done:
                        continue
                    writer.add(picture, _record(image, config, settings, adapter))
                    bar.update(1)
    except OSError as err:
        raise DataError(
            f"writing {folder} failed ({err}); the shards committed so far are kept: run the same command "
            "again to resume"
        ) from None
    except RuntimeError as err:  # torch.OutOfMemoryError is a RuntimeError; so is a CPU allocation failure
        if "out of memory" not in str(err).lower() and type(err).__name__ != "OutOfMemoryError":
            raise
        raise DataError(
            f"out of memory sampling {config.batch_size} images of {config.width}x{config.height} on "
            f"{pipe.device}: lower --batch-size, --width or --height (the images committed so far are kept)"
        ) from None


def _merge(
    final: GeneratedWriter, images: list[PlannedImage], parts_root: Path, *, progress: bool = False
) -> dict[str, Any]:
    """Copy the parts' images into the final folder in plan order, then remove the parts."""
    from tqdm.auto import tqdm

    parts = _Parts(parts_root)
    try:
        for image in tqdm(images, unit="img", desc="merging", disable=not progress, dynamic_ncols=True):
            if image.image_id in final.done:
                continue
            if image.image_id not in parts.rows:
                raise DataError(
                    f"image {image.image_id} was not generated by any process; run the command again"
                )
            data, record = parts.read(image.image_id)
            final.add(data, record)
        final.close()
    finally:
        parts.close()
    if parts_root.is_dir():
        shutil.rmtree(parts_root)
    counts: dict[str, dict[str, int]] = {}
    for image in images:
        counts.setdefault(image.plane, {}).setdefault(image.sampler, 0)
        counts[image.plane][image.sampler] += 1
    return {"images": len(images), "counts": counts}


def _finish(config: GenerateConfig, out: Path, settings: dict, adapter, log) -> dict[str, Any]:
    """Write the contact sheet, run the memorisation check and write the card."""
    from fulora_data.generation.card import contact_sheet, memorisation_summary, write_card

    if config.against is None and (out / MEMORISATION).is_file():
        # A previous run's result: the card must not be read beside a check this run did not make.
        (out / MEMORISATION).unlink()
    sheet = contact_sheet(out)
    log(f"contact sheet: {sheet}")
    memo = memorisation_summary(config, out, log)
    card = write_card(out, settings, adapter, memo)
    log(f"generation card: {card}")
    return {"contact_sheet": str(sheet), "card": str(card), "memorisation": memo}


def regenerate(config: GenerateConfig, record: GenerationRecord, *, device: str | None = None):
    """Sample one image of a generated set again, exactly: in its run's fixed batch, from the run's options.

    The image's batch (``batches(plan(config), config.batch_size)``) is sampled whole and its member
    returned, so the pixels equal the stored ones. The options that decide the batch (``planes``,
    ``samplers``, ``per_plane``, ``seed``, ``batch_size``) are in the set's manifest (``info.settings``)
    and each record carries its ``generation_index``.

    Args:
        config: The options the set was generated with (base, adapter, steps, size, plan, batch size ...).
        record: The image's record (its plane, sampler and seed are used).
        device: Where to sample (default: the GPU if present and not ``config.cpu``, else the CPU).

    Returns:
        The PIL image.

    Raises:
        ConfigError: If the record is not in the plan of ``config`` (other plan options or seed).
    """
    from fulora_data.generation.pipeline import load_pipeline, pick_device, sample

    target = pick_device(config.cpu) if device is None else device
    config, base, adapter, clip_skip, _ = prepare_run(config, str(target).split(":")[0])
    if record.sampler not in _SAMPLER_NAMES:
        raise ConfigError(
            f"record {record.image_id!r} names sampler {record.sampler!r}, which fulora cannot run"
        )
    images = plan(config)
    position = record.generation_index
    if not (
        0 <= position < len(images)
        and images[position].seed == record.seed
        and images[position].sampler == _SAMPLER_NAMES[record.sampler]
    ):
        raise ConfigError(
            f"record {record.image_id!r} is not in the plan of these options: pass the planes, samplers, "
            "per_plane, seed and batch_size of its run (its manifest's info.settings)"
        )
    batch = next(b for b in batches(images, config.batch_size) if any(i.position == position for i in b))
    pipe = load_pipeline(config, adapter, target, base, clip_skip)
    pictures = sample(pipe, batch, config, clip_skip)
    return pictures[[i.position for i in batch].index(position)]


def regenerate_image(
    folder: str | Path,
    image_id: str,
    *,
    base: str,
    adapter: str | None = None,
    weight_name: str | None = None,
    device: str | None = None,
):
    """Sample one image of a generated folder again, from its ``metadata.jsonl`` row and manifest alone.

    Every option but where the base and the adapter are comes from the manifest's ``info.settings``
    (plan, batch size, steps, size, clip skip ...). The base and the adapter given must be the ones the
    set records (same digest, commit or sha256).

    Args:
        folder: The generated folder.
        image_id: The image's id (its ``metadata.jsonl`` row).
        base: The base model (local folder or Hub repository).
        adapter: The adapter, when the set used one.
        weight_name: The adapter's file inside a folder or repository.
        device: Where to sample (default: the device type the set was made on).

    Returns:
        The PIL image, pixel for pixel the stored one.

    Raises:
        ConfigError: If the folder is not a ``fulora generate`` set, has no such image, or the base or
            adapter differ from the recorded ones.
    """
    from fulora_data.generated import read_generated

    folder = Path(folder)
    manifest, images = read_generated(folder)
    settings = manifest.get("info", {}).get("settings")
    if not isinstance(settings, dict):
        raise ConfigError(f"{folder} records no `fulora generate` settings; it cannot be regenerated")
    records = {image.record.image_id: image.record for image in images}
    if image_id not in records:
        raise ConfigError(f"{folder} holds no image {image_id!r}")
    if bool(adapter) != bool(settings["adapter"]):
        raise ConfigError(
            f"{folder} was generated with adapter {settings['adapter']!r}: pass it as --adapter"
            if settings["adapter"]
            else f"{folder} was generated without an adapter; got adapter {adapter!r}"
        )
    config = GenerateConfig(
        base=base,
        adapter=adapter,
        weight_name=weight_name,
        adapter_scale=settings["adapter_scale"] if adapter else 1.0,
        planes=tuple(settings["planes"]),
        per_plane=settings["per_plane"],
        samplers=tuple(settings["samplers"]),
        steps=settings["steps"],
        guidance_scale=settings["guidance_scale"],
        negative_prompt=settings["negative_prompt"],
        clip_skip=settings["clip_skip"],
        width=settings["width"],
        height=settings["height"],
        seed=settings["seed"],
        batch_size=settings["batch_size"],
        shard_size=settings["shard_size"],
        mixed_precision=settings["mixed_precision"],
        cpu=settings["device_type"] == "cpu",
        # The set was made with the keys that matched nothing left out: the same adapter does that again.
        allow_unmatched=bool((manifest.get("info", {}).get("adapter_modules") or {}).get("unmatched_keys")),
    )
    target = device or ("cpu" if config.cpu else None)
    _, _, _, _, now = prepare_run(config, str(target or settings["device_type"]).split(":")[0])
    check_folder(folder, now)  # the same base, adapter and options, else the first that differs is named
    return regenerate(config, records[image_id], device=target)


def generate_from_options(
    out: str | Path,
    *,
    preset: str | None = None,
    log: Callable[[str], None] = log_stderr,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Build the run's options from a preset and the options given (``None``: not given), then ``generate``.

    The library behind ``fulora generate``. Comma-separated ``planes`` and ``samplers`` strings are split.

    Raises:
        ConfigError: For an unknown preset or a bad option.
    """
    given = {key: value for key, value in options.items() if value is not None}
    for key in ("planes", "samplers"):
        if isinstance(given.get(key), str):
            given[key] = tuple(part.strip() for part in given[key].split(",") if part.strip())
    config = GenerateConfig.preset(preset, **given) if preset else GenerateConfig(**given)
    return generate(config, out, log=log, progress=progress)
