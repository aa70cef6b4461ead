"""``fulora data compare``: the draw, FID/KID against references, the feature cache, figures, report, bad input.

The network is a randomly initialised Inception-V3 (``random_inception_weights``) at 75 px: its features
mean nothing about ultrasound, but they are a deterministic function of the pixels, which is all the
known-difference checks need (identical sets, a small and a large brightness shift).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from compare_fixtures import SIZE, tiny_sets, weights  # noqa: F401  (module fixtures)
from conftest import SHARED
from PIL import Image

from fulora_data.cli import main
from fulora_data.compare import (
    CompareConfig,
    bootstrap_interval,
    compare_sets,
    draw_per_plane,
    fid_from_statistics,
    frechet_distance,
    kernel_inception_distance,
)
from fulora_data.compare.features import (
    FeatureCache,
    extract,
    open_network,
    resolve_weights,
)
from fulora_data.compare.sets import default_labels
from fulora_data.dataset_ref import DatasetRef
from fulora_data.errors import ConfigError, SourceNotFoundError
from fulora_data.samples import png_bytes, render_plane_image

PLANES2 = ["Fetal brain", "Fetal femur"]


# ---------------------------------------------------------------- metrics against references


def _pytorch_fid_reference(x: np.ndarray, y: np.ndarray) -> float:
    """pytorch-fid's calculate_frechet_distance, written out independently (scipy sqrtm)."""
    linalg = pytest.importorskip("scipy.linalg")
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_matches_the_sqrtm_formula_and_both_routes_agree():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 12)) @ rng.normal(size=(12, 12))
    y = rng.normal(0.3, 1.2, size=(45, 12)) @ rng.normal(size=(12, 12))
    reference = _pytorch_fid_reference(x, y)
    assert reference > 1
    for route in ("samples", "features", "auto"):
        assert frechet_distance(x, y, route=route) == pytest.approx(reference, rel=1e-6)
    # Fewer images than dimensions (the study's 35 images of 2048 features): rank-deficient covariances.
    x, y = rng.normal(size=(9, 40)), rng.normal(0.5, 2.0, size=(7, 40))
    assert frechet_distance(x, y, route="samples") == pytest.approx(
        frechet_distance(x, y, route="features"), rel=1e-6
    )


def test_fid_of_diagonal_gaussians_is_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert fid_from_statistics(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(10 + 4 + 1)


def test_kid_is_the_unbiased_mmd_of_a_direct_double_loop():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.4, size=(5, 5))
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert kernel_inception_distance(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_identical_sets_give_zero_and_a_larger_shift_a_larger_distance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 16))
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-9)
    small, large = x + 0.2, x + 1.0
    assert frechet_distance(x, small) < frechet_distance(x, large)
    assert kernel_inception_distance(x, small) < kernel_inception_distance(x, large)
    low, high = bootstrap_interval(x, large, frechet_distance, replicates=50, seed=0)
    assert 0 < low < high
    assert bootstrap_interval(x, large, frechet_distance, replicates=50, seed=0) == (low, high)
    assert bootstrap_interval(x, large, frechet_distance, replicates=0) is None


def test_the_fast_intervals_are_the_plain_bootstrap():
    from fulora_data.compare.metrics import compare_features

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(9, 40)) + 3.0, rng.normal(0.5, 2.0, size=(7, 40)) + 3.0
    fast = compare_features(x, y, bootstrap=25, seed=3)  # 16 images < 40 dimensions: the Gram route
    plain_fid = bootstrap_interval(x, y, frechet_distance, replicates=25, seed=3, floor=0.0)
    plain_kid = bootstrap_interval(x, y, kernel_inception_distance, replicates=25, seed=4)
    np.testing.assert_allclose(fast["fid_interval"], plain_fid, rtol=1e-9)
    np.testing.assert_allclose(fast["kid_interval"], plain_kid, rtol=1e-9)
    assert fast["images"] == [9, 7] and fast["fid"] == pytest.approx(frechet_distance(x, y))


# ---------------------------------------------------------------- the draw and the set specs


