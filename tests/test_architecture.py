"""Architecture rules the layout depends on, checked by parsing imports (docs/architecture.md)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vdr_app"

# third-party module -> where it may be imported (paths relative to vdr_app/, folders end in /)
CONFINED = {
    "gradio": ["ui/"],
    "plotly": ["figures.py"],
    "torch": ["models/", "checkpoints/", "torchvision_compat.py",
              "index/int8_matmul.py"],  # int8 search: torch._int_mm (VNNI), lazily imported, numpy fallback
    "torchvision": ["torchvision_compat.py"],
    "transformers": ["models/", "checkpoints/"],
    "colpali_engine": ["models/", "checkpoints/"],
    "sentence_transformers": ["models/"],
    "sqlite3": ["store/"],
    "sqlite_utils": ["store/"],
    "pdf2image": ["pdf.py"],
    "pypdfium2": ["models/text_layout/text_layer.py"],
    "rapidocr": ["models/text_layout/ocr.py"],
    "pytesseract": ["models/text_layout/tesseract.py"],
    "datasets": ["benchmark_data.py"],  # eval --benchmark only, imported lazily
}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def _allowed(relative: str, places: list[str]) -> bool:
    return any(relative.startswith(p) if p.endswith("/") else relative == p for p in places)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_heavy_and_ui_libraries_stay_in_their_module(path):
    relative = str(path.relative_to(PACKAGE))
    for module in _imports(path):
        if module in CONFINED:
            assert _allowed(relative, CONFINED[module]), f"{relative} imports {module}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_config_reads_the_environment(path):
    relative = str(path.relative_to(PACKAGE))
    if relative == "config.py":
        return
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            assert isinstance(node.value, ast.Name) and node.value.id != "os", f"{relative} reads os.{node.attr}"


def test_nothing_but_the_ui_imports_the_ui():
    for path in PACKAGE.rglob("*.py"):
        relative = str(path.relative_to(PACKAGE))
        if relative.startswith("ui/"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = (node.module or "")
                assert not module.startswith(("vdr_app.ui", "ui")) and not (node.level and module == "ui"), relative


def test_engine_and_cli_import_cheaply():
    """The engine, CLI and app module load without gradio, torch or transformers (nothing heavy at import)."""
    code = (
        "import sys, vdr_app.engine, vdr_app.cli, vdr_app.reduce, vdr_app.index, vdr_app.models, vdr_app.checkpoints, app; "
        "print(sorted(m for m in ('gradio', 'torch', 'transformers', 'colpali_engine') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# The layering, bottom to top: a unit (a top-level module or package of vdr_app) imports only units
# of its own layer or a lower one, and nothing imports in a circle. Imports inside functions count;
# `if TYPE_CHECKING:` imports do not. A new module gets a place here (docs/architecture.md
# draws the same table); `python scripts/import_layers.py` prints the levels the imports give.
LAYERS = {
    "base": {"vdr_app", "errors", "types", "config", "torchvision_compat"},
    "numeric kernels (numpy, no I/O)": {"quantise", "heatmap", "pareto", "memory", "reduce"},
    "inputs and storage": {"pdf", "models", "checkpoints", "store", "index"},
    "engine": {"engine"},
    "on the engine": {"evaluate", "benchmark_data", "sessions", "figures"},
    "front ends": {"cli", "ui", "__main__"},
}


def _layering():
    from scripts.import_layers import unit_graph

    return unit_graph(PACKAGE)


def test_every_unit_has_a_layer():
    placed = set().union(*LAYERS.values())
    unplaced = sorted(set(_layering()) - placed)
    assert not unplaced, f"vdr_app units without a layer: {unplaced}: add them to LAYERS in {Path(__file__).name}"


def test_imports_point_down_the_layers():
    rank = {unit: i for i, members in enumerate(LAYERS.values()) for unit in members}
    names = list(LAYERS)
    upward = [f"{unit} ({names[rank[unit]]}) imports {target} ({names[rank[target]]})"
              for unit, targets in sorted(_layering().items()) for target in sorted(targets)
              if unit in rank and target in rank and rank[target] > rank[unit]]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_import_circle():
    from scripts.import_layers import circles, file_graph

    assert circles(_layering()) == [], "units import each other in a circle"
    assert circles(file_graph(PACKAGE)) == [], "modules import each other in a circle"


def test_the_layering_script_finds_circles_and_levels(tmp_path):
    """The checker itself: a circle made on purpose is found, lazy imports count, TYPE_CHECKING does not."""
    from scripts.import_layers import circles, levels, unit_graph

    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from .b import g\n")
    (package / "b.py").write_text("from . import a\nfrom typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from .c import T\n")
    (package / "c.py").write_text("import pkg.b\n")
    (package / "sub" / "__init__.py").write_text("from ..c import x\n")
    graph = unit_graph(package)
    assert graph == {"pkg": set(), "a": {"b"}, "b": {"a"}, "c": {"b"}, "sub": {"c"}}
    assert circles(graph) == [["a", "b"]]
    assert levels(graph) == {"pkg": 0, "a": 0, "b": 0, "c": 1, "sub": 2}
