"""``fulora_data.presets``: one config protocol for every run config, and fields written as flags by the CLI."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from fulora_data.audit import AuditConfig
from fulora_data.classifier.config import TrainConfig
from fulora_data.cli import FuloraGroup, in_flags
from fulora_data.compare import CompareConfig
from fulora_data.errors import ConfigError
from fulora_data.generation.config import GenerateConfig
from fulora_data.lora.config import LoraConfig
from fulora_data.presets import RunConfig, field_error

CONFIGS = [
    (LoraConfig, "LoRA", {"rank": 8}),
    (TrainConfig, "training", {"epochs": 2}),
    (GenerateConfig, "generation", {"base": "b", "per_plane": 2}),
    (AuditConfig, "audit", {"dataset": "african", "threshold": 3}),
    (CompareConfig, "compare", {"sets": ["african:test", "spanish"], "per_plane": 5}),
]


@pytest.mark.parametrize(("cls", "kind", "values"), CONFIGS)
def test_every_run_config_reads_mappings_yaml_files_and_presets_the_same_way(cls, kind, values, tmp_path):
    assert issubclass(cls, RunConfig) and kind == cls.KIND
    from_dict = cls.from_dict(values)
    assert all(getattr(from_dict, key) == value for key, value in values.items())
    path = tmp_path / "run.yaml"
    path.write_text("".join(f"{key}: {value!r}\n" for key, value in values.items()).replace("'", '"'))
    assert cls.from_yaml(path) == from_dict
    assert cls.preset(str(path)) == from_dict  # a preset may be a YAML file
    name = next(iter(cls.PRESETS))
    preset = cls.preset(name, **values)
    assert all(getattr(preset, key) == value for key, value in values.items())
    assert cls.preset(name, **values, seed=None) == preset  # None: not given, the preset's value stays


@pytest.mark.parametrize(("cls", "kind", "values"), CONFIGS)
def test_unknown_keys_and_presets_are_refused_naming_where_they_came_from(cls, kind, values, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("sedd: 3\n")
    with pytest.raises(ConfigError, match=rf"^{path}: unknown {kind} option 'sedd'; known: "):
        cls.from_yaml(path)
    with pytest.raises(
        ConfigError, match=rf"^unknown {kind} preset 'nope'; choose one of .* or a YAML file$"
    ):
        cls.preset("nope")


def test_a_missing_required_field_is_one_sentence():
    with pytest.raises(ConfigError, match="^preset 'study': the generation option 'base' is required$"):
        GenerateConfig.preset("study")


def test_a_field_error_names_the_field_and_carries_it():
    error = field_error("resolution", "must be divisible by 8; got 12")
    assert str(error) == "resolution must be divisible by 8; got 12" and error.field == "resolution"
    assert str(field_error("planes", ": 'x' is not a plane")) == "planes: 'x' is not a plane"
    with pytest.raises(ConfigError, match="^batch_size must be a positive integer") as caught:
        LoraConfig(batch_size=0, mixed_precision="no").validate()
    assert caught.value.field == "batch_size"


@click.group(cls=FuloraGroup)
def _cli() -> None:
    pass


@_cli.group("sub")
def _sub() -> None:
    pass


@_sub.command("run")
@click.option("--batch-size", "-b", "batch_size", type=int)
@click.option("--hub-data", "--data", "hub_data")
def _run(batch_size, hub_data) -> None:
    raise ConfigError(
        f"batch_size must be positive, got {batch_size}; see `hub_data` and `momentum`", field="batch_size"
    )


def test_the_cli_writes_fields_as_the_flags_of_the_command_that_failed():
    result = CliRunner().invoke(_cli, ["sub", "run", "-b", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output  # a field error is a bad option value
    # the leading field and backticked fields become that command's (longest) flags; a field with no flag
    # on the command keeps its name
    assert result.output == "Error: --batch-size must be positive, got 0; see --hub-data and `momentum`\n"
    command = _sub.commands["run"]
    assert (
        in_flags(ConfigError("batch_size is fine"), command) == "batch_size is fine"
    )  # no field: as written
    assert in_flags(ConfigError("a batch_size here", field="batch_size"), command) == "a batch_size here"


def test_a_library_field_error_reads_as_the_flag_on_the_command_line(tmp_path):
    from fulora_data.cli import main

    result = CliRunner().invoke(
        main, ["data", "audit", "african", "--threshold", "13", "--cache-dir", str(tmp_path / "c")]
    )
    assert result.exit_code != 0
    assert "--threshold must be a whole number of pHash bits from 0 to 12, got 13" in result.output
