"""The floor plan of vdr_app drawn from its imports: units, levels and import circles.

A unit is a top-level module (`vdr_app/pdf.py` -> `pdf`) or a top-level package
(`vdr_app/models/...` -> `models`). Every import of another vdr_app unit counts, including
imports inside functions (a lazy import is still a dependency), except those under
`if TYPE_CHECKING:` (annotations only, never run). A unit's level is 0 when it imports no other
unit, else one more than the highest level it imports; the units of an import circle share a level.

    python scripts/import_layers.py            # table of levels, then circles
    python scripts/import_layers.py --files    # the same at file granularity (vdr_app.models.colqwen)

tests/test_architecture.py uses `unit_graph` and `circles` to state the layering and to fail on a
circle.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vdr_app"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """vdr_app/models/colqwen.py -> vdr_app.models.colqwen; a package's __init__ -> the package."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(path: Path, package: Path = PACKAGE) -> set[str]:
    """The vdr_app modules a file imports (absolute and relative), TYPE_CHECKING blocks excluded."""
    me = module_name(path, package)
    here = me if path.name == "__init__.py" else me.rpartition(".")[0]  # the package `.` refers to
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == package.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == package.name:
                # `from . import heatmap` takes a module, `from .store import Store` a name of one:
                # file_graph trims each to the module that exists
                found.update(f"{target}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def file_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the vdr_app modules it imports (only names that are real modules of the package)."""
    files = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        targets = set()
        for target in _imported(path, package):
            while target and target not in files:  # `from .x import Name`: Name is not a module
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def unit_of(module: str, package_name: str = PACKAGE.name) -> str:
    """vdr_app.models.colqwen -> models; vdr_app.store -> store; vdr_app -> vdr_app (the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else package_name


def unit_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """unit -> the other units it imports."""
    graph: dict[str, set[str]] = {}
    for module, targets in file_graph(package).items():
        unit = unit_of(module, package.name)
        graph.setdefault(unit, set()).update(unit_of(t, package.name) for t in targets)
    for unit, targets in graph.items():
        targets.discard(unit)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(found)


def levels(graph: dict[str, set[str]]) -> dict[str, int]:
    """unit -> level: 0 imports nothing of the package, else 1 + the highest level imported
    (members of one circle get the same level)."""
    component = {node: (node,) for node in graph}
    for members in circles(graph):
        for node in members:
            component[node] = tuple(members)
    level: dict[tuple, int] = {}

    def level_of(comp: tuple) -> int:
        if comp not in level:
            level[comp] = 0  # guards re-entry; a condensation has no cycles
            outside = {component[t] for node in comp for t in graph[node] if t in component} - {comp}
            level[comp] = 1 + max(map(level_of, outside)) if outside else 0
        return level[comp]

    return {node: level_of(component[node]) for node in graph}


def report(graph: dict[str, set[str]]) -> str:
    by_level = levels(graph)
    lines = [f"{len(graph)} modules on {max(by_level.values()) + 1 if by_level else 0} levels"]
    for level in sorted(set(by_level.values())):
        members = sorted(n for n, lv in by_level.items() if lv == level)
        lines.append(f"  level {level}: {', '.join(members)}")
    found = circles(graph)
    lines.append(f"{len(found)} import circle(s)" + (":" if found else ""))
    lines.extend("  " + " <-> ".join(c) for c in found)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", action="store_true", help="one node per file instead of per top-level unit")
    parser.add_argument("--package", type=Path, default=PACKAGE, help="package folder (default: vdr_app)")
    args = parser.parse_args(argv)
    print(report(file_graph(args.package) if args.files else unit_graph(args.package)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
