"""The FID Inception (``fulora_data.compare.features.open_fid_network``) and FID/KID computed on it.

No download: the weights are random values saved in pytorch-fid's key layout
(``random_fid_inception_weights``). They say nothing about images, but the architecture, key layout,
preprocessing and report wiring are what these tests check; pytorch-fid's own ``InceptionV3`` is the
reference for the features.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from compare_fixtures import _generated_set
from PIL import Image

from fulora_data.cli import main
from fulora_data.compare import compare_sets
from fulora_data.compare.features import (
    FID_NETWORK,
    extract,
    open_fid_network,
    random_fid_inception_weights,
    random_inception_weights,
)
from fulora_data.errors import ConfigError, SourceNotFoundError
from fulora_data.io import file_sha256
from fulora_data.samples import png_bytes, render_plane_image

pytest.importorskip("torch")
pytest.importorskip("pytorch_fid", reason="the FID Inception's blocks come from pytorch-fid ([eval] extra)")

SIZE = 75  # the t-SNE network's input side: the smallest torchvision's inception_v3 takes
PLANES2 = ["Fetal brain", "Fetal femur"]


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory) -> Path:
    return random_fid_inception_weights(tmp_path_factory.mktemp("fid") / "pt_inception_random.pth", seed=0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return random_inception_weights(
        tmp_path_factory.mktemp("tv") / "inception_random.pth", calibrate_size=SIZE
    )


def _images(n: int, seed: int, size=(96, 72), shift: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pixels = np.asarray(render_plane_image("Fetal brain", size, rng), dtype=np.int16) + shift
        out.append(png_bytes(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))))
    return out


def test_fid_features_equal_pytorch_fids_inceptionv3_on_the_same_weights(fid_weights, monkeypatch):
    torch = pytest.importorskip("torch")
    from pytorch_fid import inception as pytorch_fid_inception

    state = torch.load(fid_weights, weights_only=True)
    # pytorch-fid downloads its weights inside InceptionV3(); hand it the same file instead.
    monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state)
    reference = pytorch_fid_inception.InceptionV3([3]).eval()  # strict load: same keys and shapes
    network = open_fid_network(fid_weights, device="cpu")
    assert network.description["network"] == FID_NETWORK
    assert network.description["weights_sha256"] == file_sha256(fid_weights)
    assert network.description["comparable_with_published_fid"] is True
    images = _images(3, seed=1, size=(120, 90))
    ours = extract(images, network, None).pool
    batch = []
    for data in images:  # pytorch-fid's ImagePathDataset: RGB, ToTensor ([0, 1]); the model resizes
        with Image.open(__import__("io").BytesIO(data)) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        batch.append(torch.from_numpy(array).permute(2, 0, 1))
    with torch.inference_mode():
        theirs = reference(torch.stack(batch))[0].squeeze(-1).squeeze(-1).numpy()
    assert ours.shape == (3, 2048)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert float(np.abs(ours).mean()) > 1e-3  # calibrated random weights: features are not all zero


def test_fid_weights_that_are_absent_or_of_another_network_are_refused(tmp_path, weights):
    with pytest.raises(
        SourceNotFoundError, match="--fid-weights .*missing.pth.* is not a file.*pt_inception"
    ):
        open_fid_network(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="is not the FID Inception's state dict"):
        open_fid_network(weights)  # torchvision's layout: 1000 classes, aux head, other blocks


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One dataset and feature cache for the module: the CLI test reads the features computed before it."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    """Two generated sets of the same draws, the second brightened by 60 grey levels."""
    root = tmp_path_factory.mktemp("sets")
    per_plane = dict.fromkeys(PLANES2, 3)
    return {
        name: _generated_set(root / name, per_plane, seed=0, shift=shift)
        for name, shift in (("base", 0), ("far", 60))
    }


def test_compare_computes_fid_on_the_fid_inception_and_names_it_beside_every_figure(
    sets, weights, fid_weights, cache, tmp_path
):
    common = dict(
        planes=PLANES2,
        per_plane=3,
        image_size=SIZE,
        weights=weights,
        cache_dir=cache,
        bootstrap=5,
        log=lambda _: None,
    )
    specs, sources = ["synthetic/generated"] * 2, [sets["base"], sets["far"]]
    result = compare_sets(specs, sources, fid_weights=fid_weights, report=tmp_path / "report", **common)
    settings = result["settings"]
    sha = file_sha256(fid_weights)
    assert (
        settings["fid_network"]["network"] == FID_NETWORK and settings["fid_network"]["weights_sha256"] == sha
    )
    assert settings["network"]["network"] == "inception_v3"  # the t-SNE keeps torchvision's network
    plain = compare_sets(specs, sources, **common)
    assert plain["settings"]["fid_network"]["network"] == "inception_v3"
    assert any("cannot be compared with published FIDs" in w for w in plain["warnings"])
    for plane in (*PLANES2, "overall"):
        on_fid, on_tv = result["planes"][plane]["pairs"][0], plain["planes"][plane]["pairs"][0]
        assert on_fid["fid"] > 0 and on_fid["fid"] != pytest.approx(on_tv["fid"])  # other features
        assert result["planes"][plane]["tsne"] == plain["planes"][plane]["tsne"]  # same t-SNE network
    report = (tmp_path / "report" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and " vs " in line]
    assert len(rows) == 3 and all(f"{FID_NETWORK} `{sha[:12]}`" in row for row in rows)
    assert "FID Inception (2015 TF graph, pytorch-fid)" in report and sha[:16] in report
    tv_sha = file_sha256(weights)[:16]
    captions = [line for line in report.splitlines() if line.startswith("t-SNE of the logits of")]
    assert len(captions) == 4 and all(tv_sha in c for c in captions)  # grid + three panels
    card = (tmp_path / "report" / "card_section.md").read_text()
    assert sha[:16] in card and tv_sha in card
    stored = json.loads((tmp_path / "report" / "compare.json").read_text())
    assert stored["settings"]["fid_network"]["weights_sha256"] == sha


def test_cli_fid_weights_prints_the_network_and_refuses_a_wrong_file(sets, weights, fid_weights, cache):
    args = ["data", "compare", "synthetic/generated", "synthetic/generated"]
    args += ["--source", str(sets["base"]), "--source", str(sets["far"]), "--per-plane", "3"]
    args += ["--image-size", str(SIZE), "--weights", str(weights), "--bootstrap", "0"]
    args += ["--cache-dir", str(cache)] + [x for p in PLANES2 for x in ("--plane", p)]
    run = CliRunner().invoke(main, [*args, "--fid-weights", str(fid_weights)])
    assert run.exit_code == 0, run.output
    sha = file_sha256(fid_weights)[:16]
    assert (
        f"FID and KID on FID Inception (2015 TF graph, pytorch-fid) ({fid_weights.name}, sha256 {sha})"
        in run.stdout
    )
    assert "features: 0 computed, 24 cached" in run.stdout  # both networks' features, from the cache
    run = CliRunner().invoke(main, [*args, "--fid-weights", str(weights)])
    assert run.exit_code != 0 and "--fid-weights" in run.output and "Traceback" not in run.output
