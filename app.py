"""The web app entry point (also the Hugging Face Spaces `app_file`).

    python app.py            serves on 127.0.0.1:7860, or 0.0.0.0:7860 in a container / Space

Wiring only: Settings (from VDR_* variables) -> Engine (opens or creates the SQLite store in the
data folder) -> build_demo(engine) -> launch. Importing this module does nothing slow: gradio and
the model are imported and loaded only in `main()`, the model in a background thread, so the page
is up at once and says plainly if the checkpoint cannot be loaded. On a ZeroGPU Space the model is
loaded before launch instead, in the main thread (vdr_app.models.zerogpu says why).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys


def use_model_cache(settings) -> None:
    """Point HF_HOME at the settings' model cache (on a Space: persistent storage), before
    huggingface_hub is imported: it reads HF_HOME once, at import."""
    if settings.hf_home is not None:
        os.environ.setdefault("HF_HOME", str(settings.hf_home))


def _load_for_zerogpu(engine) -> None:
    """On ZeroGPU, load the model now, in the main thread, before launch: ZeroGPU intercepts the
    move to "cuda" only there and carries those weights into its GPU workers
    (vdr_app.models.zerogpu). A failure is remembered by the engine and shown on the page."""
    import vdr_app.models.zerogpu  # noqa: F401  its spaces.GPU functions exist before launch

    try:
        engine.encoder
    except Exception as error:  # noqa: BLE001 - the page shows it, with what to do
        logging.getLogger("app").warning("model %s could not be loaded: %s", engine.settings.model, error)


def _demo_model(settings):
    """A public demo's model is its sample store's: every visitor's library starts as a copy of
    it, so another model could search none of them. VDR_MODEL naming another model is refused."""
    from vdr_app.engine import expected_model_id
    from vdr_app.errors import ConfigError
    from vdr_app.store import Store

    if settings.sample_store is None or not settings.sample_store.is_file():
        return settings
    sample = Store(settings.sample_store, read_only=True)
    try:
        model = sample.model_id
    finally:
        sample.close()
    if not model:
        return settings
    if settings.model_given and expected_model_id(settings.model) != model:
        raise ConfigError(f"VDR_SAMPLE_STORE holds vectors of '{model}', not of VDR_MODEL '{settings.model}': "
                          "unset VDR_MODEL (the sample's model is then used) or build the sample with that model")
    return dataclasses.replace(settings, model=model, model_given=True)


def create_app(settings=None):
    """(demo, settings): the Blocks around a fresh engine; the model starts loading in the background."""
    from vdr_app.config import Settings
    from vdr_app.engine import Engine
    from vdr_app.ui import build_demo

    settings = settings or Settings.from_env()
    use_model_cache(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.mode == "public-demo":
        from vdr_app.store import Store

        settings = _demo_model(settings)

        # Visitors get libraries of their own (vdr_app.sessions); the app's engine only lends its model.
        engine = Engine(dataclasses.replace(settings, index="memory"), store=Store(":memory:"))
    else:
        engine = Engine(settings)
    if settings.zero_gpu:
        _load_for_zerogpu(engine)
    if settings.index != "memory":  # an external index can lag the store; say so at start
        problem = engine.index_problem()
        if problem:
            logging.getLogger("app").warning("%s", problem)
    return build_demo(engine), settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vdr_app.config import Settings, check_before_launch
    from vdr_app.errors import VdrError

    try:
        settings = Settings.from_env()  # checked before anything heavy is imported
        check_before_launch(settings)
    except VdrError as error:
        sys.exit(f"vdr_app: {error}")
    use_model_cache(settings)
    if settings.zero_gpu:
        import spaces  # noqa: F401  before torch: ZeroGPU patches torch's CUDA calls at import
    from vdr_app.ui import launch_options

    try:
        demo, settings = create_app(settings)
    except VdrError as error:  # e.g. a store or sample store that cannot be opened
        sys.exit(f"vdr_app: {error}")
    # SIGTERM (docker stop, systemd, a Space restarting) ends like Ctrl-C: exit handlers run, so the
    # public-demo visitor libraries are removed (vdr_app.sessions) instead of left on disk.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The model the engine settled on (the store's own when none was asked for), not the default.
    logging.getLogger("app").info("mode %s, data folder %s, store %s, model %s", settings.mode, settings.data_dir,
                                  settings.store_file, demo.model_status.model)
    demo.launch(**launch_options(settings))


if __name__ == "__main__":
    main()