def test_the_draw_is_pandas_groupby_sample():
    pandas = pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    planes = list(
        rng.choice(["Fetal brain", "Other", "Fetal abdomen", "Maternal cervix", "Fetal femur"], 300)
    )
    frame = pandas.DataFrame({"Plane": planes})
    for n, seed in ((35, 1234), (10, 7)):
        expected = frame.groupby("Plane").sample(n=n, random_state=seed).index.tolist()
        drawn, short = draw_per_plane(planes, n, seed)
        assert [i for plane in sorted(drawn) for i in drawn[plane]] == expected
        assert short == {}


def test_a_plane_with_fewer_images_than_asked_gives_all_of_them():
    planes = ["Fetal brain"] * 3 + ["Fetal femur"] * 10
    drawn, short = draw_per_plane(planes, 5, 1234)
    assert sorted(drawn["Fetal brain"]) == [0, 1, 2]
    assert short == {"Fetal brain": 3}
    assert len(set(drawn["Fetal femur"])) == 5 and all(p >= 3 for p in drawn["Fetal femur"])
    drawn, short = draw_per_plane(planes, None, 0)
    assert drawn["Fetal femur"] == list(range(3, 13)) and short == {}


def test_compare_config_refuses_bad_settings_naming_the_field_before_any_load():
    assert CompareConfig.preset("study", sets=["african:test", "spanish"]).per_plane == 35
    for values, field, message in (
        ({"sets": ["african:test"]}, None, "compare needs at least two sets, got 1"),
        ({"sets": ["african", "spanish"], "sources": ["a"]}, "sources", "sources must be given once per set"),
        ({"sets": ["african", "spanish"], "labels": ["x"]}, "labels", "labels must be given once per set"),
        ({"sets": ["african", "spanish"], "per_plane": 0}, "per_plane", "per_plane must be a whole number"),
        (
            {"sets": ["african", "spanish"], "tsne_features": "x"},
            "tsne_features",
            "tsne_features must be one",
        ),
    ):
        with pytest.raises(ConfigError, match=f"^{message}") as caught:
            CompareConfig.from_dict(values).validate()
        assert caught.value.field == field
    with pytest.raises(ConfigError, match="unknown compare option 'per_plan'"):
        CompareConfig.from_dict({"sets": [], "per_plan": 3})


def test_sets_are_named_by_the_study_where_a_dataset_appears_once():
    specs = [
        DatasetRef.parse(s) for s in ("african:test", "synthetic/generated", "synthetic/generated", "spanish")
    ]
    assert default_labels(specs, ["a", "/x/r8", "/x/r32", "s"]) == [
        "Africa",
        "synthetic/generated (r8)",
        "synthetic/generated (r32)",
        "Spain",
    ]


# ---------------------------------------------------------------- network, weights and the feature cache


@pytest.fixture(scope="module")
def network(weights):  # noqa: F811
    return open_network(weights, image_size=SIZE, device="cpu")


def _images(n: int, seed: int, shift: int = 0, plane: str = "Fetal brain") -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pixels = np.asarray(render_plane_image(plane, (96, 72), rng), dtype=np.int16) + shift
        out.append(png_bytes(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))))
    return out


