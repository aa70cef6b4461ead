"""A generation run under bad numbers, late checks, failures and a second writer (``generation/run.py``).

Issue 18's generation faults, each of which the code before this change got wrong: non-finite or absurd
numbers gave exit 0 and black images (and a manifest with non-standard JSON ``NaN``); ``--against`` was
checked only after every image; a failed run left a manifest that refused the corrected command; two runs
into one folder both failed with a misleading message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from generate_fixtures import reference_args

from fulora_data.cli import main


def _error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("adapter_scale", "nan", "Invalid value for '--adapter-scale': must be a finite number from -10 to 10, got 'nan'"),
        ("adapter_scale", "1e30", "Invalid value for '--adapter-scale': must be a finite number from -10 to 10, got '1e30'"),
        ("guidance", "nan", "Invalid value for '--guidance': must be a finite number from 0 to 30, got 'nan'"),
        ("guidance", "inf", "Invalid value for '--guidance': must be a finite number from 0 to 30, got 'inf'"),
        ("guidance", "-1", "Invalid value for '--guidance': must be a finite number from 0 to 30, got '-1'"),
    ],
)  # fmt: skip
def test_non_finite_or_out_of_range_numbers_are_refused_before_anything_runs(
    tiny_world, tmp_path, option, value, message
):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out, **{option: value})])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("guidance_scale", float("nan"), "guidance_scale must be a finite number, got nan"),
        ("adapter_scale", float("inf"), "adapter_scale must be a finite number, got inf"),
        ("adapter_scale", 1e30, "adapter_scale must be between -10 and 10, got 1e+30"),
        ("width", 65536, "width must be at most 8192 pixels, got 65536"),
    ],
)
def test_the_library_refuses_the_same_numbers_naming_the_field(field, value, message):
    from fulora_data.errors import ConfigError
    from fulora_data.generation.config import GenerateConfig

    with pytest.raises(ConfigError) as caught:
        GenerateConfig(base="b", **{field: value}).validated()
    assert str(caught.value) == message and caught.value.field == field  # the CLI names its flag


def test_the_generated_writer_never_stores_a_non_standard_nan(tmp_path):
    from fulora_data.errors import DataError
    from fulora_data.generated import GeneratedWriter, GenerationRecord

    record = GenerationRecord(image_id="00000-1", plane="Fetal brain", prompt="p", negative_prompt="",
                              sampler="EulerDiscreteScheduler", steps=2, guidance_scale=float("nan"), seed=1,
                              width=8, height=8, base_model="b", base_model_revision="", adapter="",
                              adapter_revision="", lora_rank=0, generation_index=0)  # fmt: skip
    with (
        pytest.raises(DataError, match="holds a NaN or infinite number"),
        GeneratedWriter(tmp_path / "set") as writer,
    ):
        writer.add(b"not read", record)
    with pytest.raises(DataError, match="holds a number JSON cannot store"):
        GeneratedWriter(tmp_path / "other", info={"settings": {"guidance_scale": float("nan")}})
    for manifest in (tmp_path / "set").glob("fulora_generated.json"):
        json.loads(manifest.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))


@pytest.mark.parametrize("case", ["missing source", "unknown config", "missing repository"])
def test_a_bad_against_fails_before_any_image(tiny_world, tmp_path, case, request):
    changes = {"cache_dir": tmp_path / "cache"}
    if case == "missing source":
        changes |= {"against": "spanish/lora-100", "against_source": tmp_path / "nope.tar.xz"}
        expected = "nope.tar.xz"
    elif case == "unknown config":
        changes |= {"against": "spanish/lora-7", "against_source": tiny_world["spanish"]}
        expected = "'lora-7'"
    else:
        request.getfixturevalue("hub_server")
        changes |= {"against": "fulora/no-such-set/lora-100"}
        expected = "fulora/no-such-set"
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out, **changes)])
    assert result.exit_code == (2 if case == "unknown config" else 1) and "Traceback" not in result.output
    assert expected in _error(result)
    assert "generating" not in result.output  # refused before the first image
    assert not out.exists()


def _run_out_of_memory(tiny_world, out, monkeypatch):
    """Sample with the pipeline call failing as a GPU out of memory does (torch's own error type)."""
    import diffusers
    import torch

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

    with monkeypatch.context() as patch:
        patch.setattr(diffusers.StableDiffusionPipeline, "__call__", out_of_memory)
        return CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out)])


def test_a_run_that_fails_before_its_first_image_leaves_nothing_that_refuses_the_fixed_command(
    tiny_world, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    result = _run_out_of_memory(tiny_world, out, monkeypatch)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert _error(result).startswith(
        "Error: out of memory sampling 2 images of 16x16 on cpu: lower --batch-size"
    )
    assert not out.exists()  # this run made the folder and committed no image: it is gone
    fixed = CliRunner().invoke(
        main, ["generate", *reference_args(tiny_world, out, batch_size=1, per_plane=1)]
    )
    assert fixed.exit_code == 0, fixed.output


def test_a_failed_run_into_an_existing_empty_folder_keeps_the_folder_but_no_manifest(
    tiny_world, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    out.mkdir()
    result = _run_out_of_memory(tiny_world, out, monkeypatch)
    assert result.exit_code == 1
    assert out.is_dir() and not (out / "fulora_generated.json").exists()
    assert {p.name for p in out.iterdir()} <= {".fulora-generate.lock"}
    fixed = CliRunner().invoke(
        main, ["generate", *reference_args(tiny_world, out, batch_size=1, per_plane=1)]
    )
    assert fixed.exit_code == 0, fixed.output


def test_a_manifest_with_no_image_from_an_older_failed_run_does_not_refuse_other_settings(
    tiny_world, tmp_path
):
    from fulora_data.generated import GeneratedWriter

    out = tmp_path / "out"
    GeneratedWriter(
        out, info={"settings": {"steps": 2000, "samplers": ["ddim"]}, "command": "fulora generate"}
    )
    assert json.loads((out / "fulora_generated.json").read_text())["num_images"] == 0
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out, per_plane=1)])
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "fulora_generated.json").read_text())["info"]["settings"]
    assert settings["steps"] == 2 and settings["samplers"] == ["euler", "unipc"]


_HOLD = """
import sys, time
from pathlib import Path
from fulora_data.generation.run import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_run_into_a_held_folder_refuses_at_once_naming_the_holders_pid(tiny_world, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert _error(result) == (
            f"Error: {out} is being written by another `fulora generate` (PID {holder.pid}); wait for it to "
            "finish, or write into another folder"
        )
        assert not (out / "fulora_generated.json").exists()
    finally:
        holder.kill()
        holder.wait()
    again = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out, per_plane=1)])
    assert again.exit_code == 0, again.output
