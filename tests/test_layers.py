"""The package's import graph: no loops, and no module imports a module of a higher layer.

Every ``import`` counts, including those inside functions (a lazy import is still a dependency). The layer
table is the one in ``docs/architecture.md``; packages that do not exist yet simply do not appear.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fulora_data"

# Lowest layer first. A module belongs to the most specific prefix listed; it may import its own layer and
# the layers below, never a layer above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "fulora_data",
            "fulora_data.errors",
            "fulora_data.devices",
            "fulora_data.io",
            "fulora_data.taxonomy",
            "fulora_data.pixels",
            "fulora_data.archives",
            "fulora_data.datasets_internals",
            "fulora_data.adapter",
            "fulora_data.generated",
            "fulora_data.tiny_sd",
            "fulora_data.checkpoint",
            "fulora_data.splits",
            "fulora_data.presets",
        ),
    ),
    ("builders", ("fulora_data.builders",)),
    (
        "datasets",
        (
            "fulora_data.prepare",
            "fulora_data.cards",
            "fulora_data.export",
            "fulora_data.hub",
            "fulora_data.hub_pull",
            "fulora_data.samples",
        ),
    ),
    (
        "tasks",
        (
            "fulora_data.audit",
            "fulora_data.classifier",
            "fulora_data.evaluation",
            "fulora_data.lora",
            "fulora_data.generation",
            "fulora_data.compare",
        ),
    ),
    ("workflows", ("fulora_data.study", "fulora_data.demo", "fulora_data.doctor")),
    ("cli", ("fulora_data.cli",)),
]
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    best, best_len = None, -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            matches = module == prefix or (prefix != "fulora_data" and module.startswith(prefix + "."))
            if matches and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS here and in docs/architecture.md")
    return best


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
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {module: imports_of(path, module, known) for module, path in found.items()}


def test_every_module_has_a_layer():
    for module in modules():
        layer_of(module)


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


def test_the_checks_catch_a_loop_and_an_upward_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert RANK[layer_of("fulora_data.builders.hybrid")] < RANK[layer_of("fulora_data.prepare")]
    assert layer_of("fulora_data.lora.train") == "tasks" and layer_of("fulora_data.cli.lora") == "cli"
    edges = graph()
    assert "fulora_data.builders.build" in edges["fulora_data.builders.hybrid"]
    assert "fulora_data.pixels" in edges["fulora_data.generated"]
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("fulora_data_other")


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
