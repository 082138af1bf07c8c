"""The web app in a real browser: Debian's chromium driven by Python playwright (no
`playwright install`). Upload, Explore (a pruning and a merging view), Search and a result's
similarity map, error messages in the page. Screenshots are test artifacts: in tmp_path, and
copied to $VDR_ARTIFACTS_DIR when set.

Runs in CI: a missing chromium is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .ui_support import BAD_PDF, OTHER_PDF, SHORT_PDF, app_settings, running_app

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TIMEOUT_MS = 90_000


def _chromium() -> str:
    path = os.environ.get("VDR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("chromium not found: install Debian's chromium (apt-get install -y chromium) or set VDR_CHROMIUM")
    return path


@pytest.fixture(scope="module")
def app_url(tiny_checkpoint, tmp_path_factory):
    settings = app_settings(tmp_path_factory.mktemp("browser-data"), str(tiny_checkpoint("colidefics3")))
    with running_app(settings) as (url, engine, _demo):
        yield url, engine


@pytest.fixture
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(app_url[0])
        tab.wait_for_selector("#upload")
        yield tab
        browser.close()


class Shots:
    """Saves full-page screenshots to tmp_path and, if set, $VDR_ARTIFACTS_DIR."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.extra = Path(os.environ["VDR_ARTIFACTS_DIR"]) if os.environ.get("VDR_ARTIFACTS_DIR") else None
        self.saved: list[Path] = []

    def __call__(self, tab, name: str) -> Path:
        path = self.folder / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"screenshot {name} looks empty"
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.extra / path.name)
        self.saved.append(path)
        return path


def _choose(tab, elem_id: str, option: str) -> None:
    """Pick an option of a gradio dropdown by its label."""
    tab.click(f"#{elem_id} input")
    tab.get_by_role("option", name=option).click()


def _wait_text(tab, selector: str, text: str) -> None:
    tab.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)", arg=[selector, text]
    )


def _plot_ready(tab, selector: str) -> None:
    tab.wait_for_selector(f"{selector} .js-plotly-plot .main-svg")
    tab.wait_for_timeout(400)  # let plotly finish painting the layout images before a screenshot


_HIGHLIGHT_POINT = """() => {
    // Screen position of a cell of one merged group, on the right-hand panel of the Explore figure.
    const gd = document.querySelector('#explore-plot .js-plotly-plot');
    const meta = gd.layout.meta.vdr_highlight, full = gd._fullLayout, [xr, yr] = meta.axes[1];
    const xa = full[xr.replace('x', 'xaxis')], ya = full[yr.replace('y', 'yaxis')];
    const box = gd.getBoundingClientRect();
    const [group, outline] = Object.entries(meta.groups)[0];
    // The outline's first segment is a cell edge; the group's cell is on one of its two sides.
    const x = (outline.x[0] + outline.x[1]) / 2, y = (outline.y[0] + outline.y[1]) / 2;
    return [group, box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)];
}"""


def _overlap(tab, first: str, second: str) -> bool:
    """Whether two elements' boxes on screen intersect (False when either is missing)."""
    a, b = tab.locator(first).bounding_box(), tab.locator(second).bounding_box()
    assert a and b, f"{first} or {second} not drawn"
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def _viewer_opened(tab, title: str, row) -> None:
    """The page viewer is open over the app with this title and the page's stored image, whole."""
    tab.wait_for_selector(".vdr-viewer img")
    _wait_text(tab, ".vdr-viewer-title", title)
    tab.wait_for_function("() => document.querySelector('.vdr-viewer')?.dataset.fit === '1'")
    natural = tab.evaluate("() => { const i = document.querySelector('.vdr-viewer img');"
                           " return [i.naturalWidth, i.naturalHeight]; }")
    assert natural == [row.width, row.height]  # the store's full resolution, not a thumbnail
    box = tab.locator(".vdr-viewer-box").bounding_box()
    assert box["width"] > 1000 and box["height"] > 800  # over the app, nearly the whole window


def _highlighted_group(tab) -> str:
    return tab.evaluate("() => document.querySelector('#explore-plot svg.vdr-highlight')?.dataset.group || ''")


