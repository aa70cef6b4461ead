"""Dependencies (setup.cfg): caps on packages whose internals fulora uses, platform markers, the lower-bound
script, packaging without setuptools warnings, and bitsandbytes' CPU warning filtered."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

# Internal (non-top-level, or private) modules of other packages that fulora imports: each package must be
# capped below its next major version, where such modules may move without notice.
INTERNAL_MODULES = {
    "huggingface_hub": "huggingface_hub",
    "datasets": "datasets",
    "diffusers": "diffusers",
    "peft": "peft",
}
# Imports from these submodules are public API, not internals.
PUBLIC_SUBMODULES = {
    "huggingface_hub.errors",
    "huggingface_hub.utils",
    "datasets.features",
    "torch.nn",
    "torch.nn.functional",
    "torch.utils.data",
    "torchvision.models",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "PIL.Image",
    "pyarrow.parquet",
    "safetensors.torch",
    "matplotlib.backends.backend_agg",  # FigureCanvasAgg, documented
}


def requirements() -> dict[str, Requirement]:
    """Every requirement of setup.cfg (core and extras) by distribution name."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in ("train", "eval", "audit"):
        lines += config["options.extras_require"][extra].splitlines()
    found = {}
    for line in lines:
        if line.strip() and not line.strip().startswith("#"):
            requirement = Requirement(line.strip())
            found[requirement.name.lower().replace("-", "_")] = requirement
    return found


def internal_imports() -> dict[str, set[str]]:
    """Top-level package -> the internal modules of it that fulora_data imports (``a.b.c`` or ``a._b``)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "fulora_data").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = node.module
                top = module.split(".")[0]
                private = any(part.startswith("_") for part in module.split(".")[1:])
                deep = module.count(".") >= 2 or private
                if top != "fulora_data" and deep and module not in PUBLIC_SUBMODULES:
                    found.setdefault(top, set()).add(module)
    return found


def has_upper_bound(requirement: Requirement) -> bool:
    return any(spec.operator in ("<", "<=", "~=", "==") for spec in requirement.specifier)


def test_every_package_whose_internals_fulora_imports_is_capped():
    needed = requirements()
    internal = internal_imports()
    for top in internal:
        name = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit_learn"}.get(top, top)
        assert name in needed, f"fulora imports {sorted(internal[top])} but setup.cfg does not require {name}"
        assert has_upper_bound(needed[name]), (
            f"{needed[name]} has no cap; fulora imports {sorted(internal[top])}"
        )
    for name in INTERNAL_MODULES:
        assert has_upper_bound(needed[name]), needed[name]
    assert has_upper_bound(needed["transformers"])  # fulora works around transformers 5's CLIP layout
    assert has_upper_bound(needed["click"])  # the grammar's hidden aliases edit click.Option.opts


def test_caps_sit_at_the_next_major_version():
    needed = requirements()
    for name, cap in {
        "huggingface_hub": "3",
        "datasets": "6",
        "diffusers": "1",
        "peft": "1",
        "transformers": "6",
    }.items():
        assert f"<{cap}" in str(needed[name].specifier), needed[name]


def test_bitsandbytes_is_required_only_on_linux():
    bnb = requirements()["bitsandbytes"]
    assert bnb.marker is not None
    assert bnb.marker.evaluate({"platform_system": "Linux"})
    assert not bnb.marker.evaluate({"platform_system": "Darwin"})
    assert not bnb.marker.evaluate({"platform_system": "Windows"})


def test_the_lower_bound_script_pins_every_lower_bound():
    spec = importlib.util.spec_from_file_location(
        "check_lower_bounds", ROOT / "scripts" / "check_lower_bounds.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pins = script.lower_bounds(script.requirements(["train", "eval", "audit"]))
    assert (
        "tqdm==4.66.3" in pins
        and "huggingface_hub==0.26" in pins
        and "datasets==3.3" in pins
        and "webdataset==0.2.96" in pins
        and "diffusers==0.42" in pins
    )
    assert 'bitsandbytes==0.43; platform_system == "Linux"' in pins
    every = requirements()
    with_lower = [r for r in every.values() if any(s.operator == ">=" for s in r.specifier)]
    assert len(pins) == len(with_lower)


def test_bitsandbytes_cpu_warning_is_dropped_and_its_other_warnings_kept(caplog):
    import fulora_data  # noqa: F401  (installs the filter)

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING, logger="bitsandbytes"):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "boom")
        logger.warning("some other bitsandbytes warning")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["some other bitsandbytes warning"]


@pytest.mark.slow
def test_building_the_wheel_prints_no_setuptools_warning(tmp_path):
    source = tmp_path / "src"  # a copy of the tracked files, so the build leaves nothing in the checkout
    source.mkdir()
    copy = f"git -C {ROOT} ls-files -z | tar --null -T - -C {ROOT} -cf - | tar -C {source} -xf -"
    subprocess.run(copy, shell=True, check=True, executable="/bin/bash")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-v",
            ".",
            "-w",
            str(tmp_path),
        ],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    log = built.stdout + built.stderr
    assert "would be ignored" not in log and "BuildBackendWarning" not in log
    (wheel,) = tmp_path.glob("fulora-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "fulora_data/reference/paper_results.csv" in names
    assert not [n for n in names if "__pycache__" in n]
