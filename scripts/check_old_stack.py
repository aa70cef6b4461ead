"""Check that both files of a fresh fulora adapter load on an older diffusers stack, with the same pixels.

SD 1.5 users often run older stacks (A1111 extensions, ComfyUI, diffusers 0.35 with transformers 4.x and
peft <= 0.17). This script trains a tiny adapter with fulora (the project's environment), then loads its
diffusers file and its kohya file with ``pipe.load_lora_weights`` in this environment and in another
Python (``--old-python``), generates the same 2-step image with each, and compares the pixels.

    make check-old-stack          # builds .venv-old-stack (pins below) on top of .venv, then runs this

or by hand, with an environment holding the old packages::

    python scripts/check_old_stack.py --old-python /path/to/old/bin/python [--workdir DIR]

The ``load`` sub-mode (what runs in each environment) imports neither fulora nor anything newer than the
old stack: it builds the pipeline from the tiny base's parts itself, since transformers 4 cannot read a
text encoder or tokenizer saved by transformers 5 as they are.

Exit status: 0 when every file loads in both environments, every LoRA module lands and all images agree
within 1/255; 1 otherwise (the reason on stderr).
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

#: The older stack this checks, pins that resolve together with the project's torch (measured: 31 s to
#: install on top of the project's .venv).
OLD_STACK = ("transformers==4.57.6", "peft==0.17.1", "diffusers==0.35.2", "huggingface_hub==0.36.2")
PROMPT = "a photo of fetal brain"
TOLERANCE = 1.0 / 255


def _pipeline(base: Path):
    """The tiny base as a StableDiffusionPipeline, built part by part (works with transformers 4 and 5)."""
    import safetensors.torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizerFast

    config = CLIPTextConfig.from_pretrained(base / "text_encoder")
    text_encoder = CLIPTextModel(config)
    state = {}
    for file in sorted((base / "text_encoder").glob("*.safetensors")):
        state.update(safetensors.torch.load_file(str(file)))
    prefixed = hasattr(text_encoder, "text_model")
    names = set(text_encoder.state_dict())
    fixed = {}
    for key, value in state.items():
        bare = key.removeprefix("text_model.")
        fixed[f"text_model.{bare}" if prefixed and f"text_model.{bare}" in names else bare] = value
    missing, unexpected = text_encoder.load_state_dict(fixed, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"the tiny base's text encoder does not load here: {(missing or unexpected)[:3]}")
    return StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(base / "vae"),
        text_encoder=text_encoder.eval(),
        tokenizer=CLIPTokenizerFast.from_pretrained(base / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(base / "unet"),
        scheduler=DDIMScheduler.from_pretrained(base / "scheduler"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def load(base: Path, adapter: Path, weight_names: list[str]) -> dict:
    """Load each adapter file into a fresh pipeline, count the LoRA modules and generate one image."""
    import diffusers
    import numpy as np
    import peft
    import torch
    import transformers

    out = {
        "versions": {
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "torch": torch.__version__,
        },
        "files": {},
    }
    for weight_name in weight_names:
        pipe = _pipeline(base)
        pipe.set_progress_bar_config(disable=True)
        try:
            pipe.load_lora_weights(str(adapter), weight_name=weight_name)
        except Exception as err:  # report any loader failure as a result, not a crash
            out["files"][weight_name] = {"error": f"{type(err).__name__}: {err}"}
            continue
        counts = {
            part: sum(1 for _, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "scaling"))
            for part, model in (("unet", pipe.unet), ("text_encoder", pipe.text_encoder))
        }
        with torch.no_grad():
            image = pipe(
                PROMPT,
                num_inference_steps=2,
                height=32,
                width=32,
                output_type="np",
                generator=torch.Generator().manual_seed(0),
            ).images[0]
        pixels = np.ascontiguousarray(image, dtype=np.float32)
        out["files"][weight_name] = {
            "lora_modules": counts,
            "shape": list(pixels.shape),
            "pixels": base64.b64encode(pixels.tobytes()).decode("ascii"),
        }
    return out


def _decode(entry: dict):
    import numpy as np

    return np.frombuffer(base64.b64decode(entry["pixels"]), dtype=np.float32).reshape(entry["shape"])


def _run_load(python: str, base: Path, adapter: Path, names: list[str]) -> dict:
    command = [python, __file__, "load", str(base), str(adapter), *names]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"{python} could not run the load check: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check(old_python: str, workdir: Path) -> int:
    """Train a tiny adapter here, load both files here and with ``old_python``; compare. Returns 0 or 1."""
    from fulora_data import samples
    from fulora_data.adapter import DIFFUSERS_FILE, find_kohya_file
    from fulora_data.lora.config import LoraConfig
    from fulora_data.lora.train import train_lora
    from fulora_data.tiny_sd import save_tiny_pipeline

    base = save_tiny_pipeline(workdir / "base")
    source = samples.write_spanish_source(workdir / "src", per_plane=2, test_per_plane=1, seed=0)
    config = LoraConfig.preset(
        "smoke",
        base=str(base),
        data_config="es",
        source=str(source),
        cache_dir=str(workdir / "cache"),
        resolution=32,
        bucket_step=8,
        max_steps=4,
        text_encoder_lr=1e-3,
        output_name="old-stack-check",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train_lora(config, workdir / "run", progress=False, log=lambda message: None)
    adapter = Path(summary["adapter_dir"])
    names = [DIFFUSERS_FILE, find_kohya_file(adapter).name]
    results = {"new": _run_load(sys.executable, base, adapter, names)}
    started = time.perf_counter()
    results["old"] = _run_load(old_python, base, adapter, names)
    report = {
        "versions": {stack: result["versions"] for stack, result in results.items()},
        "old_load_s": round(time.perf_counter() - started, 1),
        "files": {},
    }
    failures = []
    images = {}
    for stack, result in results.items():
        for name, entry in result["files"].items():
            if "error" in entry:
                failures.append(f"{stack} stack, {name}: {entry['error']}")
                continue
            images[(stack, name)] = _decode(entry)
            report["files"][f"{stack}:{name}"] = entry["lora_modules"]
            if entry["lora_modules"] != results["new"]["files"][DIFFUSERS_FILE].get("lora_modules"):
                failures.append(f"{stack} stack, {name}: LoRA modules {entry['lora_modules']}")
    reference = images.get(("new", DIFFUSERS_FILE))
    report["max_abs_diff"] = {}
    for key, image in images.items():
        if reference is None:
            break
        diff = float(abs(image - reference).max())
        report["max_abs_diff"][f"{key[0]}:{key[1]}"] = diff
        if diff > TOLERANCE:
            failures.append(f"{key[0]} stack, {key[1]}: pixels differ by up to {diff:.4f}")
    print(json.dumps(report, indent=2))
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = load(Path(argv[1]), Path(argv[2]), argv[3:])
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--old-python", required=True, help="The Python of the environment with the old stack."
    )
    parser.add_argument("--workdir", type=Path, default=None, help="Where to train (default: a temp folder).")
    args = parser.parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return check(args.old_python, args.workdir)
    with tempfile.TemporaryDirectory(prefix="fulora-old-stack-") as folder:
        return check(args.old_python, Path(folder))


if __name__ == "__main__":
    sys.exit(main())
