"""The LoRA training run: checks, base model, cached data, the loop, checkpoints, outputs and the push.

``train_lora(config, out)`` reads top to bottom, as the classifier's trainer does: refuse bad settings, a
busy or foreign ``--out`` and an unreachable push target before any long work (``preflight``); load the
base model and the training set with its buckets and latent cache; add LoRA layers with peft and hand
everything to accelerate (``start_run``, one process or ``accelerate launch --num_processes N``);
``restore`` a checkpoint; ``train_step`` until ``max_steps`` with periodic ``save_checkpoint`` and
``sample_validation``; ``write_outputs`` (the adapter in both formats with its card); ``push_adapter``.
The run's state lives in one ``LoraRun``. ``OUT`` ends up holding::

    adapter/      pytorch_lora_weights.safetensors, NAME.safetensors (kohya), samples.png, samples/, README.md
    checkpoint/   the latest resumable state (``--resume`` continues from it)
    validation/   step-N/<plane>.png, one image per plane at each validation step
    logs/         the tracker's logs (``report_to``: TensorBoard through accelerate)
    .fulora-written.json  what fulora wrote in adapter/ and validation/ (name and sha256)
    .fulora.lock, .fulora.lock.pid  held by the run writing OUT

Only the main process writes, and only one run writes one ``OUT``: a second one refuses at once, naming
the holder's PID. Nothing fulora did not write is deleted or overwritten. A checkpoint records what the run
read by content (the training images' sha256, a local base's weights digest) and every setting; ``--resume``
refuses another run naming the first difference. Per-step randomness (noise, timesteps) comes from a
generator seeded by the seed, the step and the process, and the data order from the seed and the epoch,
so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fulora_data import __version__
from fulora_data.adapter import (
    DIFFUSERS_FILE,
    AdapterInfo,
    check_output_name,
    diffusers_metadata,
    save_adapter_file,
    save_kohya_file,
)
from fulora_data.checkpoint import (
    STATE_FILE,
    atomic_folder,
    check_same_run,
    find_checkpoint,
    read_state,
    rng_state,
    set_rng_state,
    tracker_name,
    weights_digest,
)
from fulora_data.console import log_stderr
from fulora_data.errors import ConfigError, DataError, FuloraError, install_hint, require
from fulora_data.io import atomic_write_json, atomic_write_text, file_sha256, remove_leftovers
from fulora_data.lora.config import LoraConfig, base_kind, check_clip_skip

ADAPTER_STATE = "adapter.safetensors"
CHECKPOINT_FILES = (ADAPTER_STATE, "optimizer.pt", "scheduler.pt", "scaler.pt", "rng.pt", STATE_FILE)
WRITTEN = ".fulora-written.json"
LOCK = ".fulora.lock"
#: Settings a resumed run may change: where things are (the content is compared instead), how often it
#: checkpoints and samples, how long it runs (with a schedule that does not depend on the length), and the
#: run's name (``--name``: it names the kohya file, as kohya's ``output_name``, and changes no weight).
RESUME_MAY_CHANGE = (
    "base",
    "output_name",
    "source",
    "cache_dir",
    "cpu",
    "max_steps",
    "checkpoint_every",
    "validation_every",
    "validation_inference_steps",
    "validation_seed",
)
LENGTH_FREE_SCHEDULERS = ("constant", "constant_with_warmup")


class TrainingError(FuloraError):
    """Training cannot go on (a non-finite loss, a checkpoint that cannot be written); the message says why."""


# ------------------------------------------------------------------------- checks before any long work
def check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be created or written, before any long work.

    Raises:
        ConfigError: Naming the folder and the reason.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".fulora-write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"--out {out} is not a writable folder ({err.strerror or err})") from None


@contextlib.contextmanager
def lock_out(out: Path) -> Iterator[None]:
    """Hold ``OUT``'s lock for one run; a second run into the same ``OUT`` refuses at once.

    The lock is an OS file lock (``filelock``), released when the holder ends, even by ``kill -9``; the
    holder's PID is written beside it for the refusal's message.

    Raises:
        ConfigError: If another process holds the lock, naming its PID.
    """
    filelock = require("filelock", "train")
    lock = filelock.FileLock(str(out / LOCK))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        try:
            holder = (out / f"{LOCK}.pid").read_text(encoding="utf-8").strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise ConfigError(
            f"--out {out} is in use by another fulora run (PID {holder}); wait for it to end or choose "
            "another --out"
        ) from None
    try:
        atomic_write_text(out / f"{LOCK}.pid", f"{os.getpid()}\n")
        yield
    finally:
        lock.release()


def _written(out: Path) -> dict[str, str | None]:
    """What fulora wrote in ``out``: relative path -> sha256 (None while being written)."""
    path = out / WRITTEN
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(
            f"{path} is not valid JSON ({err}); it says which files in {out} fulora wrote"
        ) from None
    return {str(k): v for k, v in values.items()} if isinstance(values, dict) else {}


def mark_written(out: Path, entries: dict[str, str | None], *, replace: str | None = None) -> None:
    """Record files fulora writes (``None``: about to be written) in ``OUT/.fulora-written.json``.

    Args:
        out: The run folder.
        entries: Relative path -> sha256 (or None before the write, so a kill between the write and the
            record never makes fulora's own file look foreign).
        replace: A subfolder (``adapter``) whose earlier entries the new ones replace.
    """
    written = _written(out)
    if replace is not None:
        written = {k: v for k, v in written.items() if not k.startswith(replace + "/")}
    written.update(entries)
    atomic_write_json(out / WRITTEN, dict(sorted(written.items())))


def check_foreign_files(out: Path) -> None:
    """Refuse an ``OUT`` holding, where fulora writes, a file fulora did not write (or one changed since).

    ``adapter/`` and ``validation/`` must hold only files recorded in ``.fulora-written.json`` with the
    same content; ``checkpoint/`` only a checkpoint's files.

    Raises:
        ConfigError: Naming the first such file.
    """
    written = _written(out)
    for sub in ("adapter", "validation", "checkpoint"):
        folder = out / sub
        if folder.exists() and not folder.is_dir():
            raise ConfigError(
                f"--out {out}: {sub} is a file fulora did not write; move it away or choose another --out"
            )
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_dir():
                continue
            relative = path.relative_to(out).as_posix()
            if sub == "checkpoint":
                foreign = path.name not in CHECKPOINT_FILES
            else:
                foreign = relative not in written or (
                    written[relative] is not None and file_sha256(path) != written[relative]
                )
            if foreign:
                raise ConfigError(
                    f"--out {out}: {relative} was not written by fulora (or was changed since), and a run "
                    "would replace it; move it away or choose another --out"
                )


def base_identity(config: LoraConfig) -> dict[str, Any]:
    """What the base model is by content: a local base's weights digest, or the Hub id and revision."""
    kind = base_kind(config.base)
    if kind == "hub":
        return {"kind": "hub", "id": config.base, "revision": config.base_revision}
    return {"kind": kind, "sha256": weights_digest(Path(config.base).expanduser())}


def check_resume(
    out: Path,
    config: LoraConfig,
    resume: bool,
    *,
    base: dict[str, Any] | None = None,
    num_processes: int | None = None,
) -> tuple[Path, dict] | None:
    """Find the checkpoint to resume and check it belongs to this run: every setting and the base's content.

    Args:
        out: The run folder.
        config: This run's settings.
        resume: Whether ``--resume`` was given.
        base: This run's ``base_identity`` (a local base is compared by its weights digest; None: not
            compared here).
        num_processes: This run's process count (None: not compared).

    Returns:
        ``(checkpoint folder, its state)`` when resuming, else ``None``.

    Raises:
        ConfigError: When resuming without a checkpoint or from another run (naming the first setting or
            the base that differs), or when not resuming but ``OUT`` already holds a run.
    """
    folder = find_checkpoint(out / "checkpoint")
    if not resume:
        if folder is not None:
            raise ConfigError(
                f"--out {out} already holds a LoRA run's checkpoint; pass --resume to continue it or choose "
                "another --out"
            )
        return None
    if folder is None:
        raise ConfigError(f"--resume: {out} has no checkpoint to resume")
    state = read_state(folder)
    saved = state.get("config", {})
    if isinstance(state.get("step"), int) and config.max_steps < state["step"]:
        raise ConfigError(
            f"--resume: {out} has already trained {state['step']} steps, more than --max-steps {config.max_steps}"
        )
    saved_base = state.get("identity", {}).get("base")
    by_content = bool(saved_base) and saved_base.get("kind") != "hub" and base_kind(config.base) != "hub"
    current = config.to_dict()
    fields = [f for f in current if f not in RESUME_MAY_CHANGE or (f == "base" and not by_content)]
    check_same_run(saved, current, fields, where=str(out))
    if config.lr_scheduler not in LENGTH_FREE_SCHEDULERS and saved.get("max_steps") != config.max_steps:
        raise ConfigError(
            f"--resume: {out} was trained with max_steps={saved.get('max_steps')!r} and the "
            f"{config.lr_scheduler!r} schedule depends on it; got {config.max_steps!r}"
        )
    if by_content and base is not None and base.get("sha256") != saved_base.get("sha256"):
        raise ConfigError(
            f"--resume: {out} was trained on base weights {saved_base.get('sha256')}, but --base "
            f"{config.base} now holds {base.get('sha256')}"
        )
    saved_processes = state.get("num_processes", 1)
    if num_processes is not None and saved_processes != num_processes:
        raise ConfigError(
            f"--resume: {out} was trained on {saved_processes} process(es), not {num_processes}"
        )
    return folder, state


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """Load every file of a checkpoint (on the CPU), so a damaged one is refused before any long work.

    Returns:
        ``adapter`` (tensors), ``optimizer``, ``scheduler``, ``scaler`` (or None) and ``rng`` states.

    Raises:
        DataError: Naming a missing, truncated or damaged file.
    """
    torch = require("torch", "train")
    safetensors_torch = require("safetensors.torch", "train")

    def load(name: str, reader: Callable[[Path], Any]) -> Any:
        path = folder / name
        try:
            return reader(path)
        except FileNotFoundError:
            raise DataError(f"--resume: {path} is missing; the checkpoint is incomplete") from None
        except Exception as err:  # torch and safetensors raise many kinds for a damaged file
            raise DataError(
                f"--resume: {path} cannot be read ({type(err).__name__}); the checkpoint is truncated or damaged"
            ) from None

    def torch_file(path: Path) -> Any:
        return torch.load(path, map_location="cpu", weights_only=False)

    return {
        "adapter": load(ADAPTER_STATE, lambda path: safetensors_torch.load_file(str(path))),
        "optimizer": load("optimizer.pt", torch_file),
        "scheduler": load("scheduler.pt", torch_file),
        "scaler": load("scaler.pt", torch_file) if (folder / "scaler.pt").exists() else None,
        "rng": load("rng.pt", torch_file),
    }


def make_optimizer(config: LoraConfig, groups: list[dict], device) -> tuple[Any, str]:
    """8-bit AdamW through bitsandbytes where it works, else torch AdamW with one warning naming why.

    Returns:
        The optimizer and the name of the one used (``adamw8bit`` or ``adamw``).
    """
    torch = require("torch", "train")
    if config.optimizer == "adamw8bit":
        if device.type != "cuda":
            reason = f"8-bit AdamW (bitsandbytes) needs a CUDA GPU and this run is on {device.type!r}"
        else:
            try:
                import bitsandbytes

                return bitsandbytes.optim.AdamW8bit(groups), "adamw8bit"
            except Exception as err:  # bitsandbytes fails in many ways (no CUDA build, no libraries)
                reason = f"bitsandbytes' 8-bit AdamW could not be loaded ({type(err).__name__}: {err})"
        warnings.warn(f"{reason}; using torch.optim.AdamW instead", RuntimeWarning, stacklevel=2)
    return torch.optim.AdamW(groups), "adamw"


def _step_generator(torch, device, seed: int, step: int, process: int):
    """A generator for one step's noise and timesteps, independent of everything drawn before."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + step * 7919 + process * 104_729) % (2**63 - 1))
    return generator


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in keep.split("-") if part)[:60] or "prompt"


# ------------------------------------------------------------------------- the run's state
@dataclass
class TrainingSet:
    """What the loop reads: cached latents, prompts (token ids, or embeddings of a frozen encoder)."""

    examples: list[Any]
    latents: list[Any]
    prompts: list[str]
    example_prompt: list[int]
    token_ids: Any
    embeddings: Any
    encoded: int
    version: str
    repo: str | None
    identity: dict[str, Any]


@dataclass
class LoraRun:
    """One LoRA run's models, optimiser and progress: the only state the training steps change.

    ``step`` counts finished optimizer steps; ``losses`` holds one value per step; ``saved_step`` is the
    step of the checkpoint on disk (None before the first); ``scaler`` is accelerate's fp16 gradient
    scaler (None without fp16), saved and restored with the checkpoint.
    """

    config: LoraConfig
    out: Path
    accelerator: Any
    parts: dict[str, Any]
    data: TrainingSet
    weight_dtype: Any
    base: dict[str, Any]
    unet: Any = None
    text_encoder: Any = None
    unet_peft: Any = None
    text_peft: Any = None
    params: list[Any] = field(default_factory=list)
    optimizer: Any = None
    optimizer_used: str = "adamw"
    lr_scheduler: Any = None
    batches: Any = None
    tracker: str | None = None
    scaler: Any = None
    run_name: str = ""
    step: int = 0
    losses: list[float] = field(default_factory=list)
    saved_step: int | None = None
    notes: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def unwrapped(self, name: str):
        return self.accelerator.unwrap_model(getattr(self, name))


# ------------------------------------------------------------------------- start: accelerate, models, data
def make_accelerator(config: LoraConfig, out: Path, tracker: str | None):
    """A fresh accelerate ``Accelerator`` for this run (mixed precision, device, tracker)."""
    accelerate = require("accelerate", "train")
    # accelerate keeps its state (mixed precision among it) for the whole process; a library function
    # that may run twice in one process (tests, notebooks, the demo) starts from a clean one. The process
    # group (PartialState) is kept, so this is harmless under accelerate launch.
    accelerate.state.AcceleratorState._reset_state()
    accelerate.state.GradientState._reset_state()
    # As in kohya every CLIP layer has LoRA layers; with clip skip the last ones get no gradient, which
    # distributed training must be told about.
    unused = config.train_text_encoder and config.clip_skip > 1
    return accelerate.Accelerator(
        mixed_precision=config.mixed_precision,
        cpu=config.cpu,
        log_with=tracker,
        project_dir=str(out / "logs"),
        kwargs_handlers=[accelerate.utils.DistributedDataParallelKwargs(find_unused_parameters=unused)],
    )


def output_name(config: LoraConfig, out: Path) -> str:
    """The run's name, which names the kohya file ``NAME.safetensors`` (kohya's ``output_name``): ``--name``,
    else the ``--out`` folder's name.

    Raises:
        ConfigError: If it cannot be a file name, naming the option.
    """
    return check_output_name(
        config.output_name or out.resolve().name,
        option="--name" if config.output_name else "--name (default: the --out folder's name)",
    )


def preflight(
    config: LoraConfig,
    out: Path,
    accelerator,
    *,
    resume: bool,
    push_to_hub: str | None,
    hub_token: str | None,
) -> tuple[dict[str, Any], tuple[Path, dict, dict] | None, str]:
    """Every check that needs no model or data: the run's name, foreign files, the push target, the base,
    the resume.

    Returns:
        This run's ``base_identity``; when resuming, ``(checkpoint folder, state, read_checkpoint)``, else
        None; and the run's ``output_name``.
    """
    from fulora_data.lora.data import check_dataset

    run_name = output_name(config, out)

    main = accelerator.is_main_process
    if main:
        check_foreign_files(out)
        if push_to_hub is not None:
            from fulora_data.hub import check_push_target

            check_push_target(push_to_hub, token=hub_token)
    base = base_identity(config) if main else {}
    found = check_resume(
        out, config, resume, base=base if main else None, num_processes=accelerator.num_processes
    )
    check_dataset(config)
    if found is None:
        return base, None, run_name
    return base, (*found, read_checkpoint(found[0])), run_name


def load_models(config: LoraConfig, device, weight_dtype) -> dict[str, Any]:
    """The base model's parts, frozen, on the device, in the weight dtype; clip skip checked against it."""
    from fulora_data.lora import model as lora_model

    torch = require("torch", "train")
    parts = lora_model.load_base(config)
    check_clip_skip(config.clip_skip, parts["text_encoder"].config.num_hidden_layers, config.base)
    for name in ("unet", "vae", "text_encoder"):
        parts[name].requires_grad_(False)
        # Casting only when needed: diffusers warns on every .to(dtype), even to the dtype it has.
        if weight_dtype == torch.float32:
            parts[name].to(device)
        else:
            parts[name].to(device, dtype=weight_dtype)
    return parts


