"""Reading predictions CSVs: every accepted form and every refused one."""

from __future__ import annotations

import numpy as np
import pytest

from fulora_data.errors import ConfigError, DataError, SourceNotFoundError
from fulora_data.evaluation import read_predictions, score
from fulora_data.taxonomy import PLANES, PLANES_WITH_CERVIX


def _write(tmp_path, text: str, name: str = "preds.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_names_aliases_and_indices_read_to_indices(tmp_path):
    path = _write(
        tmp_path,
        "reference,prediction,country\n"
        "Fetal abdomen,abdomen,Ghana\n"
        "fetal_brain,0,Ghana\n"
        "3,Fetal femur,Malawi\n"
        "thorax,other,Malawi\n",
    )
    data = read_predictions(path)
    assert data["label_names"] == list(PLANES)
    assert data["references"] == [1, 2, 3, 4]
    assert data["predictions"] == [1, 0, 3, 0]
    assert data["countries"] == ["Ghana", "Ghana", "Malawi", "Malawi"]
    assert data["probabilities"] is None and data["patient_ids"] is None


def test_probability_columns_in_any_order_and_spelling(tmp_path):
    path = _write(
        tmp_path,
        "\ufeffprediction,prob_thorax,reference,prob_Other,prob_fetal_abdomen,prob_Fetal brain,prob_femur,patient_id\n"
        "1,0.1,1,0.1,0.6,0.1,0.1,p1\n"
        "2,0.0,2,0.2,0.0,0.8,0.0,p2\n",
    )
    data = read_predictions(path)
    # Columns are reordered to label order: Other, abdomen, brain, femur, thorax.
    np.testing.assert_allclose(data["probabilities"], [[0.1, 0.6, 0.1, 0.1, 0.1], [0.2, 0.0, 0.8, 0.0, 0.0]])
    assert data["patient_ids"] == ["p1", "p2"]


def test_cervix_makes_six_classes(tmp_path):
    data = read_predictions(_write(tmp_path, "reference,prediction\nMaternal cervix,5\nbrain,cervix\n"))
    assert data["label_names"] == list(PLANES_WITH_CERVIX)
    assert data["references"] == [5, 2] and data["predictions"] == [5, 5]


def test_rounded_probabilities_are_rescaled(tmp_path):
    path = _write(
        tmp_path,
        "reference,prediction,prob_Other,prob_abdomen,prob_brain,prob_femur,prob_thorax\n"
        "1,1,0.333,0.334,0.333,0,0\n"
        "2,2,0,0,0.9995,0,0\n",
    )
    probs = read_predictions(path)["probabilities"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(probs[1], [0, 0, 1, 0, 0])


def test_probabilities_not_summing_to_one_are_refused(tmp_path):
    path = _write(
        tmp_path,
        "reference,prediction,prob_Other,prob_abdomen,prob_brain,prob_femur,prob_thorax\n"
        "1,1,0.1,0.6,0.1,0.1,0.1\n"
        "\n"
        "2,2,0.5,0.0,2.0,0.0,0.0\n",
    )
    with pytest.raises(DataError) as err:
        read_predictions(path)
    message = str(err.value)
    assert str(path) in message and "line 4" in message and "sum to 2.5" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reference,prediction\nbrain,Fetal kidney\n", "line 2 column 'prediction' is 'Fetal kidney'"),
        ("reference,prediction\n7,brain\n", "line 2 column 'reference' is label index '7', outside"),
        ("reference,prediction\n-1,brain\n", "label index '-1'"),
        ("reference,prediction\nbrain,\n", "line 2 column 'prediction' is empty"),
        ("reference,prediction,prob_Other\nbrain,brain,1\n", "no column 'prob_Fetal abdomen'"),
        ("reference,prediction,prob_kidney\nbrain,brain,1\n", "column 'prob_kidney' names no plane"),
        (
            "reference,prediction,prob_Other,prob_abdomen,prob_brain,prob_femur,prob_thorax\nbrain,brain,0,0,x,0,0\n",
            "column 'prob_brain' is 'x', not a number",
        ),
        ("reference,country\nbrain,Ghana\n", "has no column 'prediction'"),
        ("prediction\nbrain\n", "has no column 'reference'"),
        ("reference,prediction\n", "has no rows: the test set is empty"),
        ("", "is empty"),
        ("reference,prediction,country\nbrain,brain,\n", "column 'country' is empty"),
        ("reference,prediction\nbrain,brain,extra\n", "line 2 has 3 cells for 2 columns"),
    ],
)
def test_bad_csv_names_file_line_column_and_value(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_predictions(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(SourceNotFoundError, match="nope.csv"):
        read_predictions(tmp_path / "nope.csv")


def test_six_probability_columns_for_five_class_labels_is_a_config_error(tmp_path):
    # A CSV from a six-class model scored against a five-class label set.
    data = read_predictions(
        _write(
            tmp_path,
            "reference,prediction,prob_Other,prob_abdomen,prob_brain,prob_femur,prob_thorax,prob_cervix\n"
            "1,1,0,1,0,0,0,0\n2,2,0,0,1,0,0,0\n",
        )
    )
    assert data["label_names"] == list(PLANES_WITH_CERVIX)
    with pytest.raises(ConfigError, match="6 columns but the model has 5 classes"):
        score(
            data["references"], data["predictions"], label_names=PLANES, probabilities=data["probabilities"]
        )
