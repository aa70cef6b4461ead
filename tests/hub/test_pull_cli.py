"""Reading what fulora publishes: `fulora data pull`, `fulora model pull`, offline use, repo ids as inputs.

Everything goes through the real huggingface_hub and datasets clients and the stand-in Hub
(tests/hub_server.py). The in-process clients share one Hugging Face cache for the session, so each test
uses its own repository names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import datasets
import pytest
from classifier_fixtures import _train, sources  # noqa: F401  (module fixture)
from click.testing import CliRunner
from conftest import REPO_ROOT
from hub_exports import make_export
from huggingface_hub import ModelCard

from fulora_data.cli import main
from fulora_data.errors import ConfigError, DataError, SourceNotFoundError
from fulora_data.export import export
from fulora_data.hub import push_dataset, push_model
from fulora_data.hub_pull import (
    dataset_repo_id,
    is_repo_spec,
    load_repo_dataset,
    parse_repo_spec,
    pull_dataset,
    resolve_dataset,
    resolve_model,
)


def _unique(name: str) -> str:
    return f"fulora/{name}-{uuid.uuid4().hex[:8]}"


def _plain(dataset) -> list[dict]:
    return dataset.cast_column("image", datasets.Image(decode=False)).to_list()


def _json(output: str) -> dict:
    """The JSON document a --json command printed after any progress bars."""
    return json.loads(output[output.index('{\n  "') :])


def _one_line_error(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture
def pushed(hub_server, tmp_path):
    """A two-config export pushed and tagged v1.0.0; returns (repo, export folder, rows)."""
    repo = _unique("demo")
    folder = tmp_path / "export"
    rows = make_export(folder, configs={"a": {"train": 2, "test": 1}, "b": {"train": 1}})
    push_dataset(folder, repo, token=hub_server.token)
    return repo, folder, rows


def test_repo_specs_and_the_naming_rule(tmp_path):
    assert dataset_repo_id("hybrid") == "fulora/hybrid" and dataset_repo_id("x", org="me") == "me/x"
    assert parse_repo_spec("fulora/hybrid@v1.0.0") == ("fulora/hybrid", "v1.0.0")
    assert parse_repo_spec("fulora/hybrid") == ("fulora/hybrid", None)
    for bad in ("hybrid", "a/b/c", "fulora/", "/abs/path", "a/../b", "org/name@"):
        with pytest.raises(ConfigError, match="ORG/NAME"):
            parse_repo_spec(bad)
    (tmp_path / "org" / "name").mkdir(parents=True)
    os.chdir(tmp_path)
    try:  # an existing local path always wins over a repo id of the same spelling
        assert not is_repo_spec("org/name") and is_repo_spec("org/other@v1")
    finally:
        os.chdir(REPO_ROOT)


def test_pull_downloads_only_the_configs_asked_and_loads_offline(pushed, hub_server, tmp_path):
    repo, folder, rows = pushed
    local = tmp_path / "pulled"
    result = CliRunner().invoke(
        main, ["data", "pull", repo, "-c", "a", "--revision", "v1.0.0", "--local-dir", str(local)]
    )
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    files = [f for f in files if not f.startswith(".cache/")]
    assert files == [
        "README.md",
        "data/a/test-00000-of-00001.parquet",
        "data/a/train-00000-of-00002.parquet",
        "data/a/train-00001-of-00002.parquet",
        "fulora_export.json",
    ]
    assert f"(commit {hub_server.tags(repo)['v1.0.0']})" in result.output
    call = next(line for line in result.output.splitlines() if "load_dataset(" in line).split("ds = ")[1]
    globs = {s: f"{local}/data/a/{s}-*.parquet" for s in ("train", "test")}
    assert call == f"load_dataset('parquet', data_files={globs!r})"
    assert "resolves from the cache" not in result.output  # a --local-dir copy is not in the Hub cache
    # What a user on an offline machine runs: the printed call, with both offline switches and no Hub.
    code = f"from datasets import load_dataset; import json; ds = {call}; print(json.dumps(list(ds['train']['text'])))"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HOME": str(tmp_path / "empty-home"),
    }
    env.pop("HF_DATASETS_CACHE", None)
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [r["text"] for r in rows["a"]["train"]]


def test_repo_id_resolves_offline_from_the_cache_after_a_pull(pushed, hub_server, monkeypatch):
    repo, folder, rows = pushed
    pulled = pull_dataset(f"{repo}@v1.0.0", ["b"])
    assert pulled["configs"] == ["b"] and pulled["commit"] == hub_server.tags(repo)["v1.0.0"]
    served = len(hub_server.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_repo_dataset(f"{repo}@v1.0.0", "b")
    assert list(loaded["train"]["text"]) == [r["text"] for r in rows["b"]["train"]]
    assert len(hub_server.requests) == served  # nothing asked of the Hub
    # A config that was not pulled: say which command fetches it, never another config's rows.
    with pytest.raises(SourceNotFoundError, match=rf"fulora data pull {repo}@v1.0.0 -c a"):
        resolve_dataset(f"{repo}@v1.0.0", ["a"])
    # No config and no default in the card: refuse rather than guess.
    with pytest.raises(ConfigError, match="no default"):
        load_repo_dataset(f"{repo}@v1.0.0")


def test_offline_with_nothing_cached_says_to_pull_first(hub_server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = _unique("never-pulled")
    with pytest.raises(SourceNotFoundError, match=rf"run `fulora data pull {repo}@v2` on a machine"):
        resolve_dataset(f"{repo}@v2")
    result = CliRunner().invoke(main, ["data", "audit", f"{repo}@v2"])
    assert "fulora data pull" in _one_line_error(result)


def test_missing_repo_revision_config_and_bad_ids_are_one_sentence(pushed, hub_server):
    repo, _, _ = pushed
    runner = CliRunner()
    cases = {
        ("data", "pull", "fulora/nothing-here"): "no dataset repository 'fulora/nothing-here'",
        ("data", "pull", f"{repo}@v9.9.9"): f"{repo!r} has no revision 'v9.9.9'",
        ("data", "pull", repo, "-c", "zzz"): "has no config 'zzz'; it has a, b",
        ("data", "pull", "not-a-repo"): "got 'not-a-repo'",  # a bad value: exit 2
        ("model", "pull", "a/b/c"): "got 'a/b/c'",
        ("model", "pull", "fulora/no-model"): "no model repository 'fulora/no-model'",
    }
    for args, message in cases.items():
        line = _one_line_error(runner.invoke(main, list(args)), code=2 if message.startswith("got") else 1)
        assert message in line, (args, line)


def test_a_model_repo_that_is_not_a_fulora_model_says_what_it_is(hub_server, tmp_path):
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# A text model\n")
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    repo = _unique("bert")
    push_model(folder, repo, token=hub_server.token, tag="v1")
    with pytest.raises(
        DataError, match=r"is a bert model \(config.json\), not made by fulora, not a fulora classifier"
    ):
        resolve_model(f"{repo}@v1", kind="classifier")
    assert (resolve_model(f"{repo}@v1") / "config.json").is_file()  # any kind: just the folder
    result = CliRunner().invoke(main, ["model", "pull", f"{repo}@v1"])
    assert result.exit_code == 0 and "pulled unknown" in result.output


# ---------------------------------------------------------------- fulora's own commands on repo ids
def test_evaluate_and_train_and_audit_by_repo_id(hub_server, sources, tmp_path):  # noqa: F811
    pytest.importorskip("torch")
    # A classifier trained from a published hybrid, by repo id...
    hybrid = _unique("hybrid")
    export(
        "hybrid",
        ["es1150-syn5000"],
        tmp_path / "hybrid",
        cache_dir=sources["cache"],
        real_config="es",
        real_source=sources["spanish"],
        synthetic_source=sources["synthetic"],
        verify_checksum=False,
        synthetic_per_plane=2,
    )
    push_dataset(tmp_path / "hybrid", hybrid, token=hub_server.token)
    cache = ["--cache-dir", str(sources["cache"])]
    _train(["--train-set", "HB", "--data", f"{hybrid}@v1.0.0/es1150-syn5000", *cache], tmp_path / "hb")
    config = json.loads((tmp_path / "hb" / "model" / "config.json").read_text())
    published = load_repo_dataset(f"{hybrid}@v1.0.0", "es1150-syn5000")
    assert config["images"] == {"train": len(published["train"]), "validation": len(published["validation"])}

    # ...pushed, then evaluated by repo id gives the local checkpoint's numbers.
    model = _unique("resnet18-hb")
    push_model(tmp_path / "hb" / "model", model, token=hub_server.token, tag="v1")
    for path, content in hub_server.files(model, "v1", "model").items():  # nothing local in the model repo
        assert (
            str(sources["cache"].parent).encode() not in content and str(tmp_path).encode() not in content
        ), path
    common = [
        "--data",
        "african:test",
        "--source",
        str(sources["african"]),
        "--cache-dir",
        str(sources["cache"]),
    ]
    by_path = CliRunner().invoke(main, ["evaluate", "--model", str(tmp_path / "hb"), *common, "--json"])
    by_repo = CliRunner().invoke(main, ["evaluate", "--model", f"{model}@v1", *common, "--json"])
    assert by_path.exit_code == 0 and by_repo.exit_code == 0, by_repo.output
    local, remote = _json(by_path.output), _json(by_repo.output)
    assert remote["accuracy"] == local["accuracy"] and remote["confusion_matrix"] == local["confusion_matrix"]
    assert remote["per_country"] == local["per_country"]
    # The results go to the card's model-index in a new commit on main; the release tag stays put.
    tagged = hub_server.tags(model, "model")["v1"]
    pushed = CliRunner(env={"HF_TOKEN": hub_server.token}).invoke(
        main, ["evaluate", "--model", f"{model}@v1", *common, "--push-results"]
    )
    assert pushed.exit_code == 0, pushed.output
    assert hub_server.tags(model, "model") == {"v1": tagged} and hub_server.head(model, "model") != tagged
    card = ModelCard(hub_server.files(model, "main", "model")["README.md"].decode())
    accuracy = {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert accuracy[("all", "accuracy")] == pytest.approx(remote["accuracy"], abs=1e-6)
    assert accuracy[("Ghana", "accuracy")] == pytest.approx(
        remote["per_country"]["Ghana"]["accuracy"], abs=1e-6
    )
    assert "model-index:" not in hub_server.files(model, "v1", "model")["README.md"].decode()
    missing = CliRunner().invoke(main, ["evaluate", "--model", f"{model}@v7", *common])
    assert f"{model!r} has no revision 'v7'" in _one_line_error(missing)
    not_classifier = CliRunner().invoke(
        main, ["evaluate", "--model", f"{model}@v1", "--data", f"{hybrid}@v1.0.0/nope:test"]
    )
    assert "has no config 'nope'" in _one_line_error(not_classifier)

    # Test data by repo id too: ORG/NAME@REV/CONFIG:SPLIT.
    on_hub = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            f"{model}@v1",
            "--data",
            f"{hybrid}@v1.0.0/es1150-syn5000:validation",
            "--json",
        ],
    )
    assert on_hub.exit_code == 0, on_hub.output
    assert _json(on_hub.output)["n"] == len(published["validation"])

    # The published hybrid can be audited by repo id too.
    audited = CliRunner().invoke(
        main, ["data", "audit", f"{hybrid}@v1.0.0", "-c", "es1150-syn5000", "--json"]
    )
    assert audited.exit_code == 0, audited.output
    report = _json(audited.output)
    assert report["audit"]["images"] == len(published["train"]) + len(published["validation"])


def test_streaming_and_hf_paths_to_one_split_work_as_the_readme_says(pushed, tmp_path):
    repo, folder, rows = pushed
    streamed = datasets.load_dataset(repo, "a", revision="v1.0.0", streaming=True)
    assert [row["text"] for row in streamed["train"]] == [r["text"] for r in rows["a"]["train"]]
    one = datasets.load_dataset(
        "parquet",
        data_files=f"hf://datasets/{repo}@v1.0.0/data/a/test-*.parquet",
        cache_dir=str(tmp_path / "cache"),
    )
    assert list(one["train"]["text"]) == [r["text"] for r in rows["a"]["test"]]


def test_adapter_and_pipeline_repos_resolve_by_kind(hub_server, tmp_path):
    import struct

    from fulora_data.hub_pull import model_kind

    def safetensors(path, keys):
        header = json.dumps(
            {
                k: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
                for i, k in enumerate(keys)
            }
        )
        path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 4 * len(keys))

    kohya = tmp_path / "kohya"
    kohya.mkdir()
    safetensors(
        kohya / "fu_lora_abdomen.safetensors", ["lora_unet_mid_block_attentions_0_proj_in.lora_down.weight"]
    )
    (kohya / "README.md").write_text("---\nlicense: mit\n---\n# A kohya LoRA\n")
    pipeline = tmp_path / "pipe"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text("{}")
    safetensors(pipeline / "unet.safetensors", ["conv_in.weight"])
    (pipeline / "README.md").write_text("---\nlicense: mit\n---\n# A pipeline\n")
    assert (model_kind(kohya), model_kind(pipeline)) == ("adapter", "pipeline")
    push_model(kohya, "fulora/kohya-lora", token=hub_server.token, tag="v1")
    push_model(pipeline, "fulora/tiny-pipe", token=hub_server.token)
    adapter = resolve_model("fulora/kohya-lora@v1", kind="adapter")
    assert (adapter / "fu_lora_abdomen.safetensors").read_bytes() == (
        kohya / "fu_lora_abdomen.safetensors"
    ).read_bytes()
    assert (resolve_model("fulora/tiny-pipe", kind="pipeline") / "model_index.json").is_file()
    with pytest.raises(DataError, match="'fulora/tiny-pipe' is a diffusers pipeline, not a LoRA adapter"):
        resolve_model("fulora/tiny-pipe", kind="adapter")
    assert resolve_model(kohya, kind="classifier") == kohya  # a local path is returned as it is