def data_identity(examples: list[Any]) -> dict[str, Any]:
    """The training set by content: the number of images, each image's sha256, and a digest with captions."""
    lines = "\n".join(f"{e.digest} {e.prompt}" for e in examples)
    return {
        "images": len(examples),
        "sha256": "sha256:" + hashlib.sha256(lines.encode("utf-8")).hexdigest(),
        "image_sha256": [e.digest for e in examples],
    }


def check_same_data(saved: dict[str, Any] | None, current: dict[str, Any], out: Path, dataset: str) -> None:
    """Refuse to resume onto other training data, naming the first difference.

    Raises:
        ConfigError: For another number of images, another image (its index and digests) or other captions.
    """
    if not saved:
        return
    if saved.get("images") != current["images"]:
        raise ConfigError(
            f"--resume: {out} was trained on {saved.get('images')} images of {dataset}, but it now has "
            f"{current['images']}"
        )
    for index, (was, now) in enumerate(
        zip(saved.get("image_sha256", []), current["image_sha256"], strict=True)
    ):
        if was != now:
            raise ConfigError(
                f"--resume: image {index} of {dataset} is not the one {out} was trained on (sha256 "
                f"{now[:12]}, was {was[:12]})"
            )
    if saved.get("sha256") != current["sha256"]:
        raise ConfigError(f"--resume: the captions of {dataset} differ from those {out} was trained on")


