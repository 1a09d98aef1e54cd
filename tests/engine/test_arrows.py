"""The import graph points one way: the engine imports no array library and nothing above it; outside
backends/, no code names an adapter module (the registry's records are asked instead)."""

from __future__ import annotations

import ast
from pathlib import Path

from backends import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
ARRAY_LIBRARIES = {"numpy", "jax", "jaxlib", "torch", "cupy", "array_api_strict", "cupyx"}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_engine_imports_no_array_library_and_nothing_above_it():
    for path in sorted((ROOT / "engine").rglob("*.py")):
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in ARRAY_LIBRARIES | {"backends", "benchmarks", "arraygpt"}, f"{path.name} imports {name}"


def test_no_adapter_module_is_named_outside_backends():
    adapters = {r.module for r in BACKENDS.values()}
    for folder in ("engine", "benchmarks", "arraygpt"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            named = imports(path) & adapters
            assert not named, f"{path.relative_to(ROOT)} imports {named}"


def test_no_import_circle_among_the_top_level_imports_of_engine_backends_and_benchmarks():
    """Module-level imports only (an import inside a function runs late, on purpose)."""
    graph = {}
    for folder in ("engine", "backends", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            names = set()
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ImportFrom):
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
                    names.add(target)
                    names |= {f"{target}.{alias.name}" for alias in node.names}
                elif isinstance(node, ast.Import):
                    names |= {alias.name for alias in node.names}
            graph[module] = names
    graph = {m: {n for n in names if n in graph and n != m} for m, names in graph.items()}
    state = {}

    def visit(module, trail):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join(trail + [module])
        state[module] = "open"
        for target in sorted(graph[module]):
            visit(target, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])