def test_features_are_cached_by_digest_and_never_mixed_across_networks(tmp_path, weights, network):  # noqa: F811
    torch = pytest.importorskip("torch")
    images = _images(4, seed=0)
    cache = FeatureCache.open(tmp_path, network)
    first = extract(images, network, cache)
    assert (first.computed, first.cached) == (4, 0)
    assert first.pool.shape == (4, 2048) and first.logits.shape == (4, 1000)
    # A new run reads the files: only the new image is computed, the rest are the same numbers.
    again = extract([*images, *_images(1, seed=9)], network, FeatureCache.open(tmp_path, network))
    assert (again.computed, again.cached) == (1, 4)
    np.testing.assert_array_equal(again.pool[:4], first.pool)
    # Another network (other weights) computes everything again, in its own folder.
    state = torch.load(weights, weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1.0
    other_file = tmp_path / "other.pth"
    torch.save(state, other_file)
    other = open_network(other_file, image_size=SIZE, device="cpu")
    assert other.key != network.key
    mine = extract(images, other, FeatureCache.open(tmp_path, other))
    assert (mine.computed, mine.cached) == (4, 0)
    np.testing.assert_allclose(mine.logits, first.logits + 1.0, rtol=1e-4, atol=1e-3)
    # A file of one network dropped into another's folder is ignored, not read.
    for path in (tmp_path / network.key).glob("features-*.npz"):
        shutil.copy(path, tmp_path / other.key / f"features-foreign{path.stem[-4:]}.npz")
    reopened = FeatureCache.open(tmp_path, other)
    assert len(reopened.ignored) == 2 and all(network.key in text for text in reopened.ignored)
    assert len(reopened.pool) == 4


def test_weights_that_are_not_inception_or_absent_are_refused(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    not_inception = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)}, not_inception)
    with pytest.raises(ConfigError, match="not a torchvision inception_v3 state dict"):
        open_network(not_inception, image_size=SIZE)
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(ConfigError, match="not a PyTorch state dict"):
        open_network(text, image_size=SIZE)
    with pytest.raises(SourceNotFoundError, match="is not a file"):
        resolve_weights(tmp_path / "missing.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(SourceNotFoundError, match="--weights FILE"):
        resolve_weights(None, download=False)
    with pytest.raises(ConfigError, match="at least 75"):
        open_network(not_inception, image_size=64)


# ---------------------------------------------------------------- whole comparisons on tiny sets


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, tiny_sets, weights):  # noqa: F811
    work = tmp_path_factory.mktemp("compare")
    config = CompareConfig(
        sets=["synthetic/generated"] * 4,
        sources=[tiny_sets[k] for k in ("base", "copy", "near", "far")],
        labels=["base", "copy", "near", "far"],
        planes=PLANES2,
        per_plane=4,
        image_size=SIZE,
        weights=weights,
        cache_dir=work / "cache",
        report=work / "report",
        bootstrap=20,
    )
    result = compare_sets(config, log=lambda _: None)
    return result, work


def _pair(panel: dict, a: str, b: str) -> dict:
    return next(p for p in panel["pairs"] if {p["a"], p["b"]} == {a, b})


def test_known_differences_show_in_fid_kid_and_tsne(comparison):
    result, _ = comparison
    assert set(result["planes"]) == {*PLANES2, "overall"}
    for name, panel in result["planes"].items():
        assert len(panel["pairs"]) == 6  # every pair of the four sets
        assert _pair(panel, "base", "copy")["fid"] == pytest.approx(0, abs=1e-3)
        near, far = _pair(panel, "base", "near"), _pair(panel, "base", "far")
        assert 0 < near["fid"] < far["fid"], name
        assert near["kid"] < far["kid"], name
        assert near["images"] == ([4, 4] if name != "overall" else [8, 8])
        assert near["fid_interval"][0] <= near["fid_interval"][1]
        assert any("FID on" in w for w in near["warnings"])  # 4 images: flagged as noise
        # Identical images are embedded at one place; the far set's cloud sits apart from them.
        base, copy, far_points = (np.array(panel["tsne"][k]) for k in ("base", "copy", "far"))
        assert np.abs(base - copy).max() < 0.1
        assert (base.min(), base.max()) >= (0.0, 0.0) and max(base.max(), far_points.max()) <= 1.0
        assert np.linalg.norm(base.mean(0) - far_points.mean(0)) > np.linalg.norm(base.mean(0) - copy.mean(0))
    assert result["features"]["computed"] == 24  # the copy's images were computed once, as the base's


def test_the_report_has_every_figure_pair_and_plane(comparison):
    result, work = comparison
    report = work / "report"
    names = {p.name for p in report.iterdir()}
    assert {"report.md", "compare.json", "tsne_grid.png", "tsne_overall.png"} <= names
    assert {"tsne_fetal_brain.png", "tsne_fetal_femur.png"} <= names
    assert "](compare/tsne_grid.png)" in (report / "card_section.md").read_text()
    for name in (n for n in names if n.endswith(".png")):
        with Image.open(report / name) as image:
            assert image.width > 200
    stored = json.loads((report / "compare.json").read_text())
    assert set(stored["planes"]) == set(result["planes"])
    text = (report / "report.md").read_text()
    assert "base vs far" in text and "![t-SNE of every plane](tsne_grid.png)" in text
    assert str(work) not in (report / "compare.json").read_text()  # source file names, not local paths


