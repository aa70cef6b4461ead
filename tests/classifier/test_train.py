"""The classifier trainer's trackers (``--report-to``): epoch metrics and the validation confusion matrix."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fulora_data.classifier import TrainConfig, train
from fulora_data.cli import main
from fulora_data.prepare import prepare
from fulora_data.samples import write_spanish_source


@pytest.fixture(scope="module")
def es(tmp_path_factory):
    root = tmp_path_factory.mktemp("es")
    source = write_spanish_source(root / "es", per_plane=4, test_per_plane=1, seed=1)
    return prepare("spanish", "es", source=source, cache_dir=root / "cache")["train"]


def tiny(tmp_path, **overrides) -> TrainConfig:
    values = {"validation_size": 5, "batch_size": 8, "epochs": 2, "image_cache_dir": str(tmp_path / "img")}
    return TrainConfig.preset("smoke", **{**values, **overrides})


def test_report_to_tensorboard_logs_epoch_metrics_and_the_confusion_matrix(es, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    summary = train(tiny(tmp_path), out, dataset=es, report_to="tensorboard", progress=False)
    events = [EventAccumulator(str(p.parent)).Reload() for p in (out / "logs").rglob("events.out.tfevents*")]
    scalars: dict[str, list[float]] = {}
    for event in events:
        for tag in event.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(s.value for s in event.Scalars(tag))
    for tag in ("train_loss", "train_accuracy", "validation_accuracy", "validation_loss", "learning_rate"):
        assert len(scalars[tag]) == 2, tag
    assert scalars["validation_accuracy"] == pytest.approx(
        [row["validation_accuracy"] for row in summary["history"]]
    )
    assert any("confusion_matrix" in tag for e in events for tag in e.Tags()["images"])
    texts = [tag for e in events for tag in e.Tags()["tensors"] if "confusion_matrix" in tag]
    assert texts  # the matrix as a table, by class name
    held_out = summary["images"]["validation"]
    table = [e for e in events if texts[0] in e.Tags()["tensors"]][0].Tensors(texts[0])[-1]
    rows = table.tensor_proto.string_val[0].decode().splitlines()[2:]
    assert sum(int(cell) for row in rows for cell in row.strip("|").split("|")[1:]) == held_out


def test_report_to_none_writes_no_logs(es, tmp_path):
    train(tiny(tmp_path, epochs=1), tmp_path / "none", dataset=es, report_to="none", progress=False)
    assert not (tmp_path / "none" / "logs").exists()


def test_an_unknown_tracker_exits_2_naming_the_flag(tmp_path):
    args = ["train", "classifier", "--report-to", "mlflow", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "--report-to" in result.output and "mlflow" in result.output
