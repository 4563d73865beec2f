"""The package's layers import downward only, and no modules import each other in a cycle.

Layers, lowest first: the base modules (errors, checks, files, version), ``measure``, ``core``,
``experiments``, ``views``, ``cli``. A module may import its own layer or any layer below it,
at module level or inside a function. Read from the source, so a lazy import counts too; an
import under ``if TYPE_CHECKING:`` (annotations only) does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "whisperkit"
LAYERS = ("base", "measure", "core", "experiments", "views", "cli")
BASE_MODULES = {"whisperkit._version", "whisperkit.checks", "whisperkit.errors", "whisperkit.files"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    """The layer's rank, or None for the package's front door (``__init__``, ``__main__``)."""
    if module in BASE_MODULES:
        return 0
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def imports_of(path: Path, modules: set[str]) -> list[tuple[str, int]]:
    """(imported whisperkit module, line) for every import in ``path``, however deep."""
    found = []
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            # the longest known module the name refers to (``from a.b import c`` may name module a.b.c)
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("whisperkit"):
                found.append((name, node.lineno))
                break
    return found


def _nodes(node: ast.AST):
    """Every node below ``node``, except inside ``if TYPE_CHECKING:`` (no dependency at run time)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
            yield from (n for orelse in child.orelse for n in _nodes(orelse))
            continue
        yield from _nodes(child)


def graph() -> dict[str, list[tuple[str, int]]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {
        module: [(target, line) for target, line in imports_of(path, modules) if target != module]
        for module, path in paths.items()
    }


def test_every_module_belongs_to_a_layer():
    stray = [m for m in graph() if layer_of(m) is None and m not in ("whisperkit", "whisperkit.__main__")]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"
    for layer in LAYERS[1:]:
        assert (PACKAGE / layer / "__init__.py").is_file()


def test_no_upward_import():
    upward = []
    for module, targets in graph().items():
        here = layer_of(module)
        if here is None:
            continue
        for target, line in targets:
            there = layer_of(target)
            if target == "whisperkit" or (there is not None and there > here):
                upward.append(f"{module} (line {line}) imports {target}: "
                              f"{LAYERS[here]} may not use {LAYERS[there] if there is not None else 'the package front door'}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycle():
    edges = {module: {target for target, _ in targets if not module.startswith(target + ".")}
             for module, targets in graph().items()}
    cycles = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(" -> ".join(path[path.index(module):] + [module]))
            return
        if module in done:
            return
        for target in sorted(edges.get(module, ())):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_a_function_level_import(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from whisperkit.views import plots\n")
    assert imports_of(source, {"whisperkit.views.plots", "whisperkit.views"}) == [("whisperkit.views.plots", 2)]


def test_no_module_is_too_long():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"modules over 450 lines: {long}"
