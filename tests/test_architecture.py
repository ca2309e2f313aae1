"""The package's import graph: no cycles, and the command line is the top layer.

Every ``import`` statement is counted, the ones inside functions too: a cycle kept alive by a
function-level import is still a cycle for the reader.
"""

import ast
from pathlib import Path

import imagegs

ROOT = Path(imagegs.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The imagegs modules that ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # imagegs.x.y where y is a name in module imagegs.x
                t = t.rpartition(".")[0]
            if t.startswith("imagegs") and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def test_no_library_module_imports_the_cli():
    top = ("imagegs.cli", "imagegs.__main__")  # the command line and its ``python -m`` entry
    offenders = sorted(f"{a} imports {b}" for a, deps in _graph().items() if not a.startswith(top)
                       for b in deps if b == "imagegs.cli" or b.startswith("imagegs.cli."))
    assert not offenders, offenders


def test_no_import_cycles():
    graph = _graph()
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_the_graph_is_read():
    """The checks above see real edges (guards against a parser that finds nothing)."""
    graph = _graph()
    assert "imagegs.codec" in graph["imagegs.cli.codec"]
    assert "imagegs.renderer" in graph["imagegs.codec"]
    assert len(graph) > 30


def test_the_lazy_public_names_match_their_typing_imports():
    """``imagegs.__init__`` imports nothing at run time: ``_HOMES`` names each public name's module,
    and the ``TYPE_CHECKING`` imports (what type checkers and IDEs read) must say the same; every
    name resolves to the object of its home module."""
    import importlib

    tree = ast.parse((ROOT / "__init__.py").read_text())
    typing_block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    declared = {a.name: node.module for node in typing_block.body if isinstance(node, ast.ImportFrom)
                for a in node.names}
    assert declared == imagegs._HOMES
    assert sorted(imagegs.__all__) == sorted(declared)
    for name, home in declared.items():
        assert getattr(imagegs, name) is getattr(importlib.import_module(f"imagegs.{home}"), name)
