"""The web app entry point (also the Hugging Face Spaces `app_file`).

    python app.py            serves on 127.0.0.1:7860, or 0.0.0.0:7860 in a container / Space

Wiring only: Settings (from VDR_* variables) -> Engine (opens or creates the SQLite store in the
data folder) -> build_demo(engine) -> launch. Importing this module does nothing slow: gradio and
the model are imported and loaded only in `main()`, the model in a background thread, so the page
is up at once and says plainly if the checkpoint cannot be loaded.
"""

from __future__ import annotations

import logging


def create_app(settings=None):
    """(demo, settings): the Blocks around a fresh engine; the model starts loading in the background."""
    from vdr_app.config import Settings
    from vdr_app.engine import Engine
    from vdr_app.ui import build_demo

    settings = settings or Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(settings)
    if settings.index != "memory":  # an external index can lag the store; say so at start
        problem = engine.index_problem()
        if problem:
            logging.getLogger("app").warning("%s", problem)
    return build_demo(engine), settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vdr_app.ui import launch_options

    demo, settings = create_app()
    logging.getLogger("app").info("data folder %s, store %s, model %s", settings.data_dir, settings.store_file,
                                  settings.model)
    demo.launch(**launch_options(settings))


if __name__ == "__main__":
    main()
