"""Read a classifier's predictions from a CSV file, checking every cell.

Format (UTF-8, comma-separated, header row, a byte-order mark is tolerated):

* ``reference``, ``prediction`` (required): a plane name in any spelling ``taxonomy.canonical_plane``
  accepts (``Fetal brain``, ``brain``, ``fetal_brain``) or a fulora label index (``2``).
* ``prob_<plane>`` (optional): one column per class of the model, e.g. ``prob_Other``, ``prob_Fetal
  abdomen`` (any spelling of the plane). If present there must be one for every class. A row must sum to 1
  within ``metrics.PROBABILITY_TOLERANCE`` (rounding) and is then rescaled to sum exactly to 1; a row
  further off is refused, not normalised, because it means logits or a missing class column.
* ``country`` (optional): adds per-country results. ``patient_id`` (optional): lets bootstrap intervals
  resample patients. ``image_id`` (optional, unique): joins the rows to a test set (``evaluate_predictions``
  with ``data_spec``).

The model's classes are the study's five planes (``taxonomy.PLANES``), or six with ``Maternal cervix``
when the probability columns include it or, without probability columns, when a label is the cervix.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from fulora_data.errors import DataError
from fulora_data.taxonomy import CERVIX, PLANES, PLANES_WITH_CERVIX, canonical_plane

REQUIRED_COLUMNS: tuple[str, ...] = ("reference", "prediction")
PROB_PREFIX = "prob_"
_INDEX = re.compile(r"^[+-]?\d+$")


def _parse_label(cell: str, where: str) -> int | str:
    text = cell.strip()
    if not text:
        raise DataError(f"{where} is empty")
    if _INDEX.match(text):
        return int(text)
    try:
        return canonical_plane(text)
    except DataError:
        raise DataError(
            f"{where} is {cell!r}, not a plane of the taxonomy ({', '.join(PLANES_WITH_CERVIX)}) "
            "or a label index"
        ) from None


def _probability_columns(path: Path, header: list[str]) -> tuple[list[str], list[str]] | None:
    """Return ``(label_names, columns in label order)`` from the ``prob_`` columns, or None."""
    columns = [c for c in header if c.startswith(PROB_PREFIX)]
    if not columns:
        return None
    by_plane: dict[str, str] = {}
    for column in columns:
        try:
            plane = canonical_plane(column[len(PROB_PREFIX) :])
        except DataError:
            raise DataError(
                f"{path}: column {column!r} names no plane of the taxonomy ({', '.join(PLANES_WITH_CERVIX)})"
            ) from None
        if plane in by_plane:
            raise DataError(f"{path}: columns {by_plane[plane]!r} and {column!r} are both for {plane!r}")
        by_plane[plane] = column
    names = list(PLANES_WITH_CERVIX if CERVIX in by_plane else PLANES)
    missing = [f"{PROB_PREFIX}{plane}" for plane in names if plane not in by_plane]
    if missing:
        raise DataError(f"{path} has probability columns but no column {missing[0]!r}")
    return names, [by_plane[plane] for plane in names]


def read_predictions(path: str | Path) -> dict:
    """Read and check a predictions CSV (format: module docstring).

    Args:
        path: The CSV file.

    Returns:
        ``{"path", "image_ids", "label_names", "references", "predictions"}`` (label indices as lists of ints),
        ``"probabilities"`` (an ``(n, C)`` float array, or None), ``"countries"`` and ``"patient_ids"``
        (lists of strings, or None).

    Raises:
        SourceNotFoundError: If the file does not exist.
        DataError: If the file is empty, lacks a column, or a cell is not a valid label or probability;
            the message names the file, line, column and value.
    """
    from fulora_data.errors import SourceNotFoundError
    from fulora_data.evaluation.metrics import check_probabilities

    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"predictions file {str(path)!r} does not exist")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path} is empty; expected a header with columns reference,prediction")
            header = [h.strip() for h in header]
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not a UTF-8 CSV (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from None
    except csv.Error as err:
        raise DataError(f"{path} is not a readable CSV ({err})") from None
    for column in REQUIRED_COLUMNS:
        if column not in header:
            raise DataError(f"{path} has no column {column!r}; its columns are {', '.join(header)}")
    if not rows:
        raise DataError(f"{path} has no rows: the test set is empty")
    col = {name: i for i, name in enumerate(header)}
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"{path} line {line} has {len(row)} cells for {len(header)} columns")

    raw = {
        column: [
            _parse_label(row[col[column]], f"{path} line {line} column {column!r}") for line, row in rows
        ]
        for column in REQUIRED_COLUMNS
    }
    prob_spec = _probability_columns(path, header)
    if prob_spec is not None:
        label_names, prob_columns = prob_spec
    else:
        uses_cervix = any(v == CERVIX or v == len(PLANES) for values in raw.values() for v in values)
        label_names, prob_columns = list(PLANES_WITH_CERVIX if uses_cervix else PLANES), []

    labels: dict[str, list[int]] = {}
    for column, values in raw.items():
        labels[column] = []
        for (line, row), value in zip(rows, values, strict=True):
            where = f"{path} line {line} column {column!r}"
            if isinstance(value, int):
                if not 0 <= value < len(label_names):
                    raise DataError(
                        f"{where} is label index {row[col[column]].strip()!r}, outside the model's classes "
                        f"0-{len(label_names) - 1} ({', '.join(label_names)})"
                    )
                labels[column].append(value)
            elif value not in label_names:
                raise DataError(f"{where} is {value!r}, not a class of the model ({', '.join(label_names)})")
            else:
                labels[column].append(label_names.index(value))

    probabilities = None
    if prob_columns:
        values = np.empty((len(rows), len(prob_columns)), dtype=np.float64)
        for r, (line, row) in enumerate(rows):
            for c, column in enumerate(prob_columns):
                cell = row[col[column]].strip()
                try:
                    values[r, c] = float(cell)
                except ValueError:
                    raise DataError(
                        f"{path} line {line} column {column!r} is {cell!r}, not a number"
                    ) from None
        probabilities = check_probabilities(
            values,
            len(rows),
            label_names,
            where=str(path),
            row_numbers=[line for line, _ in rows],
            row_word="line",
        )

    def optional(column: str) -> list[str] | None:
        if column not in col:
            return None
        out = []
        for line, row in rows:
            cell = row[col[column]].strip()
            if not cell:
                raise DataError(f"{path} line {line} column {column!r} is empty")
            out.append(cell)
        return out

    image_ids = optional("image_id")
    if image_ids is not None and len(set(image_ids)) != len(image_ids):
        seen: set[str] = set()
        repeated = sorted({i for i in image_ids if i in seen or seen.add(i)})
        raise DataError(
            f"{path}: {len(repeated)} image ids appear more than once ({len(image_ids) - len(set(image_ids))} "
            f"extra rows; first: {repeated[0]!r}); each test image must be predicted once"
        )

    return {
        "path": str(path),
        "image_ids": image_ids,
        "label_names": label_names,
        "references": labels["reference"],
        "predictions": labels["prediction"],
        "probabilities": probabilities,
        "countries": optional("country"),
        "patient_ids": optional("patient_id"),
    }