def load_training_set(
    config: LoraConfig,
    accelerator,
    parts: dict[str, Any],
    weight_dtype,
    *,
    expect: dict | None,
    out: Path,
    progress: bool,
) -> TrainingSet:
    """Build the training set, check it is the one a resumed run read, cache its latents, encode prompts."""
    from fulora_data.lora import data as lora_data

    torch = require("torch", "train")
    device, vae = accelerator.device, parts["vae"]
    with accelerator.main_process_first():
        dataset, version, repo = lora_data.load_dataset(config)
    examples, blobs = lora_data.prepare_examples(dataset, config)
    identity = data_identity(examples)
    check_same_data(expect, identity, out, config.dataset_id)
    cache = lora_data.cache_folder(config)
    base_id = lora_data.base_identity(config, parts["revision"])
    keys = [lora_data.cache_key(base_id, str(vae.dtype), config, e.digest) for e in examples]
    with accelerator.main_process_first():
        encoded = lora_data.encode_latents(
            vae,
            examples,
            blobs,
            keys,
            cache,
            device=device,
            dtype=vae.dtype,
            progress=progress and accelerator.is_main_process,
        )
    latents = [t.to(device, dtype=weight_dtype) for t in lora_data.read_latents(keys, cache)]
    del blobs
    prompts = sorted({e.prompt for e in examples})
    index = {p: i for i, p in enumerate(prompts)}
    token_ids = lora_data.tokenize(parts["tokenizer"], prompts).to(device)
    embeddings = None
    if not config.train_text_encoder:
        with torch.no_grad():
            embeddings = lora_data.text_embeddings(parts["text_encoder"], token_ids, config.clip_skip)
        embeddings = embeddings.to(weight_dtype)
    return TrainingSet(
        examples,
        latents,
        prompts,
        [index[e.prompt] for e in examples],
        token_ids,
        embeddings,
        encoded,
        version,
        repo,
        identity,
    )


