"""Remake the screenshots of the README and the docs from a sample library, after any UI change.

    python scripts/make_screenshots.py [--out docs/images] [--chromium /usr/bin/chromium]

Builds a small library in a temporary folder with the offline encoder (`text-layout-minilm`: no
download) from `assets/sample.pdf` and a second PDF drawn here, starts the app on a free port,
drives Debian's chromium with Python playwright at 1400x900 (never `playwright install`) and writes:

    app-library.png  app-explore.png  app-search.png  app-search-map.png  app-lab.png
    strategy-<name>.png      the Explore figure of one view per strategy (docs/strategies.md)

Nothing is written into the working tree but the PNGs (reduced to a 256-colour palette, so that the
repository stays small). Takes a few minutes on two shared cores.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VIEWPORT = {"width": 1400, "height": 900}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 120_000
QUERY = "revenue by region"
# One view per strategy for docs/strategies.md: (file name, view spec).
STRATEGY_VIEWS = [
    ("random", "random:keep=0.25,seed=0"),
    ("attention", "attention:keep=0.25"),
    ("docpruner", "docpruner:k=-0.25"),
    ("pool1d", "pool1d:factor=9"),
    ("pool2d", "pool2d:factor=9"),
    ("cluster", "cluster:factor=9"),
    ("kmeans", "kmeans:factor=9"),
    ("prune_then_merge", "prune_then_merge:factor=4,k=-0.75"),
    ("sap", "sap:keep=0.25"),
    ("binary", "cluster:factor=9@binary"),
]
STORED_VIEWS = ["docpruner:k=-0.25", "cluster:factor=9", "cluster:factor=9@binary"]
LAB_QUERIES = ["revenue by region", "quarterly results table", "outlook for next year", "costs by quarter"]


def second_pdf(path: Path) -> Path:
    """A 2-page memo, so that the library holds more than one document."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    width, height = A4
    c = canvas.Canvas(str(path), pagesize=A4)
    pages = [
        ("Operations memo", ["Costs by quarter rose in the West region after the new warehouse opened.",
                             "Shipping times fell from six days to four in the North and East.",
                             "Staff turnover stayed below eight percent across all regions."]),
        ("Outlook for next year", ["We expect revenue to grow by twelve percent, led by the South.",
                                   "Capital spending will focus on two distribution centres.",
                                   "Risks: currency swings, energy prices and one large customer."]),
    ]
    for title, lines in pages:
        c.setFont("Helvetica-Bold", 22)
        c.drawString(60, height - 90, title)
        c.setFont("Helvetica", 12)
        for i, line in enumerate(lines):
            c.drawString(60, height - 140 - 24 * i, line)
        c.showPage()
    c.save()
    return path


def build_library(data_dir: Path):
    """An engine over a fresh store holding the sample documents and a few stored views."""
    from vdr_app.config import Settings
    from vdr_app.engine import Engine

    settings = Settings(model="text-layout-minilm", data_dir=data_dir, dpi=80, host="127.0.0.1")
    engine = Engine(settings)
    engine.add_files([ROOT / "assets" / "sample.pdf", second_pdf(data_dir / "operations-memo.pdf")])
    for spec in STORED_VIEWS:
        engine.add_view(spec)
    return engine


