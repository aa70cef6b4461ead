"""`--device` of compare and evaluate (fulora_data/devices.py): one sentence and exit 2, before any work."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from fulora_data.cli import main
from fulora_data.devices import check_device
from fulora_data.errors import ConfigError

NO_GPU = not torch.cuda.is_available()


def test_malformed_devices_are_refused_by_name():
    for bad in ("banana", "cuda:x", "gpu", "cpu:3", ""):
        with pytest.raises(ConfigError, match=repr(bad) if bad != "cpu:3" else "no index 3"):
            check_device(bad)
    assert check_device(None) is None and check_device("cpu") == "cpu"


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ConfigError, match="needs a CUDA GPU and torch sees none here; use --device cpu"):
        check_device("cuda")


@pytest.mark.parametrize("device", ["banana", pytest.param("cuda", marks=pytest.mark.skipif(not NO_GPU, reason="GPU"))])
@pytest.mark.parametrize(
    "command",
    [
        # Sets, sources and weights that do not exist: a run that got past --device would fail on them.
        ["data", "compare", "synthetic/generated", "synthetic/generated", "--source", "nowhere-a",
         "--source", "nowhere-b", "--weights", "missing.pt"],
        ["evaluate", "--model", "missing-checkpoint", "--data", "african:test", "--source", "nowhere"],
    ],
    ids=["compare", "evaluate"],
)  # fmt: skip
def test_compare_and_evaluate_refuse_a_bad_device_with_exit_2_before_work(command, device, tmp_path):
    run = CliRunner().invoke(main, [*command, "--device", device, "--cache-dir", str(tmp_path / "c")])
    assert run.exit_code == 2, run.output
    assert "Invalid value for '--device'" in run.output and repr(device) in run.output
    assert "Traceback" not in run.output and not (tmp_path / "c").exists()