def add_adapters(run: LoraRun) -> None:
    """Add LoRA layers (fp32 even under autocast), seeded; build the optimizer and scheduler; prepare."""
    accelerate = require("accelerate", "train")
    diffusers = require("diffusers", "train")
    from fulora_data.lora import data as lora_data
    from fulora_data.lora import model as lora_model

    config, accelerator = run.config, run.accelerator
    unet, text_encoder = run.parts["unet"], run.parts["text_encoder"]
    accelerate.utils.set_seed(config.seed)
    modules = lora_model.unet_targets(unet, config.targets)
    run.unet_peft = lora_model.add_lora(unet, config.rank, config.lora_alpha, modules, "UNet")
    if config.train_text_encoder:
        modules = lora_model.text_encoder_targets(text_encoder, config.targets, config.clip_skip)
        run.text_peft = lora_model.add_lora(
            text_encoder, config.rank, config.lora_alpha, modules, "text encoder"
        )
    trainable: dict[str, list] = {"unet": [], "text_encoder": []}
    for name, model in (("unet", unet), ("text_encoder", text_encoder)):
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
                trainable[name].append(param)
    groups = [{"params": trainable["unet"], "lr": config.learning_rate}]
    if config.train_text_encoder:
        groups.append({"params": trainable["text_encoder"], "lr": config.text_encoder_lr})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        optimizer, run.optimizer_used = make_optimizer(config, groups, accelerator.device)
    for warning in caught:
        run.notes.append(str(warning.message))
        if run.main:
            warnings.warn(str(warning.message), RuntimeWarning, stacklevel=2)
    run.lr_scheduler = diffusers.optimization.get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps,
        num_training_steps=config.max_steps,
    )
    if config.train_text_encoder:
        run.unet, run.text_encoder, run.optimizer = accelerator.prepare(unet, text_encoder, optimizer)
    else:
        (run.unet, run.optimizer), run.text_encoder = accelerator.prepare(unet, optimizer), text_encoder
    run.params = trainable["unet"] + trainable["text_encoder"]
    run.batches = lora_data.BucketBatches(
        run.data.examples, config.batch_size, config.seed, accelerator.num_processes
    )