def save_png(data: bytes, path: Path) -> Path:
    """A 256-colour palette PNG: a third of the size of the browser's, the same to the eye on a UI."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({path.stat().st_size // 1024} KB)")
    return path


def _wait_text(tab, selector: str, text: str) -> None:
    tab.wait_for_function("([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
                          arg=[selector, text])


def _plot_ready(tab, selector: str) -> None:
    tab.wait_for_selector(f"{selector} .js-plotly-plot .main-svg")
    tab.wait_for_timeout(600)  # plotly paints its layout images a moment later


def _choose(tab, elem_id: str, option: str) -> None:
    """Pick an option of a gradio dropdown by its label."""
    tab.click(f"#{elem_id} input")
    tab.get_by_role("option", name=option).click()


def _set_spec(tab, prefix: str, spec: str) -> None:
    box = tab.locator(f"#{prefix}-spec textarea, #{prefix}-spec input").first
    box.fill(spec)
    box.press("Enter")


def shoot(url: str, out: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    from vdr_app.reduce import parse_spec

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport=VIEWPORT)
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(url)
        tab.wait_for_selector("#upload")
        _wait_text(tab, "#library-totals", "2 documents")
        _wait_text(tab, "#model-status", "Model:")  # the loaded model's banner, not "Loading model"
        save_png(tab.screenshot(), out / "app-library.png")

        tab.get_by_role("tab", name="Explore").click()
        _plot_ready(tab, "#explore-plot")
        _wait_text(tab, "#explore-numbers", "docpruner")
        tab.locator("#explore-plot").scroll_into_view_if_needed()
        tab.evaluate("() => window.scrollTo(0, document.querySelector('#explore-controls').getBoundingClientRect().top"
                     " + window.scrollY - 10)")
        tab.wait_for_timeout(300)
        save_png(tab.screenshot(), out / "app-explore.png")
        for name, spec in STRATEGY_VIEWS:
            _set_spec(tab, "explore", spec)
            shown = [spec, str(parse_spec(spec))]  # the summary names the view as given or in full
            tab.wait_for_function("specs => { const t = document.querySelector('#explore-numbers')?.innerText || '';"
                                  " return specs.some(s => t.includes(s)); }", arg=shown)
            _plot_ready(tab, "#explore-plot")
            save_png(tab.locator("#explore-plot").screenshot(), out / f"strategy-{name}.png")

        tab.get_by_role("tab", name="Search").click()
        tab.fill("#query textarea", QUERY)
        _choose(tab, "search-strategy", "cluster (merging)")  # its default: cluster:factor=9
        tab.wait_for_function("() => (document.querySelector('#search-spec input, #search-spec textarea')?.value"
                              " || '').startsWith('cluster')")
        tab.click("#search-btn")
        tab.wait_for_selector("#results .thumbnail-item img")
        _wait_text(tab, "#comparison", "vs full index")
        tab.evaluate("() => window.scrollTo(0, 0)")
        tab.wait_for_timeout(500)
        save_png(tab.screenshot(), out / "app-search.png")
        tab.locator("#results .thumbnail-item").first.click()
        tab.wait_for_selector(".vdr-viewer img")
        tab.keyboard.press("Escape")
        tab.wait_for_selector(".vdr-viewer", state="detached")
        _plot_ready(tab, "#search-plot")
        _wait_text(tab, "#search-plot", "similarity to")
        tab.evaluate("() => window.scrollTo(0, document.querySelector('#search-map').getBoundingClientRect().top"
                     " + window.scrollY - 10)")
        tab.wait_for_timeout(400)
        save_png(tab.screenshot(), out / "app-search-map.png")

        tab.get_by_role("tab", name="Lab").click()
        _shoot_lab(tab, out)
        browser.close()


def _shoot_lab(tab, out: Path) -> None:
    """The Lab over the stored views, with queries typed in (fidelity: no labels needed)."""
    views = tab.locator(".block", has_text="stored views, sweep specs").locator("input").first
    for spec in STORED_VIEWS:
        views.click()
        views.fill(spec)
        views.press("Enter")
    tab.keyboard.press("Escape")
    tab.locator(".block", has_text="Queries, one per line").locator("textarea").first.fill("\n".join(LAB_QUERIES))
    tab.get_by_role("button", name="Run evaluation").click()
    _plot_ready(tab, "#lab-plot")
    tab.wait_for_selector("#lab-table table")
    tab.wait_for_timeout(800)
    tab.evaluate("() => window.scrollTo(0, document.querySelector('#lab-plot').getBoundingClientRect().top"
                 " + window.scrollY - 330)")
    tab.wait_for_timeout(300)
    save_png(tab.screenshot(), out / "app-lab.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder for the PNGs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                        help="chromium executable (default: the one on PATH)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from tests.ui_support import running_app  # the same launch path as the browser tests

    with tempfile.TemporaryDirectory(prefix="vdr-shots-") as tmp:
        engine = build_library(Path(tmp))
        settings = engine.settings
        engine.store.close()
        with running_app(settings) as (url, _engine, _demo):
            shoot(url, args.out.resolve(), args.chromium)
    return 0


if __name__ == "__main__":
    sys.exit(main())
