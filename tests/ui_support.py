"""Launch the web app in-process for UI tests: a tiny checkpoint, a temp data folder, a free port."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

from vdr_app.config import Settings
from vdr_app.engine import Engine

# Documents made in code (tests/documents.py, the `sample_docs` fixture) for end-to-end runs.
SHORT_PDF = "report.pdf"  # 2 pages
OTHER_PDF = "newsletter.pdf"  # 1 page
THIRD_PDF = "scan.pdf"  # 3 pages
BAD_PDF = "broken-xref.pdf"


def app_settings(data_dir: Path, model: str, **overrides) -> Settings:
    """Settings for a test app: its own data folder, a free port (0 = let gradio pick), low dpi."""
    base = Settings(data_dir=data_dir, model=model, dpi=60, host="127.0.0.1")
    return dataclasses.replace(base, **overrides)


@contextmanager
def running_app(settings: Settings, wait_for_model: bool = True):
    """Yield (url, engine, demo) of the app launched on a free port; closed afterwards."""
    from vdr_app.ui import build_demo, launch_options

    engine = Engine(settings)
    demo = build_demo(engine)
    if wait_for_model:
        demo.model_status.wait(120)
    options = launch_options(settings)
    options.pop("server_port")  # None: gradio takes the first free port from 7860 up
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)
    try:
        yield url, engine, demo
    finally:
        demo.close()
        engine.store.close()
