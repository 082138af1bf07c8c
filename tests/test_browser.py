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

from .ui_support import BAD_PDF, SHORT_PDF, app_settings, running_app

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


def test_upload_explore_search_in_the_browser(page, app_url, sample_docs, tmp_path):
    shots = Shots(tmp_path)
    tab, engine = page, app_url[1]

    tab.set_input_files("#upload input[type=file]", str(sample_docs / "pdfs" / SHORT_PDF))
    tab.click("#index-btn")
    _wait_text(tab, "#library-status", f"{SHORT_PDF}: 2 pages indexed")
    _wait_text(tab, "#documents", SHORT_PDF)
    _wait_text(tab, "#library-totals", "1 document · 2 pages")
    shots(tab, "library")

    tab.get_by_role("tab", name="Explore").click()
    _plot_ready(tab, "#explore-plot")
    _wait_text(tab, "#explore-numbers", "docpruner")
    _wait_text(tab, "#explore-numbers", "(pruning)")
    shots(tab, "explore-pruning")

    _choose(tab, "explore-strategy", "cluster (merging)")
    _wait_text(tab, "#explore-numbers", "cluster:factor=9")
    _plot_ready(tab, "#explore-plot")
    patches = engine.store.page_embedding(engine.pages()[0].id).n_patches
    _wait_text(tab, "#explore-numbers", f"{patches} → {patches // 9} image patches")
    shots(tab, "explore-merging")

    tab.get_by_role("tab", name="Search").click()
    tab.fill("#query textarea", "canvas drawing")
    _choose(tab, "search-strategy", "cluster (merging)")
    tab.wait_for_function(
        "() => (document.querySelector('#search-spec input, #search-spec textarea')?.value || '').startsWith('cluster')"
    )
    tab.click("#search-btn")
    tab.wait_for_selector("#results .thumbnail-item img")
    _wait_text(tab, "#comparison", "vs full index")
    tab.locator("#results .thumbnail-item").first.click()
    _plot_ready(tab, "#search-plot")
    _wait_text(tab, "#search-plot", "similarity to")
    shots(tab, "search")
    assert len(shots.saved) == 4


def test_errors_show_in_the_page_and_change_nothing(page, app_url, sample_docs, tmp_path):
    shots = Shots(tmp_path)
    tab, engine = page, app_url[1]
    before = [d.id for d in engine.list_documents()], engine.store.page_ids()

    tab.set_input_files("#upload input[type=file]", str(sample_docs / "bad" / BAD_PDF))
    tab.click("#index-btn")
    tab.get_by_text(BAD_PDF, exact=False).last.wait_for()
    toast = tab.locator(".toast-body").last
    toast.wait_for()
    assert BAD_PDF in toast.inner_text()
    tab.wait_for_timeout(500)  # the toast slides in
    shots(tab, "error-bad-pdf")

    tab.get_by_role("tab", name="Search").click()
    tab.fill("#query textarea", "")
    tab.click("#search-btn")
    tab.get_by_text("the query is empty", exact=False).first.wait_for()
    shots(tab, "error-empty-query")

    assert ([d.id for d in engine.list_documents()], engine.store.page_ids()) == before