def test_upload_explore_search_in_the_browser(page, app_url, sample_docs, tmp_path):
    shots = Shots(tmp_path)
    tab, engine = page, app_url[1]

    tab.set_input_files("#upload input[type=file]", str(sample_docs / "pdfs" / SHORT_PDF))
    tab.click("#index-btn")
    # The progress bar is on screen within 2 s of the click, over an emptied status box.
    tab.wait_for_selector("#library-status .progress-text, #library-status .meta-text, #library-status .eta-bar",
                          timeout=2000)
    # ... and never over the old text: the status box is emptied first.
    tab.wait_for_function("() => !document.querySelector('#library-status').innerText.includes('Progress and results')")
    # Once: the upload box carries no second progress overlay.
    assert tab.locator("#upload .eta-bar, #upload .progress-text, #upload .meta-text").count() == 0
    shots(tab, "library-indexing")
    _wait_text(tab, "#library-status", f"{SHORT_PDF}: 2 pages indexed")
    _wait_text(tab, "#documents", SHORT_PDF)
    _wait_text(tab, "#library-totals", "1 document · 2 pages")
    tab.wait_for_function("() => !document.querySelector('#upload')?.innerText.includes('.pdf')")  # box cleared
    shots(tab, "library")

    tab.get_by_role("tab", name="Explore").click()
    _plot_ready(tab, "#explore-plot")
    _wait_text(tab, "#explore-numbers", "docpruner")
    _wait_text(tab, "#explore-numbers", "(pruning)")
    _wait_text(tab, "#explore-plot", "final-token attention")
    _wait_text(tab, "#explore-plot", "pruned (grey wash)")
    tab.locator("#explore-plot .js-plotly-plot").hover()  # the modebar shows while the mouse is over the plot
    assert not _overlap(tab, "#explore-plot .modebar", "#explore-plot .legend"), "legend under the toolbar"
    shots(tab, "explore-pruning")

    # The page viewer: the stored page at full resolution, zoomable, closed with Esc.
    tab.click("#explore-view-btn")
    first = engine.pages()[0]
    _viewer_opened(tab, f"{Path(SHORT_PDF).name} · p. 1", first)
    shots(tab, "explore-viewer")
    tab.keyboard.press("Escape")
    tab.wait_for_selector(".vdr-viewer", state="detached")

    _choose(tab, "explore-strategy", "cluster (merging)")
    _wait_text(tab, "#explore-numbers", "cluster:factor=9")
    _plot_ready(tab, "#explore-plot")
    patches = engine.store.page_embedding(engine.pages()[0].id).n_patches
    _wait_text(tab, "#explore-numbers", f"{patches} → {patches // 9} image patches")
    _wait_text(tab, "#explore-plot", "merged groups (outlined")
    assert "pruned (grey wash)" not in tab.inner_text("#explore-plot")  # nothing pruned: no such legend
    # Hovering a cell of a merged group outlines that group on the page.
    tab.locator("#explore-plot").scroll_into_view_if_needed()
    group, x, y = tab.evaluate(_HIGHLIGHT_POINT)
    for dy in (-3, 3):
        tab.mouse.move(x, y + dy)
        tab.wait_for_timeout(400)
        if _highlighted_group(tab):
            break
    assert _highlighted_group(tab) == group
    shots(tab, "explore-merging-highlight")

    tab.get_by_role("tab", name="Search").click()
    tab.fill("#query textarea", "canvas drawing")
    _choose(tab, "search-strategy", "cluster (merging)")
    tab.wait_for_function(
        "() => (document.querySelector('#search-spec input, #search-spec textarea')?.value || '').startsWith('cluster')"
    )
    tab.click("#search-btn")
    tab.wait_for_selector("#results .thumbnail-item img")
    _wait_text(tab, "#comparison", "vs full index")
    captions = tab.locator("#results .caption-label").all_inner_texts()
    assert captions and all(" · p. " in c for c in captions), captions
    assert not tab.locator("#selected-page").is_visible()  # no raw id box
    tab.locator("#results .thumbnail-item").first.click()
    top = engine.compare("canvas drawing", k=1, view="cluster:factor=9").view[0]
    _viewer_opened(tab, f"{top.doc_name} · p. {top.page_number} · score", engine.store.page_rows([top.page_id])[0])
    zoom = float(tab.get_attribute(".vdr-viewer", "data-zoom"))
    tab.click(".vdr-viewer button[data-action=in]")
    tab.wait_for_function("z => Number(document.querySelector('.vdr-viewer').dataset.zoom) > z * 1.2", arg=zoom)
    assert tab.get_attribute(".vdr-viewer", "data-fit") == "0"
    shots(tab, "search-viewer")
    tab.click(".vdr-viewer-close")
    tab.wait_for_selector(".vdr-viewer", state="detached")
    _plot_ready(tab, "#search-plot")
    _wait_text(tab, "#search-plot", "similarity to")
    tab.wait_for_function("() => { const r = document.querySelector('#search-map').getBoundingClientRect();"
                          " return r.top >= -5 && r.top < window.innerHeight - 200; }")  # scrolled into view
    shots(tab, "search")

    tab.fill("#query textarea", "colour of the text")
    tab.click("#search-btn")
    _wait_text(tab, "#search-plot", "Click a result")  # the first query's map is gone
    assert "similarity to" not in tab.inner_text("#search-plot")
    shots(tab, "search-second-query")

    tab.get_by_role("tab", name="Library").click()
    tab.click("#delete-btn")
    _wait_text(tab, "#delete-confirm-text", f"Delete {SHORT_PDF}")
    shots(tab, "delete-confirm")
    tab.click("#delete-cancel-btn")
    tab.wait_for_selector("#delete-confirm-text", state="hidden")
    assert [d.name for d in engine.list_documents()] == [SHORT_PDF]  # asking deleted nothing
    tab.click("#delete-btn")
    tab.click("#delete-confirm-btn")
    _wait_text(tab, "#library-status", f"Deleted {SHORT_PDF}")
    _wait_text(tab, "#library-totals", "0 documents")
    assert engine.list_documents() == []
    shots(tab, "deleted")
    assert len(shots.saved) == 10


