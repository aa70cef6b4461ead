"""The LoRA trainer's steps and its faults: kill and resume, the scaler, foreign files, the lock, resume
identity by content, number ranges, damaged caches and checkpoints, a full disk, the push checked first."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fulora_data import samples  # noqa: E402
from fulora_data.adapter import DIFFUSERS_FILE, read_adapter  # noqa: E402
from fulora_data.cli import main  # noqa: E402
from fulora_data.errors import ConfigError, DataError  # noqa: E402
from fulora_data.lora.config import LoraConfig  # noqa: E402
from fulora_data.lora.train import (  # noqa: E402
    make_accelerator,
    read_checkpoint,
    restore,
    save_checkpoint,
    start_run,
    train_lora,
)
from fulora_data.tiny_sd import save_tiny_pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"progress": False, "log": lambda message: None}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny diffusers base folder and a 5-image procedural Spanish set (1 per plane)."""
    root = tmp_path_factory.mktemp("lora-train")
    return {
        "root": root,
        "base": save_tiny_pipeline(root / "base"),
        "source": samples.write_spanish_source(root / "src", per_plane=1, test_per_plane=1, seed=0),
        "cache": root / "cache",
    }


def tiny_config(workspace, **overrides) -> LoraConfig:
    """The smoke preset on the tiny base at 32 px: batch 1, UNet only, no sampling before the end."""
    values = {
        "base": str(workspace["base"]),
        "data_config": "es",
        "source": str(workspace["source"]),
        "cache_dir": str(workspace["cache"]),
        "resolution": 32,
        "bucket_step": 8,
        "batch_size": 1,
        "max_steps": 2,
        "text_encoder_lr": 0.0,
        "checkpoint_every": 2,
        "validation_every": 0,
        "validation_inference_steps": 1,
        "seed": 3,
    }
    values.update(overrides)
    return LoraConfig.preset("smoke", **values)


def train(config, out, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_lora(config, out, **{"report_to": "none", **QUIET, **kwargs})


@pytest.fixture(scope="module")
def finished(workspace):
    """One finished 2-step run (a checkpoint at step 2 and an adapter), shared by the refusal tests."""
    out = workspace["root"] / "finished"
    train(tiny_config(workspace), out)
    return out


def _copy(run: Path, where: Path) -> Path:
    shutil.copytree(run, where, ignore=shutil.ignore_patterns(".fulora.lock*"))
    return where


def _env() -> dict[str, str]:
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "OMP_NUM_THREADS": "1"}


def _config_file(config: LoraConfig, path: Path) -> Path:
    """The config as a JSON (or, for ``.yaml``, a YAML preset) file of its fields."""
    import yaml

    values = {k: v for k, v in config.to_dict().items() if k != "train_text_encoder"}
    path.write_text(yaml.safe_dump(values) if path.suffix == ".yaml" else json.dumps(values))
    return path


# ---------------------------------------------------------------- kill -9 between periodic checkpoints
KILLABLE_RUN = """
import json, os, signal, sys, warnings
from fulora_data.lora.config import LoraConfig
from fulora_data.lora.train import train_lora

config = LoraConfig.from_dict(json.loads(open(sys.argv[1]).read()))
kill_at, resume = int(sys.argv[3]), sys.argv[4] == "resume"

def on_step(step, loss):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

warnings.simplefilter("ignore")
train_lora(
    config, sys.argv[2], resume=resume, report_to="none", on_step=on_step, progress=False, log=lambda m: None
)
"""