def restore(run: LoraRun, state: dict[str, Any], loaded: dict[str, Any]) -> None:
    """Put a checkpoint (``read_checkpoint``'s files and ``state.json``) back into ``run``: LoRA weights,
    optimizer, scheduler, gradient scaler, RNG states, step and losses."""
    from fulora_data.lora import model as lora_model

    what = f"{run.out / 'checkpoint'}"
    lora_model.load_lora_state_dict(
        run.unwrapped("unet"), _component(loaded["adapter"], "unet"), f"{what}: UNet"
    )
    if run.config.train_text_encoder:
        lora_model.load_lora_state_dict(
            run.unwrapped("text_encoder"),
            _component(loaded["adapter"], "text_encoder"),
            f"{what}: text encoder",
        )
    run.optimizer.load_state_dict(loaded["optimizer"])
    run.lr_scheduler.load_state_dict(loaded["scheduler"])
    if run.scaler is not None and loaded.get("scaler") is not None:
        run.scaler.load_state_dict(loaded["scaler"])
    set_rng_state(loaded["rng"])
    run.step = run.saved_step = int(state["step"])
    run.losses = list(state.get("losses", []))


def start_run(
    config: LoraConfig,
    out: Path,
    accelerator,
    *,
    base: dict[str, Any],
    resumed: tuple[Path, dict, dict] | None,
    tracker: str | None,
    progress: bool,
    run_name: str | None = None,
) -> LoraRun:
    """Load the base model and the training set, add the LoRA layers and restore a checkpoint if any.

    ``run_name`` is ``preflight``'s ``output_name`` (None: worked out here the same way)."""
    torch = require("torch", "train")
    started = time.perf_counter()
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.mixed_precision, torch.float32)
    if accelerator.is_main_process:
        remove_leftovers(out, "checkpoint")
        remove_leftovers(out, "adapter")
    parts = load_models(config, accelerator.device, weight_dtype)
    startup_s = time.perf_counter() - started
    expect = resumed[1].get("identity", {}).get("data") if resumed is not None else None
    data = load_training_set(
        config, accelerator, parts, weight_dtype, expect=expect, out=out, progress=progress
    )
    run = LoraRun(
        config,
        out,
        accelerator,
        parts,
        data,
        weight_dtype,
        base,
        tracker=tracker,
        scaler=accelerator.scaler,
        run_name=run_name or output_name(config, out),
    )
    run.timing = {"startup_s": startup_s, "cache_s": time.perf_counter() - started - startup_s}
    add_adapters(run)
    if resumed is not None:
        restore(run, resumed[1], resumed[2])
    if tracker is not None:
        accelerator.init_trackers(
            "fulora-lora",
            config={k: v for k, v in config.to_dict().items() if isinstance(v, int | float | str | bool)},
        )
    return run


# ------------------------------------------------------------------------- one step, checkpoint, samples
def train_step(run: LoraRun) -> float:
    """One optimizer step on the batch the data order gives ``run.step``; returns the (reduced) loss.

    Raises:
        TrainingError: If the loss is not finite, naming the step.
    """
    torch = require("torch", "train")
    import torch.nn.functional as F

    from fulora_data.lora import data as lora_data

    config, accelerator, data = run.config, run.accelerator, run.data
    scheduler, device = run.parts["noise_scheduler"], accelerator.device
    indices = run.batches.batch(run.step, accelerator.process_index)
    generator = _step_generator(torch, device, config.seed, run.step, accelerator.process_index)
    latents = torch.stack([data.latents[i] for i in indices])
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (len(indices),), generator=generator, device=device
    )
    noisy = scheduler.add_noise(latents, noise, timesteps)
    rows = torch.tensor([data.example_prompt[i] for i in indices], device=device)
    epsilon = scheduler.config.prediction_type == "epsilon"
    target = noise if epsilon else scheduler.get_velocity(latents, noise, timesteps)
    with accelerator.autocast():
        # A trained text encoder runs under autocast too: its fp32 LoRA outputs meet half-precision
        # layer norms, which torch refuses outside autocast.
        if data.embeddings is None:
            hidden = lora_data.text_embeddings(run.text_encoder, data.token_ids[rows], config.clip_skip)
        else:
            hidden = data.embeddings[rows]
        predicted = run.unet(noisy, timesteps, hidden, return_dict=False)[0]
        loss = F.mse_loss(predicted.float(), target.float())
    reported = accelerator.reduce(loss.detach(), "mean") if accelerator.num_processes > 1 else loss.detach()
    value = float(reported)
    if not math.isfinite(value):
        raise TrainingError(
            f"the loss became {value} at step {run.step + 1}; lower --learning-rate or use --mixed-precision no"
        )
    accelerator.backward(loss)
    if config.max_grad_norm > 0 and accelerator.sync_gradients:
        accelerator.clip_grad_norm_(run.params, config.max_grad_norm)
    run.optimizer.step()
    run.lr_scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    run.losses.append(value)
    if run.tracker is not None:
        accelerator.log({"loss": value, "lr": run.lr_scheduler.get_last_lr()[0]}, step=run.step)
    return value


def lora_tensors(run: LoraRun) -> tuple[dict, dict | None]:
    """The LoRA weights of the UNet and (when trained) the text encoder, fp32 on the CPU."""
    from fulora_data.lora import model as lora_model

    unet_state = lora_model.lora_state_dict(run.unwrapped("unet"))
    if not run.config.train_text_encoder:
        return unet_state, None
    return unet_state, lora_model.lora_state_dict(run.unwrapped("text_encoder"))


def checkpoint_files(run: LoraRun) -> dict[str, bytes]:
    """A checkpoint's files as bytes: LoRA weights, optimizer, scheduler, scaler, RNG states, state."""
    torch = require("torch", "train")
    safetensors_torch = require("safetensors.torch", "train")
    from fulora_data.lora import model as lora_model

    def saved(value) -> bytes:
        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue()

    files = {ADAPTER_STATE: safetensors_torch.save(lora_model.diffusers_tensors(*lora_tensors(run)))}
    files["optimizer.pt"] = saved(run.optimizer.state_dict())
    files["scheduler.pt"] = saved(run.lr_scheduler.state_dict())
    if run.scaler is not None:
        files["scaler.pt"] = saved(run.scaler.state_dict())
    files["rng.pt"] = saved(rng_state())
    per_epoch = run.batches.steps_per_epoch
    state = {
        "step": run.step,
        "epoch": run.step // per_epoch,
        "data_order": {
            "seed": run.config.seed,
            "steps_per_epoch": per_epoch,
            "next_batch": run.step % per_epoch,
        },
        "num_processes": run.accelerator.num_processes,
        "config": run.config.to_dict(),
        "identity": {"base": run.base, "data": run.data.identity},
        "losses": run.losses,
        "fulora_version": __version__,
    }
    files[STATE_FILE] = (json.dumps(state, indent=2) + "\n").encode("utf-8")
    return files


