"""The layering: ``worldmodel`` <- ``envs`` <- ``agents`` <- ``experiments``; nothing imports upward
(statically, lazily inside a function, or by a module-path string such as ``"agents.train"``), and no
two modules import each other, directly or around a loop. ``pytest tests/test_layering.py`` checks it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("worldmodel", "envs", "agents", "experiments")
MODULE_STRING = re.compile(rf"^(?:{'|'.join(LAYERS)})(?:\.[A-Za-z_]\w*)+$")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` names: imports anywhere in its body and module-path strings."""

    def resolve(target: str) -> str | None:
        parts = target.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        return ".".join(parts) or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets += [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value):
            targets.append(node.value)
    found = {resolved for t in targets if (resolved := resolve(t)) and resolved != name}
    if path.name == "__init__.py":  # a package re-exporting its own modules is not a cycle
        found = {m for m in found if not m.startswith(name + ".")}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return sorted(
        f"{a} -> {b}" for a, targets in graph.items() for b in targets if rank[b.split(".")[0]] > rank[a.split(".")[0]]
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import agents.train\n", ["worldmodel.fake -> agents.train"]),
        (
            "def f():\n    from experiments.pipeline import stages\n",
            ["worldmodel.fake -> experiments.pipeline", "worldmodel.fake -> experiments.pipeline.stages"],
        ),
        ('MODULE = "agents.evaluate"\n', ["worldmodel.fake -> agents.evaluate"]),
        ("from worldmodel.frames import FrameSpec\n", []),
    ],
)
def test_the_check_finds_static_lazy_and_string_imports(source, expected, tmp_path):
    path = tmp_path / "fake.py"
    path.write_text(source)
    known = set(project_modules())
    graph = {"worldmodel.fake": imported_modules("worldmodel.fake", path, known)}
    assert upward_imports(graph) == expected


def test_the_check_finds_a_cycle():
    assert cycles({"envs.a": {"envs.b"}, "envs.b": {"envs.c"}, "envs.c": {"envs.a"}, "envs.d": {"envs.a"}}) == [
        ["envs.a", "envs.b", "envs.c"]
    ]