@pytest.mark.parametrize(
    "precision",
    ["no", pytest.param("bf16", marks=pytest.mark.slow)],  # bf16 on a CPU: ~4 minutes
)
def test_a_run_killed_between_periodic_checkpoints_resumes_bit_identical_with_a_cosine_schedule(
    workspace, tmp_path, precision
):
    """kill -9 at step 3 (checkpoints at 2 and 4) under a warm-up + cosine schedule (and bf16 autocast):
    the resumed run's adapter, optimizer, scheduler and losses equal an uninterrupted run's."""
    config = tiny_config(
        workspace,
        max_steps=5,
        checkpoint_every=2,
        lr_scheduler="cosine",
        lr_warmup_steps=2,
        mixed_precision=precision,
        text_encoder_lr=1e-3,
    )
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(KILLABLE_RUN))
    settings = str(_config_file(config, tmp_path / "c.json"))

    def run(out: Path, kill_at: int, resume: bool):
        # Every run in its own process with the same environment (threads included), as a user reruns.
        command = [
            sys.executable,
            str(script),
            settings,
            str(out),
            str(kill_at),
            "resume" if resume else "new",
        ]
        return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)

    result = run(killed, 3, False)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    state = json.loads((killed / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and not (killed / "adapter").exists()
    for out, resume in ((killed, True), (straight, False)):
        result = run(out, 0, resume)
        assert result.returncode == 0, result.stderr[-2000:]
    a = load_file(str(killed / "adapter" / DIFFUSERS_FILE))
    b = load_file(str(straight / "adapter" / DIFFUSERS_FILE))
    assert set(a) == set(b) and any(k.startswith("text_encoder.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in b)
    one, two = (read_checkpoint(folder / "checkpoint") for folder in (killed, straight))
    assert one["scheduler"] == two["scheduler"] and one["scheduler"]["_last_lr"][0] < config.learning_rate
    for key, value in two["optimizer"]["state"].items():
        assert all(torch.equal(one["optimizer"]["state"][key][n], value[n]) for n in value)
    states = [json.loads((f / "checkpoint" / "state.json").read_text()) for f in (killed, straight)]
    assert states[0]["losses"] == states[1]["losses"] and len(states[0]["losses"]) == 5


def test_the_gradient_scalers_state_round_trips_through_a_checkpoint(workspace, tmp_path):
    """The fp16 path's GradScaler (scale and growth tracker) is saved and restored with the checkpoint.

    A CPU accelerator has no scaler, so the test gives the run one of torch's own CPU scalers."""
    config = tiny_config(workspace, max_steps=1)
    out = tmp_path / "scaled"
    out.mkdir()

    def fresh_run():
        accelerator = make_accelerator(config, out, None)
        return start_run(config, out, accelerator, base={}, resumed=None, tracker=None, progress=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = fresh_run()
        run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=7)
        run.scaler.load_state_dict({**run.scaler.state_dict(), "scale": 96.0, "_growth_tracker": 5})
        save_checkpoint(run)
        loaded = read_checkpoint(out / "checkpoint")
        assert loaded["scaler"]["scale"] == 96.0
        again = fresh_run()
        again.scaler = torch.amp.GradScaler("cpu")
        restore(again, json.loads((out / "checkpoint" / "state.json").read_text()), loaded)
    assert again.scaler.get_scale() == 96.0 and again.scaler.state_dict()["_growth_tracker"] == 5
    assert again.scaler.get_growth_interval() == 7


# ---------------------------------------------------------------- files fulora did not write
def test_a_users_file_in_the_adapter_folder_is_refused_and_kept(workspace, tmp_path):
    out = tmp_path / "proj"
    (out / "adapter").mkdir(parents=True)
    (out / "adapter" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"adapter/notes.txt was not written by fulora"):
        train(tiny_config(workspace), out)
    assert (out / "adapter" / "notes.txt").read_text() == "mine"
    assert not (out / "checkpoint").exists() and not (out / "logs").exists()


def test_a_card_the_user_edited_is_not_overwritten_on_resume(workspace, finished, tmp_path):
    out = _copy(finished, tmp_path / "edited")
    card = out / "adapter" / "README.md"
    card.write_text(card.read_text() + "\nmy notes\n")
    with pytest.raises(ConfigError, match=r"adapter/README.md was not written by fulora \(or was changed"):
        train(tiny_config(workspace, max_steps=3), out, resume=True)
    assert card.read_text().endswith("my notes\n")


def test_fulora_records_what_it_wrote_and_a_rerun_replaces_only_that(workspace, finished, tmp_path):
    out = _copy(finished, tmp_path / "again")
    written = json.loads((out / ".fulora-written.json").read_text())
    assert {"adapter/README.md", f"adapter/{DIFFUSERS_FILE}"} <= set(written)
    assert all(isinstance(v, str) and len(v) == 64 for v in written.values())
    summary = train(tiny_config(workspace, max_steps=3), out, resume=True)
    assert summary["steps"] == 3 and read_adapter(out / "adapter").extra["steps"] == 3


def test_a_resumed_run_may_take_another_name_and_its_kohya_file_follows(workspace, finished, tmp_path):
    out = _copy(finished, tmp_path / "renamed")
    assert (out / "adapter" / "finished.safetensors").is_file()  # the --out folder's name by default
    summary = train(tiny_config(workspace, max_steps=3, output_name="renamed-r8"), out, resume=True)
    assert summary["steps"] == 3 and sum(summary["buckets"].values()) == 5
    weights = sorted(p.name for p in (out / "adapter").glob("*.safetensors"))
    assert weights == sorted([DIFFUSERS_FILE, "renamed-r8.safetensors"])
    assert read_adapter(out / "adapter", "renamed-r8.safetensors").name == "renamed-r8"
    written = json.loads((out / ".fulora-written.json").read_text())
    assert "adapter/renamed-r8.safetensors" in written and "adapter/finished.safetensors" not in written
    assert {p.relative_to(out).as_posix() for p in (out / "adapter" / "samples").iterdir()} <= set(written)


# ---------------------------------------------------------------- one writer per --out
HOLDER = """
import sys, time
from pathlib import Path
from fulora_data.lora.train import lock_out

with lock_out(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_into_a_busy_out_refuses_at_once_naming_the_holders_pid(workspace, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            ConfigError, match=rf"--out {out} is in use by another fulora run \(PID {holder.pid}\)"
        ):
            train(tiny_config(workspace), out)
        assert not (out / "checkpoint").exists() and not (out / "logs").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(tiny_config(workspace, max_steps=1, checkpoint_every=0), out)["steps"] == 1


# ---------------------------------------------------------------- resume: the same run, by content
def test_resume_refuses_more_images_naming_both_counts(workspace, finished, tmp_path):
    bigger = samples.write_spanish_source(tmp_path / "src10", per_plane=2, test_per_plane=1, seed=0)
    config = tiny_config(workspace, max_steps=3, source=str(bigger), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match=r"was trained on 5 images of spanish/es, but it now has 10"):
        train(config, _copy(finished, tmp_path / "more"), resume=True)


def test_resume_refuses_another_learning_rate(workspace, finished, tmp_path):
    with pytest.raises(ConfigError, match=r"trained with learning_rate=0.001, not 0.002"):
        train(
            tiny_config(workspace, max_steps=3, learning_rate=2e-3),
            _copy(finished, tmp_path / "lr"),
            resume=True,
        )


def test_resume_refuses_other_weights_in_the_same_base_folder(workspace, tmp_path):
    base = save_tiny_pipeline(tmp_path / "base")
    out = tmp_path / "out"
    train(tiny_config(workspace, base=str(base)), out)
    recorded = read_adapter(out / "adapter").extra["base_model_sha256"]
    assert recorded.startswith("sha256:")
    other = save_tiny_pipeline(tmp_path / "other", seed=1)
    for weights in (other / "unet").glob("*.safetensors"):
        shutil.copy(weights, base / "unet" / weights.name)
    with pytest.raises(
        ConfigError, match=rf"trained on base weights {recorded}, but --base .* now holds sha256:"
    ):
        train(tiny_config(workspace, base=str(base), max_steps=3), out, resume=True)


def test_a_cosine_run_cannot_change_its_length_on_resume(workspace, tmp_path):
    out = tmp_path / "cos"
    train(tiny_config(workspace, lr_scheduler="cosine"), out)
    with pytest.raises(
        ConfigError, match=r"trained with max_steps=2 and the 'cosine' schedule depends on it"
    ):
        train(tiny_config(workspace, lr_scheduler="cosine", max_steps=4), out, resume=True)


# ---------------------------------------------------------------- numbers, caches, checkpoints, the disk
def _invoke(*args: str):
    return CliRunner().invoke(main, ["train", "lora", "--preset", "smoke", *args])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--alpha", "1e30"], "--alpha must be at most 64 x rank (256)"),
        (["--alpha", "inf"], "--alpha must be a finite number; got inf"),
        (["--alpha", "nan"], "--alpha must be a finite number; got nan"),
        (["--learning-rate", "inf"], "--learning-rate must be a finite positive number; got inf"),
        (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295; got -1"),
        (["--seed", str(2**70)], f"--seed must be an integer from 0 to 4294967295; got {2**70}"),
        (["--clip-skip", "13"], "--clip-skip must be 1 to 12"),
        (["--resolution", "65536"], "--resolution must be at most 4096"),
    ],
)
def test_numbers_out_of_range_are_one_sentence_and_exit_2_before_any_work(tmp_path, args, fragment):
    result = _invoke(*args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert not (tmp_path / "out").exists()


def test_a_clip_skip_deeper_than_the_bases_text_encoder_is_refused(workspace, tmp_path):
    result = _invoke("--base", str(workspace["base"]), "--clip-skip", "7", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--clip-skip 7 is more than the 5 layers of the text encoder of --base" in result.output


def test_a_truncated_latent_cache_file_is_encoded_again(workspace, finished, tmp_path):
    cache = workspace["cache"] / "fulora-lora-latents"
    victim = sorted(cache.glob("*.safetensors"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    summary = train(tiny_config(workspace, max_steps=1, checkpoint_every=0), tmp_path / "recache")
    assert summary["latents_encoded"] == 1 and summary["steps"] == 1
    assert load_file(str(victim))["latent"].numel() > 0


@pytest.mark.parametrize("name", ["optimizer.pt", "adapter.safetensors", "rng.pt"])
def test_a_truncated_checkpoint_file_on_resume_is_one_sentence(workspace, finished, tmp_path, name):
    out = _copy(finished, tmp_path / "cut")
    path = out / "checkpoint" / name
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=rf"--resume: .*{name} cannot be read .*truncated or damaged"):
        train(tiny_config(workspace, max_steps=3), out, resume=True)


FSIZE_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as a full disk would
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from fulora_data.cli import main
main(sys.argv[2:], prog_name="fulora")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_checkpoint_that_cannot_be_written_is_one_sentence_and_keeps_the_previous_one(
    workspace, finished, tmp_path
):
    """A file-size limit (the OS refusing a write, as a full disk does) while writing step 4's checkpoint."""
    out = _copy(finished, tmp_path / "full")
    largest = max((out / "checkpoint").iterdir(), key=lambda p: p.stat().st_size)
    preset = _config_file(tiny_config(workspace, max_steps=4), tmp_path / "tiny.yaml")
    args = ["train", "lora", "--preset", str(preset), "--out", str(out), "--resume", "--report-to", "none"]
    command = [sys.executable, "-c", FSIZE_LIMITED, str(largest.stat().st_size - 1), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "could not write the checkpoint of step 4" in result.stderr
    assert "File too large" in result.stderr and "the checkpoint of step 2 is kept" in result.stderr
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2
    assert read_checkpoint(out / "checkpoint")["optimizer"]["state"]
    assert not list(out.glob(".checkpoint*"))


# ---------------------------------------------------------------- the push, checked first
def test_push_without_a_token_is_refused_before_training_naming_a_real_flag(workspace, hub_server, tmp_path):
    preset = _config_file(tiny_config(workspace), tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["train", "lora", "--preset", str(preset), "--out", str(out), "--push-to-hub", "fulora/x"]
    )
    assert result.exit_code == 1 and "no Hugging Face token: pass --token" in result.output, result.output
    from fulora_data.cli.lora import lora

    assert "--token" in {name for param in lora.params for name in param.opts}
    assert not (out / "checkpoint").exists() and not (out / "logs").exists()


@pytest.mark.parametrize(
    ("repo", "fragment"),
    [
        ("someone-else/x", "cannot create repositories under 'someone-else'"),
        ("fulora/bad--name", "repo id must look like 'namespace/name'"),
    ],
)
def test_push_target_is_checked_before_training(workspace, hub_server, tmp_path, repo, fragment):
    from fulora_data.errors import FuloraError

    out = tmp_path / "out"
    with pytest.raises(FuloraError, match=fragment):
        train(tiny_config(workspace), out, push_to_hub=repo, hub_token=hub_server.token)
    assert not (out / "checkpoint").exists() and not (out / "logs").exists()


def test_after_a_hub_500_the_advice_is_a_model_push_that_works(workspace, hub_server, tmp_path):
    from huggingface_hub import HfApi

    from fulora_data.hub import HubError

    out = tmp_path / "out"
    hub_server.fail_next("commit", 500, times=10)
    with pytest.raises(HubError) as caught:
        train(tiny_config(workspace), out, push_to_hub="fulora/tiny", hub_token=hub_server.token)
    message = str(caught.value)
    assert "run the same command again" not in message
    assert f"fulora model push {out / 'adapter'} --repo-id fulora/tiny" in message
    hub_server._faults.pop("commit", None)  # the Hub is well again
    result = CliRunner().invoke(
        main, ["model", "push", str(out / "adapter"), "--repo-id", "fulora/tiny", "--token", hub_server.token]
    )
    assert result.exit_code == 0, result.output
    files = HfApi(endpoint=hub_server.url, token=hub_server.token).list_repo_files("fulora/tiny")
    assert DIFFUSERS_FILE in files


# ---------------------------------------------------------------- trackers
def test_report_to_tensorboard_writes_loss_lr_and_one_image_per_plane(workspace, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    train(tiny_config(workspace), out, report_to="tensorboard")
    events = [EventAccumulator(str(p.parent)).Reload() for p in (out / "logs").rglob("events.out.tfevents*")]
    scalars = {tag for e in events for tag in e.Tags()["scalars"]}
    images = {tag for e in events for tag in e.Tags()["images"]}
    assert {"loss", "lr"} <= scalars
    assert len(images) == 5 and all(tag.startswith("validation/") for tag in images)


def test_report_to_none_writes_no_logs_and_an_unknown_tracker_exits_2(workspace, tmp_path):
    train(tiny_config(workspace, max_steps=1, checkpoint_every=0), tmp_path / "none")
    assert not list((tmp_path / "none").rglob("events.out.tfevents*"))
    result = _invoke("--report-to", "mlflow", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "--report-to" in result.output