def test_cli_reuses_the_cache_and_flags_missing_planes(comparison, tiny_sets, weights):  # noqa: F811
    _, work = comparison
    args = ["data", "compare", "synthetic/generated", "synthetic/generated", "synthetic/generated"]
    for key in ("base", "near", "no-femur"):
        args += ["--source", str(tiny_sets[key])]
    args += ["--per-plane", "5", "--image-size", str(SIZE), "--weights", str(weights), "--bootstrap", "5"]
    args += ["--cache-dir", str(work / "cache"), "--json"]
    for plane in PLANES2:
        args += ["--plane", plane]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    result = json.loads(run.stdout)
    assert result["features"]["cached"] == 16 and result["features"]["computed"] == 4  # only the new set's
    labels = [s["label"] for s in result["sets"]]
    assert labels[2].endswith("(no-femur)")
    femur = result["planes"]["Fetal femur"]
    assert set(femur["images"]) == set(labels[:2]) and len(femur["pairs"]) == 1
    assert len(result["planes"]["Fetal brain"]["pairs"]) == 3
    assert any("no Fetal femur images" in w for w in result["warnings"])
    assert any("fewer than 5 asked" in w for w in result["warnings"])
    assert "warning:" in run.stderr
    plain = [a for a in args if a != "--json"]
    run = CliRunner().invoke(main, plain)
    assert run.exit_code == 0, run.output
    assert "Fetal brain:" in run.stdout and " vs " in run.stdout and "FID " in run.stdout
    assert "features: 0 computed, 20 cached" in run.stdout


def test_a_plane_no_two_sets_have_is_skipped_and_said(tiny_sets, weights, tmp_path):  # noqa: F811
    config = CompareConfig(
        sets=["synthetic/generated", "synthetic/generated"],
        sources=[tiny_sets["base"], tiny_sets["no-femur"]],
        planes=["femur", "brain"],
        per_plane=2,
        image_size=SIZE,
        weights=weights,
        feature_cache=tmp_path / "features",
        cache_dir=tmp_path / "cache",
        bootstrap=0,
    )
    result = compare_sets(config, log=lambda _: None)
    assert "Fetal femur" in result["skipped"] and "Fetal femur" not in result["planes"]
    assert set(result["planes"]) == {"Fetal brain", "overall"}
    assert result["planes"]["Fetal brain"]["pairs"][0]["fid_interval"] is None


def test_bad_sets_and_options_are_one_error_line(tiny_sets, weights, tmp_path):  # noqa: F811
    runner = CliRunner()
    base = ["--weights", str(weights), "--image-size", str(SIZE), "--cache-dir", str(tmp_path)]
    run = runner.invoke(main, ["data", "compare", "nosuchset:test", "synthetic/generated", *base])
    assert run.exit_code == 2 and "Error:" in run.output and "nosuchset" in run.output
    assert "Traceback" not in run.output
    run = runner.invoke(
        main, ["data", "compare", "synthetic/generated", "synthetic/generated", "--source", "x", *base]
    )
    assert run.exit_code == 2 and "once per set" in run.output
    run = runner.invoke(main, ["data", "compare", "african:test", *base])
    assert run.exit_code == 2 and "at least two sets" in run.output
    run = runner.invoke(
        main,
        ["data", "compare", "synthetic/generated:nosplit", "synthetic/generated", *base]
        + ["--source", str(tiny_sets["base"]), "--source", str(tiny_sets["near"])],
    )
    assert run.exit_code == 1 and "no split 'nosplit'" in run.output


REAL_SAMPLE = SHARED / "data" / "fetal_planes_db_sample"


@pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason="needs ../shared/data/fetal_planes_db_sample")
def test_the_real_spanish_sample_against_a_generated_set(tiny_sets, weights, tmp_path):  # noqa: F811
    result = compare_sets(
        ["spanish/es", "synthetic/generated"],
        [REAL_SAMPLE, tiny_sets["base"]],
        planes=PLANES2,
        per_plane=2,
        image_size=SIZE,
        weights=weights,
        cache_dir=tmp_path,
        bootstrap=0,
        log=lambda _: None,
    )
    spain = result["sets"][0]
    assert spain["label"] == "Spain" and spain["images"] == 100 and spain["source"] == REAL_SAMPLE.name
    assert spain["drawn_per_plane"] == {"Fetal brain": 2, "Fetal femur": 2}
    assert result["planes"]["overall"]["pairs"][0]["fid"] > 0