def save_checkpoint(run: LoraRun) -> None:
    """Write ``OUT/checkpoint`` whole (main process): everything ``restore`` needs to continue exactly.

    Every file is serialised in memory first, so a full disk shows as the OS's own error on the write.

    Raises:
        TrainingError: If the checkpoint cannot be written (a full disk), saying the previous one is kept.
    """
    run.accelerator.wait_for_everyone()
    if run.main:
        files = checkpoint_files(run)
        try:
            with atomic_folder(run.out / "checkpoint") as tmp:
                for name, content in files.items():
                    (tmp / name).write_bytes(content)
        except OSError as err:
            kept = (
                "no earlier checkpoint exists"
                if run.saved_step is None
                else (f"the checkpoint of step {run.saved_step} is kept")
            )
            raise TrainingError(
                f"could not write the checkpoint of step {run.step} to {run.out / 'checkpoint'} "
                f"({err.strerror or err}); {kept}"
            ) from None
        run.saved_step = run.step
    run.accelerator.wait_for_everyone()


def sample_validation(run: LoraRun, folder: Path) -> list[Path]:
    """One image per prompt for fixed seeds into ``folder`` (main process); the pipeline is freed after."""
    if not run.main:
        return []
    torch = require("torch", "train")
    diffusers = require("diffusers", "train")
    from fulora_data.lora import data as lora_data

    config, parts, device = run.config, run.parts, run.accelerator.device
    unet, text_encoder = run.unwrapped("unet"), run.unwrapped("text_encoder")
    pipe = diffusers.StableDiffusionPipeline(
        vae=parts["vae"],
        text_encoder=text_encoder,
        tokenizer=parts["tokenizer"],
        unet=unet,
        scheduler=diffusers.DPMSolverMultistepScheduler.from_config(parts["noise_scheduler"].config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    names = {p: f"{_slug(p)}.png" for p in run.data.prompts}
    relative = folder.relative_to(run.out).as_posix()
    mark_written(run.out, {f"{relative}/{name}": None for name in names.values()})
    folder.mkdir(parents=True, exist_ok=True)
    written, was_training = [], unet.training
    unet.eval()
    try:
        # The prompts are encoded here, with clip skip, and handed over as embeddings: diffusers 0.42's
        # own clip_skip reaches for text_encoder.text_model, which transformers 5's CLIP no longer has.
        with torch.no_grad():
            encoded = lora_data.text_embeddings(text_encoder, run.data.token_ids, config.clip_skip)
            empty = lora_data.encode_prompts(text_encoder, parts["tokenizer"], [""], config.clip_skip, device)
        for row, prompt in enumerate(run.data.prompts):
            generator = torch.Generator(device=device).manual_seed(config.validation_seed)
            with torch.no_grad(), run.accelerator.autocast():
                image = pipe(
                    prompt_embeds=encoded[row : row + 1],
                    negative_prompt_embeds=empty,
                    height=config.resolution,
                    width=config.resolution,
                    num_inference_steps=max(1, config.validation_inference_steps),
                    generator=generator,
                ).images[0]
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            path = folder / names[prompt]
            path.write_bytes(buffer.getvalue())
            written.append(path)
    finally:
        unet.train(was_training)
        del pipe
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    mark_written(run.out, {f"{relative}/{p.name}": file_sha256(p) for p in written})
    _log_images(run, written)
    return written


def _log_images(run: LoraRun, paths: list[Path]) -> None:
    """Send validation images (one per plane) to the tracker, when it takes images."""
    if run.tracker is None or not paths:
        return
    import numpy as np
    from PIL import Image

    images = {}
    for path in paths:
        with Image.open(path) as image:
            images[f"validation/{path.stem}"] = np.asarray(image.convert("RGB"))
    batch = {name: image[None] for name, image in images.items()}  # N=1, NHWC
    for tracker in run.accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images(batch, step=run.step, dataformats="NHWC")
        elif hasattr(tracker, "log_images"):
            tracker.log_images(batch, step=run.step)


# ------------------------------------------------------------------------- outputs and the push
def adapter_info(run: LoraRun) -> AdapterInfo:
    """What the adapter's metadata and card say about the run."""
    from fulora_data.lora import data as lora_data
    from fulora_data.lora.card import training_digest

    config = run.config
    local = base_kind(config.base) != "hub"
    examples = run.data.examples
    return AdapterInfo(
        base_model=Path(config.base).expanduser().resolve().name if local else config.base,
        base_model_revision=run.parts["revision"],
        rank=config.rank,
        alpha=config.lora_alpha,
        targets=config.targets,
        text_encoder=config.train_text_encoder,
        clip_skip=config.clip_skip,
        resolution=config.resolution,
        prompts=_plane_prompts(run.data.prompts),
        dataset=config.dataset_id,
        format="diffusers",
        fulora_version=__version__,
        name=run.run_name,
        extra={
            "dataset_version": run.data.version,
            "dataset_repo": run.data.repo,
            "dataset_digest": training_digest(examples),
            "dataset_sha256": run.data.identity["sha256"],
            "base_model_sha256": run.base.get("sha256") if local else None,
            "num_images": len(run.data.examples),
            "steps": run.step,
            "batch_size": config.batch_size,
            "global_batch_size": config.batch_size * run.accelerator.num_processes,
            "learning_rate": config.learning_rate,
            "text_encoder_lr": config.text_encoder_lr,
            "lr_scheduler": config.lr_scheduler,
            "lr_warmup_steps": config.lr_warmup_steps,
            "mixed_precision": config.mixed_precision,
            "optimizer": run.optimizer_used,
            "max_grad_norm": config.max_grad_norm,
            "seed": config.seed,
            "validation_seed": config.validation_seed,
            "bucket_step": config.bucket_step,
            "bucket_no_upscale": config.bucket_no_upscale,
            "final_loss": run.losses[-1] if run.losses else None,
            # what kohya's ss_* metadata records as well
            "max_steps": config.max_steps,
            "steps_per_epoch": run.batches.steps_per_epoch,
            "buckets": lora_data.bucket_histogram(examples),
            "mean_img_ar_error": lora_data.mean_aspect_error(examples),
        },
    )


def write_outputs(run: LoraRun, samples: list[Path]) -> Path:
    """Write ``OUT/adapter`` whole (main process) and record its files as fulora's."""
    from fulora_data.lora.card import SAMPLES_DIR, slug

    folder = run.out / "adapter"
    info = adapter_info(run)
    names = [DIFFUSERS_FILE, f"{run.run_name}.safetensors", "samples.png", "README.md"]
    names += [f"{SAMPLES_DIR}/{slug(plane)}.png" for plane in info.prompts]
    mark_written(run.out, {f"adapter/{name}": None for name in names})
    unet_state, text_state = lora_tensors(run)
    write_adapter(folder, unet_state, text_state, info, run.unet_peft, run.text_peft, samples)
    entries = {
        f"adapter/{p.relative_to(folder).as_posix()}": file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    mark_written(run.out, entries, replace="adapter")
    return folder


def push_adapter(run: LoraRun, repo_id: str, *, token: str | None, private: bool) -> dict[str, Any]:
    """Push ``OUT/adapter``; if the Hub fails, say how to push the finished adapter alone."""
    from fulora_data.hub import push_model

    folder = run.out / "adapter"
    return push_model(
        folder,
        repo_id,
        token=token,
        private=private,
        retry_hint=(
            f"training is done and the adapter is kept: push it with `fulora model push {folder} --repo-id "
            f"{repo_id}`"
        ),
    )


def summarize(run: LoraRun, first_step: int, loop_s: float) -> dict[str, Any]:
    """The run's summary (what ``--json`` prints)."""
    from fulora_data.lora import data as lora_data

    steps_run = run.step - first_step
    return {
        "adapter_dir": str(run.out / "adapter"),
        "steps": run.step,
        "max_steps": run.config.max_steps,
        "losses": {
            "first": run.losses[0] if run.losses else None,
            "last": run.losses[-1] if run.losses else None,
        },
        "optimizer": run.optimizer_used,
        "latents_encoded": run.data.encoded,
        "trainable_dtypes": sorted({str(p.dtype) for p in run.params}),
        "base_dtype": str(run.weight_dtype),
        "num_processes": run.accelerator.num_processes,
        "global_batch_size": run.config.batch_size * run.accelerator.num_processes,
        # "WxH" -> images, as kohya's ss_bucket_info
        "buckets": lora_data.bucket_histogram(run.data.examples),
        "timing": {
            **run.timing,
            "loop_s": loop_s,
            "ms_per_step": 1000 * loop_s / steps_run if steps_run else None,
        },
        "notes": run.notes,
        "hub": None,
        "main_process": run.main,
    }


# ------------------------------------------------------------------------- the run
def train_lora(
    config: LoraConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    push_to_hub: str | None = None,
    hub_token: str | None = None,
    hub_private: bool = False,
    report_to: str | None = None,
    on_step: Callable[[int, float], None] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = log_stderr,
) -> dict[str, Any]:
    """Train a LoRA adapter of Stable Diffusion on a fulora dataset, save it in both formats, push it.

    Args:
        config: The run's settings (``LoraConfig.preset("r128", ...)``).
        out: The run folder (see the module's docstring).
        resume: Continue the run in ``out`` from its checkpoint.
        push_to_hub: A Hub model repository (``org/name``) to push the adapter folder to when done; the
            id, token and permission are checked before anything is loaded.
        hub_token: Token for the push (default: ``HF_TOKEN`` or the login token).
        hub_private: Create the Hub repository as private.
        report_to: ``tensorboard``, ``wandb`` or ``none`` (None: TensorBoard when installed, else none).
        on_step: Called on the main process after each step (and its checkpoint and samples) with the
            step number and its loss: a progress hook for callers that watch or budget a run.
        progress: Show progress bars.
        log: Where progress lines go.

    Returns:
        A summary: ``adapter_dir``, ``steps``, ``losses`` (first and last), ``optimizer`` (the one used),
        ``timing`` (``startup_s``, ``cache_s``, ``loop_s``, ``ms_per_step``), ``notes`` and ``hub``.

    Raises:
        ConfigError: For bad settings, an unwritable, busy or foreign ``out``, a checkpoint of another run
            (other settings, images or base weights), or a push target that cannot be pushed to.
        DataError: For a training set without images or captions, or a damaged checkpoint.
        TrainingError: If the loss stops being finite, naming the step, or a checkpoint cannot be written.
    """
    out = Path(out)
    # ---- 1. everything that can be refused is refused here, before any model or data is loaded
    config.validate()
    tracker = tracker_name(report_to)
    check_writable(out)
    accelerator = make_accelerator(config, out, tracker)
    with lock_out(out) if accelerator.is_main_process else contextlib.nullcontext():
        base, resumed, run_name = preflight(
            config, out, accelerator, resume=resume, push_to_hub=push_to_hub, hub_token=hub_token
        )
        # ---- 2. base model, training set and latents, LoRA layers; the checkpoint when resuming
        run = start_run(
            config,
            out,
            accelerator,
            base=base,
            resumed=resumed,
            tracker=tracker,
            progress=progress,
            run_name=run_name,
        )
        say = log if run.main else (lambda message: None)
        if report_to is None and tracker is None:
            run.notes.append(f"tensorboard is not installed: no training logs ({install_hint('train')}; --report-to none to silence)")
        say(
            f"{len(run.data.examples)} images of {config.dataset_id} in "
            f"{len({e.bucket for e in run.data.examples})} bucket(s); {run.data.encoded} latent(s) encoded, "
            f"{len(run.data.examples) - run.data.encoded} from the cache"
        )
        if resumed is not None:
            say(f"resuming {out} at step {run.step} of {config.max_steps}")

        # ---- 3. the loop: one step, then a checkpoint and samples when due
        first_step = run.step
        loop_s = train_loop(run, on_step=on_step, progress=progress)
        save_checkpoint(run)

        # ---- 4. outputs: the adapter in both formats, the samples, the card; then the push
        summary = summarize(run, first_step, loop_s)
        if run.main:
            write_outputs(run, sample_validation(run, out / "validation" / f"step-{run.step}"))
        accelerator.wait_for_everyone()
        accelerator.end_training()
        if run.main and push_to_hub is not None:
            summary["hub"] = push_adapter(run, push_to_hub, token=hub_token, private=hub_private)
    return summary


def train_loop(run: LoraRun, *, on_step: Callable[[int, float], None] | None, progress: bool) -> float:
    """Train from ``run.step`` to ``max_steps``: each step, then a checkpoint and samples when due.

    Returns:
        The loop's wall time in seconds.
    """
    from tqdm.auto import tqdm

    config = run.config
    run.unet.train()
    if config.train_text_encoder:
        run.text_encoder.train()
    bar = tqdm(
        total=config.max_steps,
        initial=run.step,
        desc="training LoRA",
        unit="step",
        disable=not (progress and run.main),
    )
    first_step, started = run.step, time.perf_counter()
    while run.step < config.max_steps:
        loss = train_step(run)
        rate = (run.step - first_step) / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{loss:.4f}", steps_per_s=f"{rate:.2f}")
        bar.update(1)
        if run.step < config.max_steps and _due(run.step, config.checkpoint_every):
            save_checkpoint(run)
        if run.step < config.max_steps and _due(run.step, config.validation_every):
            sample_validation(run, run.out / "validation" / f"step-{run.step}")
        if on_step is not None and run.main:
            on_step(run.step, loss)
    bar.close()
    return time.perf_counter() - started


def _due(step: int, every: int) -> bool:
    return bool(every) and step % every == 0


def _component(tensors: dict[str, Any], prefix: str) -> dict[str, Any]:
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _plane_prompts(prompts: list[str]) -> dict[str, str]:
    """Plane name -> prompt for the study's prompts; other captions map to themselves."""
    from fulora_data.taxonomy import PROMPTS

    by_prompt = {v: k for k, v in PROMPTS.items()}
    return {by_prompt.get(p, p): p for p in prompts}


def write_adapter(
    folder: Path,
    unet_state: dict,
    text_state: dict | None,
    info: AdapterInfo,
    unet_peft,
    text_peft,
    samples: list[Path],
) -> Path:
    """Write the adapter folder whole: both safetensors files, the sample grid and the model card."""
    from fulora_data.lora import model as lora_model
    from fulora_data.lora.card import render_lora_card, write_samples

    tensors = lora_model.diffusers_tensors(unet_state, text_state)
    with atomic_folder(folder) as tmp:
        save_adapter_file(
            tmp / DIFFUSERS_FILE, tensors, info, extra_metadata=diffusers_metadata(info, tensors)
        )
        save_kohya_file(tmp, tensors, info)
        grid = write_samples(samples, tmp, list(info.prompts)) if samples else None
        (tmp / "README.md").write_text(render_lora_card(info, grid is not None, samples), encoding="utf-8")
    return folder


def train_tiny_lora(
    workdir: str | os.PathLike,
    *,
    source: str | os.PathLike,
    data_config: str = "lora-100",
    cache_dir: str | os.PathLike | None = None,
    steps: int = 6,
    log: Callable[[str], None] = log_stderr,
) -> dict[str, Any]:
    """Fine-tune the tiny Stable Diffusion (``fulora_data.tiny_sd``) for a few steps: ``fulora demo``'s step.

    Writes the tiny base model to ``WORKDIR/base`` (once) and the run to ``WORKDIR/run``; a rerun resumes
    (or reuses) the earlier run. The adapter means nothing (random base weights): it shows the pipeline.

    Args:
        workdir: Folder for the base model and the run.
        source: The Spanish archive or folder (``fulora_data.samples.write_spanish_source``).
        data_config: The Spanish config to train on.
        cache_dir: Where datasets and latents are cached.
        steps: Training steps.
        log: Where progress lines go.

    Returns:
        ``train_lora``'s summary.
    """
    from fulora_data.lora.config import LoraConfig
    from fulora_data.tiny_sd import save_tiny_pipeline

    workdir = Path(workdir)
    base = workdir / "base"
    if not (base / "model_index.json").is_file():
        save_tiny_pipeline(base)
    config = LoraConfig.preset(
        "smoke",
        base=str(base),
        data="spanish",
        data_config=data_config,
        source=str(source),
        cache_dir=str(cache_dir) if cache_dir is not None else None,
        max_steps=steps,
    )
    out = workdir / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_lora(config, out, resume=(out / "checkpoint").is_dir(), progress=False, log=log)
