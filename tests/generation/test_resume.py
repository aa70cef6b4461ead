"""`fulora generate` resumes a killed run, survives a write error and refuses to mix sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from generate_fixtures import pixel_digests, reference_args

from fulora_data import samples
from fulora_data.cli import main
from fulora_data.errors import DataError
from fulora_data.generated import read_generated, read_manifest
from fulora_data.generation.run import generate_from_options


class Killed(BaseException):
    """Stands for SIGKILL: nothing of fulora's code runs after it (no except Exception catches it)."""


def _shard_digests(folder: Path) -> list[str]:
    return [shard["sha256"] for shard in read_manifest(folder)["shards"]]


def _options(world, **changes):
    args = reference_args(world, Path("unused"), **changes)
    options, key = {}, None
    for arg in args:
        if arg.startswith("--"):
            key = arg[2:].replace("-", "_")
            options[key] = True
        else:
            options[key] = arg
    options.pop("out"), options.pop("no_progress")
    for name in ("per_plane", "width", "height", "steps", "batch_size", "shard_size", "seed"):
        options[name] = int(options[name])
    return options


@pytest.mark.parametrize(
    "stage, failure, at_write",
    [
        ("generating", Killed, 4),  # the 2nd image of the 2nd shard of a process's part (shards of a batch)
        ("merging", Killed, 19),  # the 3rd image of the final folder's 2nd shard
        ("generating", OSError(28, "No space left on device"), 4),  # a write error
    ],
)
def test_a_run_stopped_at_any_stage_resumes_to_the_same_set(
    tiny_world, reference_run, tmp_path, monkeypatch, stage, failure, at_write
):
    import webdataset

    out = tmp_path / "run"
    real_write = webdataset.TarWriter.write
    calls = {"n": 0}

    def failing_write(self, sample):
        calls["n"] += 1
        if calls["n"] == at_write:
            raise failure if isinstance(failure, BaseException) else failure()
        return real_write(self, sample)

    monkeypatch.setattr(webdataset.TarWriter, "write", failing_write)
    if isinstance(failure, OSError):
        result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "failed (" in result.output and "run the same command again to resume" in result.output
    else:
        with pytest.raises(Killed):
            generate_from_options(out, progress=False, log=lambda m: None, **_options(tiny_world))
    monkeypatch.setattr(webdataset.TarWriter, "write", real_write)

    leftovers = sorted(p.name for p in out.rglob("*.partial"))
    assert leftovers == ["images-00001.tar.partial"]  # the shard being written when it stopped
    with pytest.raises(DataError, match="unfinished generation"):
        read_generated(out)  # a stopped run never reads as a finished set

    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out)])
    assert result.exit_code == 0, result.output
    assert not list(out.rglob("*.partial")) and not (out / ".parts").exists()
    assert pixel_digests(out) == reference_run["digests"]  # exactly the requested images, same pixels
    assert _shard_digests(out) == _shard_digests(reference_run["out"])  # even the same shards
    again = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout[again.stdout.index("{") :])["generated_now"] == 0


def test_a_folder_made_with_other_settings_is_refused(tiny_world, reference_run):
    out = reference_run["out"]
    before = (out / "fulora_generated.json").read_bytes()
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out, steps=3)])
    assert result.exit_code == 1
    assert "generated with other settings: steps is 2 there but 3 now" in result.output
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, out, adapter_scale=0.5)])
    assert result.exit_code == 1 and "adapter_scale is 1.0 there but 0.5 now" in result.output
    assert (out / "fulora_generated.json").read_bytes() == before


def test_a_folder_holding_another_generation_is_refused(tiny_world, tmp_path):
    other = samples.write_generated_folder(tmp_path / "other", per_plane=1)
    before = sorted((p.name, p.stat().st_size) for p in other.iterdir())
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, other)])
    assert result.exit_code == 1 and "holds another generation's shards" in result.output
    assert sorted((p.name, p.stat().st_size) for p in other.iterdir()) == before
    (other / "fulora_generated.json").unlink()  # shards without a manifest: refused as well
    result = CliRunner().invoke(main, ["generate", *reference_args(tiny_world, other)])
    assert result.exit_code == 1 and "holds images-00000.tar but no fulora_generated.json" in result.output
