"""Settings, read once from the environment. The only module that reads `os.environ`.

Every other function takes explicit arguments; the CLI and app build a `Settings` and override
fields from flags with `dataclasses.replace`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "vidore/colSmol-256M"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "vdr_app"


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the embedded defaults.

    Attributes:
        model: checkpoint (hub id or local folder) or registered encoder name (`VDR_MODEL`).
        data_dir: where the SQLite store and caches live, created on first use (`VDR_DATA_DIR`).
        device: "auto", "cpu", "cuda", "cuda:1", "mps" (`VDR_DEVICE`).
        store_path: SQLite file; defaults to `data_dir / "vdr.sqlite"` (`VDR_STORE`).
        dpi: rendering resolution of PDF pages (`VDR_DPI`).
        max_pages: pages read per PDF; longer PDFs are refused (`VDR_MAX_PAGES`).
        max_upload_mb: size limit per uploaded file (`VDR_MAX_UPLOAD_MB`).
        max_image_pixels: pixel limit per rendered page, against decompression bombs
            (`VDR_MAX_IMAGE_PIXELS`).
        batch_size: pages per encoder forward pass (`VDR_BATCH_SIZE`).
        max_query_chars: longest accepted query (`VDR_MAX_QUERY_CHARS`).
        host, port: where the web app listens (`VDR_HOST`, `VDR_PORT`/`PORT`); host defaults to
            0.0.0.0 inside a container or Space, 127.0.0.1 otherwise.
        fallback_model: encoder the app offers when `model` cannot be loaded
            (`VDR_FALLBACK_MODEL`; empty to disable).
        model_given: whether `model` was asked for (VDR_MODEL, --model, or given in code); when
            not, a store that already holds vectors is opened with its own model.
    """

    model: str = DEFAULT_MODEL
    data_dir: Path = _default_data_dir()
    device: str = "auto"
    store_path: Path | None = None
    dpi: int = 120
    max_pages: int = 200
    max_upload_mb: float = 100.0
    max_image_pixels: int = 40_000_000
    batch_size: int = 4
    max_query_chars: int = 1000
    host: str = "127.0.0.1"
    port: int = 7860
    fallback_model: str = "text-layout-minilm"
    model_given: bool = True

    @property
    def store_file(self) -> Path:
        """The SQLite file this configuration uses."""
        return Path(self.store_path) if self.store_path else Path(self.data_dir) / "vdr.sqlite"

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "Settings":
        """Build settings from `VDR_*` environment variables (unset ones keep their default)."""
        env = os.environ if environ is None else environ
        in_container = bool(env.get("SPACE_ID")) or Path("/.dockerenv").exists()
        defaults = cls()
        store = env.get("VDR_STORE")
        return cls(
            model=env.get("VDR_MODEL", defaults.model),
            data_dir=Path(env.get("VDR_DATA_DIR", defaults.data_dir)),
            device=env.get("VDR_DEVICE", defaults.device),
            store_path=Path(store) if store else None,
            dpi=int(env.get("VDR_DPI", defaults.dpi)),
            max_pages=int(env.get("VDR_MAX_PAGES", defaults.max_pages)),
            max_upload_mb=float(env.get("VDR_MAX_UPLOAD_MB", defaults.max_upload_mb)),
            max_image_pixels=int(env.get("VDR_MAX_IMAGE_PIXELS", defaults.max_image_pixels)),
            batch_size=int(env.get("VDR_BATCH_SIZE", defaults.batch_size)),
            max_query_chars=int(env.get("VDR_MAX_QUERY_CHARS", defaults.max_query_chars)),
            host=env.get("VDR_HOST", "0.0.0.0" if in_container else defaults.host),
            port=int(env.get("VDR_PORT", env.get("PORT", defaults.port))),
            fallback_model=env.get("VDR_FALLBACK_MODEL", defaults.fallback_model),
            model_given=bool(env.get("VDR_MODEL", "").strip()),
        )
