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