def test_restart_uses_the_store_model_without_trying_the_hub(tiny_checkpoint, tmp_path, sample_docs):
    """A store built with one model, the app restarted with no model asked for: it loads the
    store's model (no attempt at the default hub checkpoint) and says it is ready."""
    import dataclasses
    import time

    from playwright.sync_api import sync_playwright

    from vdr_app.engine import Engine

    model = str(tiny_checkpoint("colidefics3"))
    settings = app_settings(tmp_path / "data", model)
    (tmp_path / "data").mkdir()
    engine = Engine(settings)
    engine.add_files([sample_docs / "pdfs" / SHORT_PDF])
    engine.store.close()

    restarted = dataclasses.replace(settings, model="vidore/colSmol-256M", model_given=False)
    started = time.perf_counter()
    with running_app(restarted) as (url, engine, demo):
        took = time.perf_counter() - started
        assert demo.model_status.state == "ready", demo.model_status.error
        assert engine.settings.model == engine.store.model_id == str(Path(model).resolve())
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            tab.goto(url)
            _wait_text(tab, "#model-status", "ready")
            assert "could not be loaded" not in tab.inner_text("#model-status")
            Shots(tmp_path)(tab, "restart-ready")
            browser.close()
    print(f"restart on the stored model: ready in {took:.1f} s")


def test_errors_show_in_the_page_and_change_nothing(page, app_url, sample_docs, tmp_path):
    shots = Shots(tmp_path)
    tab, engine = page, app_url[1]
    before = [d.id for d in engine.list_documents()], engine.store.page_ids()

    tab.set_input_files("#upload input[type=file]", [str(sample_docs / "pdfs" / OTHER_PDF),
                                                     str(sample_docs / "bad" / BAD_PDF)])
    tab.click("#index-btn")
    _wait_text(tab, "#library-status", "Nothing was indexed")
    assert BAD_PDF in tab.inner_text("#library-status")  # named in the status, which stays
    toast = tab.locator(".toast-body").last
    toast.wait_for()
    tab.wait_for_timeout(500)  # the toast slides in
    shots(tab, "error-bad-pdf")

    tab.get_by_role("tab", name="Search").click()
    tab.fill("#query textarea", "")
    tab.click("#search-btn")
    tab.get_by_text("the query is empty", exact=False).first.wait_for()
    shots(tab, "error-empty-query")

    assert ([d.id for d in engine.list_documents()], engine.store.page_ids()) == before
