"""The package's import graph against ``docs/architecture.md``: no loops, no upward import, only the listed
arrows between task rooms, and one line of the map per room.

Every ``import`` counts, including those inside functions (a lazy import is still a dependency), and
importing ``a.b.c`` counts as importing the package ``a.b`` too (its ``__init__`` runs first) unless the
importer is inside ``a.b``. The layer order, the rooms and the arrows between task rooms are read from the
doc's tables, so the doc is the rule and this file only checks it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fulora_data"
DOC = ROOT / "docs" / "architecture.md"


def _doc_tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table of the doc, as rows of cells (header and rule rows dropped)."""
    tables, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            tables.append([row for row in rows[2:]])
            rows = []
    return tables


def _room(cell: str) -> str:
    """``fulora_data.x`` for a room cell `` `x` `` or `` `x/` ``."""
    match = re.fullmatch(r"`([\w]+)/?`", cell)
    assert match, f"docs/architecture.md: {cell!r} is not a room (`name` or `name/`)"
    return f"fulora_data.{match[1]}"


def read_doc(text: str) -> tuple[list[str], dict[str, str], set[tuple[str, str]]]:
    """``(layers lowest first, room -> layer, allowed arrows between task rooms)`` from the doc."""
    order = re.search(r"Layers, lowest first: (.+?)\.", text, re.S)
    assert order, "docs/architecture.md must say 'Layers, lowest first: ...'"
    layers = re.findall(r"\*\*(\w+)\*\*", order[1])
    tables = _doc_tables(text)
    rooms = {_room(row[0]): row[1] for row in tables[0]}
    unknown = sorted({layer for layer in rooms.values() if layer not in layers})
    assert not unknown, f"docs/architecture.md: layers {unknown} are not in the layer order"
    arrows = {(_room(row[0]), _room(row[1])) for row in tables[1]}
    return layers, {"fulora_data": "base", **rooms}, arrows


LAYER_ORDER, ROOMS, TASK_ARROWS = read_doc(DOC.read_text(encoding="utf-8"))
RANK = {name: rank for rank, name in enumerate(LAYER_ORDER)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def room_of(module: str) -> str:
    """The room a module is in: ``fulora_data.lora.train`` is in ``fulora_data.lora``."""
    room = ".".join(module.split(".")[:2])
    if room not in ROOMS:
        raise AssertionError(
            f"{module} is in no room: add a line for it to docs/architecture.md's room table"
        )
    return room


def layer_of(module: str) -> str:
    return ROOMS[room_of(module)]


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The fulora modules a module imports (``from a import b`` counts ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("fulora_data") and name != module:
                found.add(name)
                found.update(parent_packages(name, module))
    return found


def parent_packages(name: str, importer: str) -> list[str]:
    """The packages whose ``__init__`` importing ``name`` runs, beyond those ``importer`` is already in."""
    parts = name.split(".")
    parents = [".".join(parts[:end]) for end in range(1, len(parts))]
    return [p for p in parents if not (importer == p or importer.startswith(p + "."))]


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {module: imports_of(path, module, known) for module, path in found.items()}


def test_every_module_is_in_a_room_of_the_map_and_every_room_exists():
    found = modules()
    for module in found:
        room_of(module)
    missing = sorted(room for room in ROOMS if room not in found)
    assert not missing, f"docs/architecture.md lists rooms that do not exist: {missing}"


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in graph().items()
        for target in sorted(targets)
        if RANK[layer_of(target)] > RANK[layer_of(module)]
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_loops():
    cycle = find_cycle(graph())
    assert cycle is None, "import loop: " + " -> ".join(cycle)


def test_task_rooms_import_each_other_only_along_the_listed_arrows():
    found = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if layer_of(module) == layer_of(target) == "tasks"
        and room_of(module) != room_of(target)
        and (room_of(module), room_of(target)) not in TASK_ARROWS
    )
    assert not found, "arrows between task rooms that docs/architecture.md does not list:\n" + "\n".join(
        found
    )


def test_the_checks_catch_a_loop_an_upward_import_and_a_parent_package():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert RANK[layer_of("fulora_data.builders.hybrid")] < RANK[layer_of("fulora_data.prepare")]
    assert layer_of("fulora_data.lora.train") == "tasks" and layer_of("fulora_data.cli.lora") == "cli"
    edges = graph()
    assert "fulora_data.builders.build" in edges["fulora_data.builders.hybrid"]
    assert "fulora_data.pixels" in edges["fulora_data.generated"]
    # `from fulora_data.classifier.predict import ...` runs classifier/__init__ as well
    assert {"fulora_data.classifier.predict", "fulora_data.classifier"} <= edges["fulora_data.evaluation.run"]
    assert parent_packages("fulora_data.compare.sets", "fulora_data.compare.run") == []
    assert parent_packages("fulora_data.compare.sets", "fulora_data.cli.compare") == ["fulora_data.compare"]
    with pytest.raises(AssertionError, match="in no room"):
        layer_of("fulora_data_other")
    with pytest.raises(AssertionError, match="in no room"):
        layer_of("fulora_data.attic.old")
    layers, rooms, arrows = read_doc(
        "Layers, lowest first: **base**, **tasks**.\n\n| room | layer | what |\n|---|---|---|\n"
        "| `io` | base | x |\n| `lora/` | tasks | y |\n\n| from | to | why |\n|---|---|---|\n"
        "| `lora/` | `io` | z |\n"
    )
    assert layers == ["base", "tasks"]
    assert rooms == {"fulora_data": "base", "fulora_data.io": "base", "fulora_data.lora": "tasks"}
    assert arrows == {("fulora_data.lora", "fulora_data.io")}


def test_datasets_private_hooks_exist(tmp_path):
    """The private ``datasets`` parts listed in ``fulora_data.datasets_internals`` are still there."""
    import datasets

    from fulora_data import datasets_internals as hf

    for owner, name in hf.OVERRIDDEN_HOOKS:
        assert callable(getattr(owner, name, None)), f"datasets.{owner.__name__}.{name} is gone"
    table = datasets.Dataset.from_dict({"x": [1, 2, 3]})
    assert hf.fingerprint(table) and hf.estimate_nbytes(table) > 0
    assert str(hf.set_split(table.select([0]), "validation").split) == "validation"
    builder = datasets.load_dataset_builder(
        "json", data_files={"train": str(_json(tmp_path))}, cache_dir=str(tmp_path)
    )
    assert hf.cache_root(builder) == str(tmp_path) and hf.output_dir(builder).startswith(str(tmp_path))
    assert hf.estimate_nbytes(table.select([])) == 0


def _json(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('{"x": 1}\n')
    return path
