"""Architecture rules the layout depends on, checked by parsing imports (see README "How it is built")."""

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
    "torch": ["models/", "torchvision_compat.py",
              "int8_matmul.py"],  # int8 search: torch._int_mm (VNNI), lazily imported, numpy fallback
    "torchvision": ["torchvision_compat.py"],
    "transformers": ["models/"],
    "colpali_engine": ["models/"],
    "sentence_transformers": ["models/"],
    "sqlite3": ["store.py", "store_errors.py"],
    "sqlite_utils": ["store.py"],
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
        "import sys, vdr_app.engine, vdr_app.cli, vdr_app.reduce, vdr_app.search, vdr_app.models, app; "
        "print(sorted(m for m in ('gradio', 'torch', 'transformers', 'colpali_engine') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
