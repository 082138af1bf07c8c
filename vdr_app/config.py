"""Settings, read once from the environment. The only module that reads `os.environ`.

Every other function takes explicit arguments; the CLI and app build a `Settings` and override
fields from flags with `dataclasses.replace`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "vidore/colSmol-256M"
MODES = ("local", "shared", "public-demo")


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
            127.0.0.1 (0.0.0.0 on a Hugging Face Space, which sets `SPACE_ID`; the Dockerfile
            sets `VDR_HOST`).
        fallback_model: encoder the app offers when `model` cannot be loaded
            (`VDR_FALLBACK_MODEL`; empty to disable).

    Deployment (README "Deployment modes"):
        mode: "local" (one user, everything allowed), "shared" (login required; deleting, the
            model switch and saving views only for signed-in users) or "public-demo" (each
            browser session gets its own temporary library) (`VDR_MODE`).
        auth: (user, password) pairs for "shared", from `VDR_AUTH="user:password,user2:password2"`.
        sample_store: a store copied into every public-demo session's library at its start
            (`VDR_SAMPLE_STORE`; never written).
        session_minutes: a public-demo library idle this long is removed (`VDR_SESSION_MINUTES`).
        max_sessions: public-demo libraries kept at once; the least recently used goes first
            (`VDR_MAX_SESSIONS`).
        state_capacity: sessions whose state Gradio keeps in memory (`VDR_STATE_CAPACITY`).
        cache_minutes: uploaded and generated files older than this are deleted, checked as
            often (`VDR_CACHE_MINUTES`).
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
    # -- deployment -------------------------------------------------------------------------------
    mode: str = "local"
    auth: tuple[tuple[str, str], ...] = ()
    sample_store: Path | None = None
    session_minutes: float = 60.0
    max_sessions: int = 50
    state_capacity: int = 200
    cache_minutes: float = 60.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"VDR_MODE must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "shared" and not self.auth:
            raise ValueError("VDR_MODE=shared needs logins: set VDR_AUTH=user:password[,user2:password2]")

    @property
    def store_file(self) -> Path:
        """The SQLite file this configuration uses."""
        return Path(self.store_path) if self.store_path else Path(self.data_dir) / "vdr.sqlite"

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "Settings":
        """Build settings from `VDR_*` environment variables (unset ones keep their default)."""
        env = os.environ if environ is None else environ
        on_space = bool(env.get("SPACE_ID"))  # a Space must listen on 0.0.0.0; containers set VDR_HOST
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
            host=env.get("VDR_HOST", "0.0.0.0" if on_space else defaults.host),
            port=int(env.get("VDR_PORT", env.get("PORT", defaults.port))),
            fallback_model=env.get("VDR_FALLBACK_MODEL", defaults.fallback_model),
            mode=env.get("VDR_MODE", defaults.mode).strip().lower(),
            auth=parse_auth(env.get("VDR_AUTH", "")),
            sample_store=Path(env["VDR_SAMPLE_STORE"]) if env.get("VDR_SAMPLE_STORE") else None,
            session_minutes=float(env.get("VDR_SESSION_MINUTES", defaults.session_minutes)),
            max_sessions=int(env.get("VDR_MAX_SESSIONS", defaults.max_sessions)),
            state_capacity=int(env.get("VDR_STATE_CAPACITY", defaults.state_capacity)),
            cache_minutes=float(env.get("VDR_CACHE_MINUTES", defaults.cache_minutes)),
        )


def parse_auth(text: str) -> tuple[tuple[str, str], ...]:
    """`user:password,user2:password2` -> ((user, password), ...); a pair without ':' is refused."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ValueError("VDR_AUTH must be user:password pairs separated by commas (a pair is missing its ':')")
        pairs.append((user, password))
    return tuple(pairs)
