"""The one label taxonomy, and the promise that the core imports without the heavy extras."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fulora_data.errors import DataError
from fulora_data.taxonomy import (
    PLANES,
    PROMPTS,
    base_features,
    canonical_plane,
    class_label,
    label_index,
)


def test_class_order_is_the_studys():
    assert class_label().names == ["Other", "Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax"]
    assert class_label(with_cervix=True).names[5] == "Maternal cervix"
    assert base_features()["label"].names == list(PLANES)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Fetal femur", "Fetal femur"),
        (" fetal FEMUR ", "Fetal femur"),
        ("femur", "Fetal femur"),
        ("other", "Other"),
        ("cervix", "Maternal cervix"),
        ("fetal_thorax", "Fetal thorax"),
    ],
)
def test_aliases(value, expected):
    assert canonical_plane(value) == expected


def test_study_codes_are_not_label_indices():
    assert canonical_plane("4", study_codes=True) == "Fetal femur"
    assert label_index("Fetal femur", PLANES) == 3
    assert canonical_plane(0, study_codes=True) == "Other"
    with pytest.raises(DataError, match="unknown plane '4'"):
        canonical_plane("4")


def test_unknown_plane_quotes_the_value():
    with pytest.raises(DataError, match="unknown plane 'Fetal heart'"):
        canonical_plane("Fetal heart")
    with pytest.raises(DataError, match="is not a class of this dataset"):
        label_index("Maternal cervix", PLANES)


def test_prompts_are_the_studys():
    assert PROMPTS["Other"] == "a photo of fetal ultrasound"
    assert PROMPTS["Fetal abdomen"] == "a photo of fetal abdomen"


def test_core_imports_without_heavy_extras():
    """`import fulora_data` and the whole CLI load with torch, diffusers, peft, bitsandbytes, sklearn absent."""
    code = """
import sys
# A None entry makes `import X` fail and importlib.util.find_spec(X) answer "not installed".
for name in ("torch", "torchvision", "diffusers", "peft", "bitsandbytes", "accelerate", "sklearn",
             "evaluate", "transformers", "matplotlib", "imagehash"):
    sys.modules[name] = None
import fulora_data, fulora_data.prepare, fulora_data.cli
from click.testing import CliRunner
result = CliRunner().invoke(fulora_data.cli.main, ["--help"])
assert result.exit_code == 0, result.output
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
