"""The LoRA training run: checks, base model, cached data, the loop, checkpoints, outputs and the push.

``train_lora(config, out)`` reads top to bottom: refuse bad settings before any long work; load the base
model; build the training set, its buckets and latent cache; add LoRA layers with peft; train with
accelerate (one process or ``accelerate launch --num_processes N``); write the adapter in both formats with
its card; push it. ``OUT`` ends up holding::

    adapter/      pytorch_lora_weights.safetensors, NAME.safetensors (kohya), samples.png, samples/, README.md
    checkpoint/   the latest resumable state (``--resume`` continues from it)
    validation/   step-N/<plane>.png, one image per plane at each validation step
    logs/         TensorBoard logs (accelerate's tracker)

Only the main process writes. Per-step randomness (noise, timesteps) comes from a generator seeded by the
seed, the step and the process, and the data order from the seed and the epoch, so a resumed run repeats
an uninterrupted one exactly.
"""

from __future__ import annotations

import gc
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
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
    load_rng_state,
    read_state,
    save_rng_state,
)
from fulora_data.errors import ConfigError, FuloraError, install_hint, require
from fulora_data.io import atomic_write_json, remove_leftovers
from fulora_data.lora.config import RUN_FIELDS, LoraConfig, base_kind

ADAPTER_STATE = "adapter.safetensors"


class TrainingError(FuloraError):
    """Training cannot go on (a non-finite loss); the message names the step."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def check_resume(out: Path, config: LoraConfig, resume: bool) -> tuple[Path, dict] | None:
    """Find the checkpoint to resume and check it belongs to this run.

    Returns:
        ``(checkpoint folder, its state)`` when resuming, else ``None``.

    Raises:
        ConfigError: When resuming without a checkpoint or from another run (rank, base model, dataset,
            ...), or when not resuming but ``OUT`` already holds a run.
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
    check_same_run(state.get("config", {}), config.to_dict(), RUN_FIELDS, where=str(out))
    if isinstance(state.get("step"), int) and config.max_steps < state["step"]:
        raise ConfigError(
            f"--resume: {out} has already trained {state['step']} steps, more than --max-steps {config.max_steps}"
        )
    return folder, state


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


