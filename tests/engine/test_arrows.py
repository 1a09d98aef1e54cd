"""The import graph points one way: the engine imports no array library and nothing above it; outside
backends/, no code names an adapter module (the registry's records are asked instead)."""

from __future__ import annotations

import ast
from pathlib import Path

from arraygpt.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("engine", "backends", "benchmarks", "arraygpt")  # at the top of the repository; installed under arraygpt


def installed_name(path: Path) -> str:
    """engine/layers.py -> 'arraygpt.engine.layers', arraygpt/cli.py -> 'arraygpt.cli' (pyproject's package-dir)."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    return module if module.split(".")[0] == "arraygpt" else f"arraygpt.{module}"
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
            above = name.split(".")[0] == "arraygpt" and not (name + ".").startswith("arraygpt.engine.")
            assert name.split(".")[0] not in ARRAY_LIBRARIES and not above, f"{path.name} imports {name}"


def test_the_project_is_imported_only_under_its_installed_name():
    """`engine`, `backends` and `benchmarks` are folders, not installed modules: a module imported under both
    names would run twice, with two of every class (an error raised as one and caught as the other)."""
    for folder in (*FOLDERS, "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            bare = {n for n in imports(path) if n.split(".")[0] in ("engine", "backends", "benchmarks")}
            assert not bare, f"{path.relative_to(ROOT)} imports {sorted(bare)}: import arraygpt.{sorted(bare)[0]}"


def test_no_adapter_module_is_named_outside_backends():
    adapters = {r.module for r in BACKENDS.values()}
    for folder in ("engine", "benchmarks", "arraygpt"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            named = {n for n in imports(path) if n in adapters}
            assert not named, f"{path.relative_to(ROOT)} imports {named}"


def import_graph(folders=FOLDERS) -> dict[str, set[str]]:
    """module -> the project's modules it imports, imports inside functions included, and each package a
    submodule it imports lives in (importing a.b.c runs a/__init__ and a/b/__init__ first)."""
    graph = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = installed_name(path)
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            names = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
                    names.add(target)
                    names |= {f"{target}.{alias.name}" for alias in node.names}
                elif isinstance(node, ast.Import):
                    names |= {alias.name for alias in node.names}
            # a module's own packages are running already when it is imported: only an explicit import of one
            # (from . import NAME) is an arrow to it
            parents = {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 1)}
            graph[module] = names | {p for p in parents if not module.startswith(p + ".")}
    return {m: {n for n in names if n in graph and n != m} for m, names in graph.items()}


def test_no_import_circle_anywhere_imports_inside_functions_included():
    """An import inside a function runs late, but it is an arrow all the same: the layers hold only if no
    module reaches back to one that imports it, whenever the import runs."""
    graph = import_graph()
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


def test_the_records_import_nothing_else_of_benchmarks():
    graph = import_graph()
    for module in (m for m in graph if m.startswith("arraygpt.benchmarks.records")):
        above = {n for n in graph[module] if n.startswith("arraygpt.benchmarks.")
                 and not n.startswith("arraygpt.benchmarks.records")}
        assert not above, f"{module} imports {sorted(above)}"


# Libraries a module may import inside a function: optional ones (extras, peers, a GPU's), which a process that
# does not use them must not need; and the adapters the registry loads by name.
OPTIONAL_LIBRARIES = {"torch", "jax", "jaxlib", "cupy", "cupyx", "nvmath", "llama_cpp", "gguf", "onnxruntime", "onnx",
                      "onnxscript", "transformers", "matplotlib", "huggingface_hub", "tiktoken", "pynvml",
                      "array_api_strict", "fcntl"}


def test_imports_inside_functions_are_only_of_optional_libraries():
    """engine/, backends/ and benchmarks/ import their own modules and the core dependencies at the top, where a
    reader sees them; inside a function only an optional library (or an adapter of one) is imported. The CLI
    (arraygpt/) keeps its commands' imports inside them: `arraygpt --help` then loads no array library."""
    found = []
    for folder in ("engine", "backends", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for function in ast.walk(ast.parse(path.read_text())):
                if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(function):
                    if isinstance(node, ast.Import):
                        names = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom):
                        names = [("." * node.level) + (node.module or "")]
                    else:
                        continue
                    for name in names:
                        adapter = folder == "backends" and getattr(node, "level", 0) and any(
                            lib in (node.module or "") or any(lib in a.name for a in node.names) for lib in ("jax", "cupy"))
                        if name.split(".")[0] not in OPTIONAL_LIBRARIES and not adapter:
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not found, "imports inside functions of non-optional modules:\n" + "\n".join(found)