def train_lora(
    config: LoraConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    push_to_hub: str | None = None,
    hub_token: str | None = None,
    hub_private: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = _stderr,
) -> dict[str, Any]:
    """Train a LoRA adapter of Stable Diffusion on a fulora dataset, save it in both formats, push it.

    Args:
        config: The run's settings (``LoraConfig.preset("r128", ...)``).
        out: The run folder (see the module's docstring).
        resume: Continue the run in ``out`` from its checkpoint.
        push_to_hub: A Hub model repository (``org/name``) to push the adapter folder to when done.
        hub_token: Token for the push (default: ``HF_TOKEN`` or the login token).
        hub_private: Create the Hub repository as private.
        progress: Show progress bars.
        log: Where progress lines go.

    Returns:
        A summary: ``adapter_dir``, ``steps``, ``losses`` (first and last), ``optimizer`` (the one used),
        ``timing`` (``startup_s``, ``cache_s``, ``loop_s``, ``ms_per_step``), ``notes`` and ``hub``.

    Raises:
        ConfigError: For bad settings, an unwritable ``out`` or a checkpoint of another run.
        DataError: For a training set without images or captions.
        TrainingError: If the loss stops being finite, naming the step.
    """
    started = time.perf_counter()
    out = Path(out)
    # ---- 1. everything that can be refused is refused here, before any model or data is loaded
    config.validate()
    if push_to_hub is not None and push_to_hub.count("/") != 1:
        raise ConfigError(f"--push-to-hub takes a repository id like 'org/name'; got {push_to_hub!r}")
    check_writable(out)
    # The kohya file is NAME.safetensors (kohya's output_name): --name, else the --out folder's name.
    run_name = check_output_name(
        config.output_name or out.resolve().name,
        option="--name" if config.output_name else "--name (default: the --out folder's name)",
    )
    resumed = check_resume(out, config, resume)
    from fulora_data.lora.data import check_dataset

    check_dataset(config)

    torch = require("torch", "train")
    accelerate = require("accelerate", "train")
    diffusers = require("diffusers", "train")
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from fulora_data.lora import data as lora_data
    from fulora_data.lora import model as lora_model
    from fulora_data.lora.card import training_digest

    tracker = None
    try:
        import tensorboard  # noqa: F401

        tracker = "tensorboard"
    except ImportError:
        pass
    # accelerate keeps its state (mixed precision among it) for the whole process; a library function
    # that may run twice in one process (tests, notebooks, the demo) starts from a clean one. The process
    # group (PartialState) is kept, so this is harmless under accelerate launch.
    accelerate.state.AcceleratorState._reset_state()
    accelerate.state.GradientState._reset_state()
    # As in kohya every CLIP layer has LoRA layers; with clip skip the last ones get no gradient, which
    # distributed training must be told about.
    unused = config.train_text_encoder and config.clip_skip > 1
    accelerator = accelerate.Accelerator(
        mixed_precision=config.mixed_precision,
        cpu=config.cpu,
        log_with=tracker,
        project_dir=str(out / "logs"),
        kwargs_handlers=[accelerate.utils.DistributedDataParallelKwargs(find_unused_parameters=unused)],
    )
    main = accelerator.is_main_process
    say = log if main else (lambda message: None)
    device = accelerator.device
    notes: list[str] = []
    if tracker is None:
        notes.append(f"tensorboard is not installed: no training logs ({install_hint('train')})")
    if resumed is not None:
        saved_processes = resumed[1].get("num_processes", 1)
        if saved_processes != accelerator.num_processes:
            raise ConfigError(
                f"--resume: {out} was trained on {saved_processes} process(es), not {accelerator.num_processes}"
            )
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.mixed_precision, torch.float32)
    if main:
        remove_leftovers(out, "checkpoint")
        remove_leftovers(out, "adapter")

    # ---- 2. base model
    parts = lora_model.load_base(config)
    unet, vae, text_encoder = parts["unet"], parts["vae"], parts["text_encoder"]
    tokenizer, noise_scheduler = parts["tokenizer"], parts["noise_scheduler"]
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    for module in (unet, vae, text_encoder):
        # Casting only when needed: diffusers warns on every .to(dtype), even to the dtype it has.
        module.to(device) if weight_dtype == torch.float32 else module.to(device, dtype=weight_dtype)
    startup_s = time.perf_counter() - started

    # ---- 3. data: buckets, latents (cached on disk), prompt embeddings (once, when the encoder is frozen)
    cache_started = time.perf_counter()
    with accelerator.main_process_first():
        dataset, dataset_version, dataset_repo = lora_data.load_dataset(config)
    examples, blobs = lora_data.prepare_examples(dataset, config)
    cache = lora_data.cache_folder(config)
    base_id = lora_data.base_identity(config, parts["revision"])
    keys = [lora_data.cache_key(base_id, str(vae.dtype), config, e.digest) for e in examples]
    with accelerator.main_process_first():
        encoded = lora_data.encode_latents(
            vae, examples, blobs, keys, cache, device=device, dtype=vae.dtype, progress=progress and main
        )
    latents = [t.to(device, dtype=weight_dtype) for t in lora_data.read_latents(keys, cache)]
    del blobs
    prompts = sorted({e.prompt for e in examples})
    prompt_index = {p: i for i, p in enumerate(prompts)}
    example_prompt = [prompt_index[e.prompt] for e in examples]
    token_ids = lora_data.tokenize(tokenizer, prompts).to(device)
    embeddings = None
    if not config.train_text_encoder:
        with torch.no_grad():
            embeddings = lora_data.text_embeddings(text_encoder, token_ids, config.clip_skip).to(weight_dtype)
    cache_s = time.perf_counter() - cache_started
    say(
        f"{len(examples)} images of {config.dataset_id} in {len(set(e.bucket for e in examples))} bucket(s); "
        f"{encoded} latent(s) encoded, {len(examples) - encoded} from the cache"
    )

    # ---- 4. LoRA layers (trainable parameters in fp32 even under fp16 autocast), initialised from the seed
    accelerate.utils.set_seed(config.seed)
    unet_modules = lora_model.unet_targets(unet, config.targets)
    unet_peft = lora_model.add_lora(unet, config.rank, config.lora_alpha, unet_modules, "UNet")
    text_peft = None
    if config.train_text_encoder:
        text_modules = lora_model.text_encoder_targets(text_encoder, config.targets, config.clip_skip)
        text_peft = lora_model.add_lora(
            text_encoder, config.rank, config.lora_alpha, text_modules, "text encoder"
        )
    trainable = {"unet": [], "text_encoder": []}
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
        optimizer, optimizer_used = make_optimizer(config, groups, device)
    for warning in caught:
        notes.append(str(warning.message))
        if main:
            warnings.warn(str(warning.message), RuntimeWarning, stacklevel=2)
    lr_scheduler = diffusers.optimization.get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps,
        num_training_steps=config.max_steps,
    )
    if config.train_text_encoder:
        unet, text_encoder, optimizer = accelerator.prepare(unet, text_encoder, optimizer)
    else:
        unet, optimizer = accelerator.prepare(unet, optimizer)
    params = trainable["unet"] + trainable["text_encoder"]
    batches = lora_data.BucketBatches(examples, config.batch_size, config.seed, accelerator.num_processes)

    # ---- 5. resume
    step = 0
    losses: list[float] = []
    if resumed is not None:
        folder, state = resumed
        safetensors_torch = require("safetensors.torch", "train")
        tensors = safetensors_torch.load_file(str(folder / ADAPTER_STATE))
        lora_model.load_lora_state_dict(
            accelerator.unwrap_model(unet), _component(tensors, "unet"), f"{folder}: UNet"
        )
        if config.train_text_encoder:
            lora_model.load_lora_state_dict(
                accelerator.unwrap_model(text_encoder),
                _component(tensors, "text_encoder"),
                f"{folder}: text encoder",
            )
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=False))
        lr_scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))
        if accelerator.scaler is not None and (folder / "scaler.pt").is_file():
            accelerator.scaler.load_state_dict(torch.load(folder / "scaler.pt", weights_only=False))
        load_rng_state(folder)
        step = int(state["step"])
        losses = list(state.get("losses", []))
        say(f"resuming {out} at step {step} of {config.max_steps}")

    if tracker is not None:
        accelerator.init_trackers(
            "fulora-lora",
            config={k: v for k, v in config.to_dict().items() if isinstance(v, int | float | str | bool)},
        )

    def lora_tensors() -> tuple[dict, dict | None]:
        unet_state = lora_model.lora_state_dict(accelerator.unwrap_model(unet))
        text_state = (
            lora_model.lora_state_dict(accelerator.unwrap_model(text_encoder))
            if config.train_text_encoder
            else None
        )
        return unet_state, text_state

    def save_checkpoint(done: int) -> None:
        accelerator.wait_for_everyone()
        if main:
            safetensors_torch = require("safetensors.torch", "train")
            unet_state, text_state = lora_tensors()
            with atomic_folder(out / "checkpoint") as tmp:
                safetensors_torch.save_file(
                    lora_model.diffusers_tensors(unet_state, text_state), str(tmp / ADAPTER_STATE)
                )
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
                torch.save(lr_scheduler.state_dict(), tmp / "scheduler.pt")
                if accelerator.scaler is not None:
                    torch.save(accelerator.scaler.state_dict(), tmp / "scaler.pt")
                save_rng_state(tmp)
                atomic_write_json(
                    tmp / STATE_FILE,
                    {
                        "step": done,
                        "epoch": done // batches.steps_per_epoch,
                        "data_order": {
                            "seed": config.seed,
                            "steps_per_epoch": batches.steps_per_epoch,
                            "next_batch": done % batches.steps_per_epoch,
                        },
                        "num_processes": accelerator.num_processes,
                        "config": config.to_dict(),
                        "losses": losses,
                        "fulora_version": __version__,
                    },
                )
        accelerator.wait_for_everyone()

    def sample(done: int, folder: Path) -> list[Path]:
        """One image per prompt for fixed seeds; the pipeline is freed afterwards."""
        if not main:
            return []
        pipe = diffusers.StableDiffusionPipeline(
            vae=vae,
            text_encoder=accelerator.unwrap_model(text_encoder),
            tokenizer=tokenizer,
            unet=accelerator.unwrap_model(unet),
            scheduler=diffusers.DPMSolverMultistepScheduler.from_config(noise_scheduler.config),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        was_training = accelerator.unwrap_model(unet).training
        accelerator.unwrap_model(unet).eval()
        try:
            # The prompts are encoded here, with clip skip, and handed over as embeddings: diffusers 0.42's
            # own clip_skip reaches for text_encoder.text_model, which transformers 5's CLIP no longer has.
            with torch.no_grad():
                model = accelerator.unwrap_model(text_encoder)
                encoded = lora_data.text_embeddings(model, token_ids, config.clip_skip)
                empty = lora_data.encode_prompts(model, tokenizer, [""], config.clip_skip, device)
            for row, prompt in enumerate(prompts):
                generator = torch.Generator(device=device).manual_seed(config.validation_seed)
                with torch.no_grad(), accelerator.autocast():
                    image = pipe(
                        prompt_embeds=encoded[row : row + 1],
                        negative_prompt_embeds=empty,
                        height=config.resolution,
                        width=config.resolution,
                        num_inference_steps=max(1, config.validation_inference_steps),
                        generator=generator,
                    ).images[0]
                path = folder / f"{_slug(prompt)}.png"
                image.save(path)
                written.append(path)
        finally:
            accelerator.unwrap_model(unet).train(was_training)
            del pipe
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return written

    # ---- 6. the loop
    unet.train()
    if config.train_text_encoder:
        text_encoder.train()
    prediction = noise_scheduler.config.prediction_type
    timesteps_total = noise_scheduler.config.num_train_timesteps
    bar = tqdm(
        total=config.max_steps,
        initial=step,
        desc="training LoRA",
        disable=not (progress and main),
        unit="step",
    )
    loop_started = time.perf_counter()
    first_step = step
    while step < config.max_steps:
        indices = batches.batch(step, accelerator.process_index)
        generator = _step_generator(torch, device, config.seed, step, accelerator.process_index)
        batch_latents = torch.stack([latents[i] for i in indices])
        noise = torch.randn(
            batch_latents.shape, generator=generator, device=device, dtype=batch_latents.dtype
        )
        timesteps = torch.randint(0, timesteps_total, (len(indices),), generator=generator, device=device)
        noisy = noise_scheduler.add_noise(batch_latents, noise, timesteps)
        rows = torch.tensor([example_prompt[i] for i in indices], device=device)
        if embeddings is None:
            hidden = lora_data.text_embeddings(text_encoder, token_ids[rows], config.clip_skip)
        else:
            hidden = embeddings[rows]
        target = (
            noise
            if prediction == "epsilon"
            else noise_scheduler.get_velocity(batch_latents, noise, timesteps)
        )
        with accelerator.autocast():
            predicted = unet(noisy, timesteps, hidden, return_dict=False)[0]
            loss = F.mse_loss(predicted.float(), target.float())
        reported = (
            accelerator.reduce(loss.detach(), "mean") if accelerator.num_processes > 1 else loss.detach()
        )
        value = float(reported)
        if not math.isfinite(value):
            raise TrainingError(
                f"the loss became {value} at step {step + 1}; lower --learning-rate or use --mixed-precision no"
            )
        accelerator.backward(loss)
        if config.max_grad_norm > 0 and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(value)
        if tracker is not None:
            accelerator.log({"loss": value, "lr": lr_scheduler.get_last_lr()[0]}, step=step)
        elapsed = time.perf_counter() - loop_started
        bar.set_postfix(loss=f"{value:.4f}", steps_per_s=f"{(step - first_step) / max(elapsed, 1e-9):.2f}")
        bar.update(1)
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps:
            save_checkpoint(step)
        if config.validation_every and step % config.validation_every == 0 and step < config.max_steps:
            sample(step, out / "validation" / f"step-{step}")
    loop_s = time.perf_counter() - loop_started
    bar.close()
    steps_run = step - first_step
    save_checkpoint(step)

    # ---- 7. outputs: the adapter in both formats, the samples, the card; then the push
    summary: dict[str, Any] = {
        "adapter_dir": str(out / "adapter"),
        "steps": step,
        "max_steps": config.max_steps,
        "losses": {"first": losses[0] if losses else None, "last": losses[-1] if losses else None},
        "optimizer": optimizer_used,
        "latents_encoded": encoded,
        "trainable_dtypes": sorted({str(p.dtype) for p in params}),
        "base_dtype": str(weight_dtype),
        "num_processes": accelerator.num_processes,
        "global_batch_size": config.batch_size * accelerator.num_processes,
        "buckets": lora_data.bucket_histogram(examples),  # "WxH" -> images, as kohya's ss_bucket_info
        "timing": {
            "startup_s": startup_s,
            "cache_s": cache_s,
            "loop_s": loop_s,
            "ms_per_step": 1000 * loop_s / steps_run if steps_run else None,
        },
        "notes": notes,
        "hub": None,
        "main_process": main,
    }
    if main:
        samples = sample(step, out / "validation" / f"step-{step}")
        unet_state, text_state = lora_tensors()
        info = AdapterInfo(
            base_model=config.base
            if base_kind(config.base) == "hub"
            else Path(config.base).expanduser().resolve().name,
            base_model_revision=parts["revision"],
            rank=config.rank,
            alpha=config.lora_alpha,
            targets=config.targets,
            text_encoder=config.train_text_encoder,
            clip_skip=config.clip_skip,
            resolution=config.resolution,
            prompts=_plane_prompts(prompts),
            dataset=config.dataset_id,
            format="diffusers",
            fulora_version=__version__,
            name=run_name,
            extra={
                "dataset_version": dataset_version,
                "dataset_repo": dataset_repo,
                "dataset_digest": training_digest(examples),
                "num_images": len(examples),
                "steps": step,
                "batch_size": config.batch_size,
                "global_batch_size": summary["global_batch_size"],
                "learning_rate": config.learning_rate,
                "text_encoder_lr": config.text_encoder_lr,
                "lr_scheduler": config.lr_scheduler,
                "lr_warmup_steps": config.lr_warmup_steps,
                "mixed_precision": config.mixed_precision,
                "optimizer": optimizer_used,
                "max_grad_norm": config.max_grad_norm,
                "seed": config.seed,
                "validation_seed": config.validation_seed,
                "bucket_step": config.bucket_step,
                "bucket_no_upscale": config.bucket_no_upscale,
                "final_loss": summary["losses"]["last"],
                # what kohya's ss_* metadata records as well
                "max_steps": config.max_steps,
                "steps_per_epoch": batches.steps_per_epoch,
                "buckets": summary["buckets"],
                "mean_img_ar_error": lora_data.mean_aspect_error(examples),
            },
        )
        write_adapter(out / "adapter", unet_state, text_state, info, unet_peft, text_peft, samples)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if main and push_to_hub is not None:
        from fulora_data.hub import push_model

        summary["hub"] = push_model(out / "adapter", push_to_hub, token=hub_token, private=hub_private)
    return summary


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
    log: Callable[[str], None] = _stderr,
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
