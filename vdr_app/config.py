"""Settings, read once from the environment. The only module that reads `os.environ`.

Every other function takes explicit arguments; the CLI and app build a `Settings` and override
fields from flags with `dataclasses.replace`. Every `VDR_*` value is checked when it is read: a
bad one is a `ConfigError` naming the variable, the value and what is allowed, before anything
starts.
"""

from __future__ import annotations

import errno
import math
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

DEFAULT_MODEL = "vidore/colSmol-256M"
MODES = ("local", "shared", "public-demo")


# Where a Hugging Face Space mounts its persistent storage (Space settings -> Persistent storage);
# a module constant so tests can point it at a stand-in folder.
SPACE_PERSISTENT_DIR = Path("/data")


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "vdr_app"


def space_persistent_dir(env) -> Path | None:
    """The Space's persistent storage folder when this runs on a Space (`SPACE_ID` set) that has
    one (SPACE_PERSISTENT_DIR is a writable folder); None elsewhere."""
    folder = SPACE_PERSISTENT_DIR
    if env.get("SPACE_ID") and folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
        return folder
    return None


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and Path(path).resolve().is_relative_to(folder.resolve())


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the embedded defaults.

    Attributes:
        model: checkpoint (hub id or local folder) or registered encoder name (`VDR_MODEL`).
        data_dir: where the SQLite store and caches live, created on first use (`VDR_DATA_DIR`).
        device: "auto", "cpu", "cuda", "cuda:1", "mps" (`VDR_DEVICE`).
        dtype: model weights' dtype: "auto" (bfloat16 on CUDA and on CPUs with native bfloat16,
            float16 on MPS, float32 elsewhere), "float32", "bfloat16" or "float16" (`VDR_DTYPE`).
        store_path: SQLite file; defaults to `data_dir / "vdr.sqlite"` (`VDR_STORE`).
        dpi: rendering resolution of PDF pages (`VDR_DPI`).
        max_pages: pages read per PDF; longer PDFs are refused (`VDR_MAX_PAGES`).
        max_upload_mb: size limit per uploaded file (`VDR_MAX_UPLOAD_MB`).
        max_image_pixels: pixel limit per rendered page, against decompression bombs
            (`VDR_MAX_IMAGE_PIXELS`).
        batch_size: pages per encoder forward pass (`VDR_BATCH_SIZE`); 0 = chosen for the device
            (1 on CPU, by free memory on CUDA: `models.resources.choose_batch_size`).
        max_query_chars: longest accepted query (`VDR_MAX_QUERY_CHARS`).
        host: the address the web app listens on (`VDR_HOST`); 127.0.0.1 unless set, 0.0.0.0 on
            a Hugging Face Space (which sets `SPACE_ID`); the Dockerfile sets 0.0.0.0.
        port: the web app's port (`VDR_PORT`; `PORT` when that is unset).
        fallback_model: encoder the app offers when `model` cannot be loaded
            (`VDR_FALLBACK_MODEL`; empty to disable).
        hf_home: model cache the app sets as `HF_HOME` before anything reads it, or None to leave
            `HF_HOME` alone. On a Space with persistent storage (and no `HF_HOME` set) it is
            `/data/huggingface`, as `data_dir` defaults to `/data/vdr`: both survive a restart.
        temporary_library: on a Space whose data folder is not on persistent storage: the page
            says the library is lost when the Space restarts.
        zero_gpu: on a ZeroGPU Space (`SPACES_ZERO_GPU`, set by Spaces): the model is loaded in
            the main thread before launch and its forward passes run under `spaces.GPU`
            (vdr_app.models.zerogpu).

    Deployment (docs/deployment.md):
        mode: "local" (one user, everything allowed), "shared" (login required; deleting, the
            model switch and saving views only for signed-in users) or "public-demo" (each
            browser session gets its own temporary library) (`VDR_MODE`).
        auth: (user, password) pairs for "shared", from `VDR_AUTH="user:password,user2:password2"`.
        sample_store: a store copied into every public-demo session's library at its start
            (`VDR_SAMPLE_STORE`; never written).
        session_minutes: a public-demo library idle this long is removed (`VDR_SESSION_MINUTES`).
        max_sessions: public-demo libraries kept at once; the least recently used goes first
            (`VDR_MAX_SESSIONS`).
        session_max_pages, session_max_mb: what one public-demo visitor may add to their library:
            pages, and megabytes of PDFs (`VDR_SESSION_MAX_PAGES`, `VDR_SESSION_MAX_MB`).
        state_capacity: sessions whose state Gradio keeps in memory (`VDR_STATE_CAPACITY`).
        cache_minutes: uploaded and generated files older than this are deleted, checked as
            often (`VDR_CACHE_MINUTES`).
        index: the search index (vdr_app.index): "memory" (in-process, default) or "qdrant"
            (`VDR_INDEX`).
        qdrant_url: a Qdrant server or cluster (`VDR_QDRANT_URL`); unset: qdrant-client's local mode.
        qdrant_api_key: the Qdrant server's API key (`VDR_QDRANT_API_KEY`; never printed or logged).
        qdrant_path: the folder of qdrant-client's local mode when no URL is given
            (`VDR_QDRANT_PATH`, default `data_dir / "qdrant"`).
        qdrant_quantization: "int8": int8 copies in RAM, float16 originals on disk, exact
            rescoring (`VDR_QDRANT_QUANTIZATION`).
        qdrant_shards: shards of a new collection, fixed when it is created (`VDR_QDRANT_SHARDS`).
        qdrant_replicas: replicas of a new collection, fixed when it is created
            (`VDR_QDRANT_REPLICAS`).
        mcp: serve the app's API as an MCP server too, at `/gradio_api/mcp/` (`VDR_MCP=1`; unset:
            as Gradio's own `GRADIO_MCP_SERVER=true` says). See docs/mcp.md.
        search_mode: how the memory index searches a float view: "exhaustive" (every vector,
            exact), "two-stage" (a first stage finds `two_stage_depth` candidate pages, exact MaxSim
            ranks them, with the vectors read from a file on disk) or "auto" (default:
            two-stage for views of at least `two_stage_min_vectors` vectors) (`VDR_SEARCH_MODE`).
            See docs/scale.md.
        two_stage_depth: candidate pages scored by exact MaxSim, their vectors read from disk
            (`VDR_TWO_STAGE_DEPTH`).
        two_stage_code_depth: candidate pages the first stage hands to a middle stage of int2 codes
            held in RAM (36 bytes a vector), which keeps the `two_stage_depth` best (at most 460,000
            vectors' codes a query, the first stage's best: 4,000 pages of 115 vectors, 446 of
            1,030); 0: no middle stage, the first stage hands `two_stage_depth` pages straight to
            exact MaxSim
            (`VDR_TWO_STAGE_CODE_DEPTH`). The Qdrant backend prefetches this many (or
            `two_stage_depth` when 0) for its multivector rerank.
        two_stage_min_vectors: the view size (vectors) from which "auto" searches in two stages
            (`VDR_TWO_STAGE_MIN_VECTORS`).
        first_stage: what finds the candidates: "tokens" (default: every vector's nearest centroid,
            inverted lists per centroid), "muvera" (one fixed-dimensional encoding per page) or
            "mean" (the page's mean vector) (`VDR_FIRST_STAGE`).
        model_given: whether `model` was asked for (VDR_MODEL, --model, or given in code); when
            not, a store that already holds vectors is opened with its own model.
    """

    model: str = DEFAULT_MODEL
    data_dir: Path = _default_data_dir()
    device: str = "auto"
    dtype: str = "auto"
    store_path: Path | None = None
    dpi: int = 120
    max_pages: int = 200
    max_upload_mb: float = 100.0
    max_image_pixels: int = 40_000_000
    batch_size: int = 0
    max_query_chars: int = 1000
    host: str = "127.0.0.1"
    port: int = 7860
    fallback_model: str = "text-layout-minilm"
    hf_home: Path | None = None
    temporary_library: bool = False
    zero_gpu: bool = False
    # -- deployment -------------------------------------------------------------------------------
    mode: str = "local"
    auth: tuple[tuple[str, str], ...] = ()
    sample_store: Path | None = None
    session_minutes: float = 60.0
    max_sessions: int = 50
    session_max_pages: int = 100
    session_max_mb: float = 50.0
    state_capacity: int = 200
    cache_minutes: float = 60.0
    # -- search index ---------------------------------------------------------------------------
    index: str = "memory"
    qdrant_url: str = ""
    qdrant_api_key: str = field(default="", repr=False)  # never printed or logged
    qdrant_path: Path | None = None
    qdrant_quantization: str = ""
    qdrant_shards: int = 1
    qdrant_replicas: int = 1
    mcp: bool = False
    search_mode: str = "auto"
    two_stage_depth: int = 200  # index.first_stage.DEFAULT_DEPTH, DEFAULT_CODE_DEPTH (docs/scale.md)
    two_stage_code_depth: int = 2000
    two_stage_min_vectors: int = 5_000_000
    first_stage: str = "tokens"
    model_given: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"VDR_MODE must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "shared" and not self.auth:
            raise ConfigError("VDR_MODE=shared needs logins: set VDR_AUTH=user:password[,user2:password2]")
        if self.mode == "shared" and self.mcp:
            raise ConfigError("the MCP server (VDR_MCP=1 or GRADIO_MCP_SERVER=true) does not work with "
                              "VDR_MODE=shared: MCP clients cannot sign in to its login page (see docs/mcp.md)")
        if self.auth and self.mode != "shared":
            # Logins are only checked in shared mode: served anyway, the app would be open to anyone
            # while whoever set them believes it is guarded.
            raise ConfigError(f"VDR_AUTH is set but VDR_MODE is {self.mode}, where nobody is asked to sign in: "
                              "set VDR_MODE=shared to require the logins (or unset VDR_AUTH)")

    @property
    def store_file(self) -> Path:
        """The SQLite file this configuration uses."""
        return Path(self.store_path) if self.store_path else Path(self.data_dir) / "vdr.sqlite"

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "Settings":
        """Build settings from `VDR_*` environment variables (unset ones keep their default).

        Raises:
            ConfigError: a value is not of its type or outside its range (one line naming it).
        """
        env = os.environ if environ is None else environ
        on_space = bool(env.get("SPACE_ID"))  # a Space must listen on 0.0.0.0; containers set VDR_HOST
        defaults = cls()
        read = _Reader(env)
        persistent = space_persistent_dir(env)
        data_dir = read.path("VDR_DATA_DIR", persistent / "vdr" if persistent else defaults.data_dir, must_be="dir")
        store = read.path("VDR_STORE", None, must_be="file")
        port_name = "VDR_PORT" if env.get("VDR_PORT", "").strip() else "PORT"
        return cls(
            model=read.text("VDR_MODEL", defaults.model),
            model_given=bool(env.get("VDR_MODEL", "").strip()),
            data_dir=data_dir,
            hf_home=persistent / "huggingface" if persistent and not env.get("HF_HOME", "").strip() else None,
            temporary_library=on_space and not _inside(store or data_dir, persistent),
            zero_gpu=env.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true"),  # as `spaces` reads it
            device=read.choice("VDR_DEVICE", defaults.device, DEVICE_PATTERN, "auto, cpu, cuda, cuda:N or mps"),
            dtype=read.choice("VDR_DTYPE", defaults.dtype, re.compile("auto|float32|bfloat16|float16"),
                              "auto, float32, bfloat16 or float16"),
            store_path=store,
            dpi=read.integer("VDR_DPI", defaults.dpi, 30, 600),
            max_pages=read.integer("VDR_MAX_PAGES", defaults.max_pages, 1, 100_000),
            max_upload_mb=read.number("VDR_MAX_UPLOAD_MB", defaults.max_upload_mb, 0.01, 100_000),
            max_image_pixels=read.integer("VDR_MAX_IMAGE_PIXELS", defaults.max_image_pixels, 100_000, 1_000_000_000),
            batch_size=read.integer("VDR_BATCH_SIZE", defaults.batch_size, 0, 1024),
            max_query_chars=read.integer("VDR_MAX_QUERY_CHARS", defaults.max_query_chars, 1, 1_000_000),
            host=read.text("VDR_HOST", "0.0.0.0" if on_space else defaults.host),
            port=read.integer(port_name, defaults.port, 1, 65535),
            fallback_model=read.text("VDR_FALLBACK_MODEL", defaults.fallback_model, allow_empty=True),
            mode=read.choice("VDR_MODE", defaults.mode, re.compile("|".join(MODES)), ", ".join(MODES)),
            auth=parse_auth(env.get("VDR_AUTH", "")),
            sample_store=read.path("VDR_SAMPLE_STORE", None, must_be="file"),
            session_minutes=read.number("VDR_SESSION_MINUTES", defaults.session_minutes, 1, 100_000),
            max_sessions=read.integer("VDR_MAX_SESSIONS", defaults.max_sessions, 1, 100_000),
            session_max_pages=read.integer("VDR_SESSION_MAX_PAGES", defaults.session_max_pages, 1, 100_000),
            session_max_mb=read.number("VDR_SESSION_MAX_MB", defaults.session_max_mb, 0.01, 100_000),
            state_capacity=read.integer("VDR_STATE_CAPACITY", defaults.state_capacity, 1, 1_000_000),
            cache_minutes=read.number("VDR_CACHE_MINUTES", defaults.cache_minutes, 1, 100_000),
            index=read.choice("VDR_INDEX", defaults.index, re.compile("memory|qdrant"), "memory or qdrant"),
            qdrant_url=read.text("VDR_QDRANT_URL", defaults.qdrant_url, allow_empty=True),
            qdrant_api_key=env.get("VDR_QDRANT_API_KEY", defaults.qdrant_api_key).strip(),
            qdrant_path=read.path("VDR_QDRANT_PATH", None, must_be="dir"),
            qdrant_quantization=read.choice("VDR_QDRANT_QUANTIZATION", defaults.qdrant_quantization,
                                            re.compile("int8|none"), "int8 or none (empty: none)"),
            qdrant_shards=read.integer("VDR_QDRANT_SHARDS", defaults.qdrant_shards, 1, 1024),
            qdrant_replicas=read.integer("VDR_QDRANT_REPLICAS", defaults.qdrant_replicas, 1, 64),
            # Read here so that the mode check sees Gradio's switch too; launch gets the result.
            mcp=read.flag("VDR_MCP", env.get("GRADIO_MCP_SERVER", "").strip().lower() == "true"),
            search_mode=read.choice("VDR_SEARCH_MODE", defaults.search_mode, re.compile("exhaustive|two-stage|auto"),
                                    "exhaustive, two-stage or auto"),
            two_stage_depth=read.integer("VDR_TWO_STAGE_DEPTH", defaults.two_stage_depth, 10, 100_000),
            two_stage_code_depth=read.integer("VDR_TWO_STAGE_CODE_DEPTH", defaults.two_stage_code_depth, 0, 1_000_000),
            two_stage_min_vectors=read.integer("VDR_TWO_STAGE_MIN_VECTORS", defaults.two_stage_min_vectors,
                                               0, 10**12),
            first_stage=read.choice("VDR_FIRST_STAGE", defaults.first_stage, re.compile("tokens|muvera|mean"),
                                     "tokens, muvera or mean"),
        )


def check_before_launch(settings: Settings) -> None:
    """What the web app needs from its settings, checked before anything is loaded: the data
    folder can be made, the address exists on this machine and the port is free, and a public
    demo's sample store can be read. Raises ConfigError naming the variable (one line)."""
    try:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"VDR_DATA_DIR={str(settings.data_dir)!r} cannot be created "
                          f"({error.strerror or error}): give a folder this user can write") from None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError):
        raise ConfigError(f"VDR_HOST={settings.host!r} is not an address or a name this machine can resolve: use "
                          "127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {settings.port} on {settings.host} is in use: stop what holds it or set "
                                  "VDR_PORT to another port") from None
            raise ConfigError(f"cannot listen on {settings.host}:{settings.port} ({error.strerror or error}): "
                              "check VDR_HOST (an address of this machine) and VDR_PORT") from None
    sample = settings.sample_store
    if settings.mode == "public-demo" and sample is not None and not (sample.is_file() and os.access(sample, os.R_OK)):
        raise ConfigError(f"VDR_SAMPLE_STORE={str(sample)!r} is not a readable file: give a store made with "
                          "`python -m vdr_app add`, or unset it for empty visitor libraries")


def parse_auth(text: str) -> tuple[tuple[str, str], ...]:
    """`user:password,user2:password2` -> ((user, password), ...); a pair without ':' is refused."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ConfigError("VDR_AUTH must be user:password pairs separated by commas (a pair is missing its ':')")
        pairs.append((user, password))
    return tuple(pairs)


_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,2})?")


class _Reader:
    """Reads one variable at a time, each unset or blank one giving its default."""

    def __init__(self, env) -> None:
        self.env = env

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return None if value is None or not value.strip() else value.strip()

    @staticmethod
    def _fail(name: str, value: str, allowed: str) -> ConfigError:
        shown = value if len(value) <= 40 else value[:37] + "..."
        return ConfigError(f"{name}={shown!r} is not valid: {allowed}")

    def text(self, name: str, default: str, allow_empty: bool = False) -> str:
        value = self.env.get(name)
        if value is None:
            return default
        if not value.strip() and not allow_empty:
            raise self._fail(name, value, "must not be empty (unset it for the default)")
        return value.strip()

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self._raw(name)
        if value is None:
            return default
        allowed = f"must be a whole number from {low:,} to {high:,}"
        if not re.fullmatch(r"[+-]?\d{1,12}", value):
            raise self._fail(name, value, allowed)
        number = int(value)
        if not low <= number <= high:
            raise self._fail(name, value, allowed)
        return number

    def flag(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        if value.lower() not in _FLAGS:
            raise self._fail(name, value, "must be 1, true, yes or on (or 0, false, no, off)")
        return _FLAGS[value.lower()]

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self._raw(name)
        if value is None:
            return default
        allowed = f"must be a number from {low:g} to {high:g}"
        try:
            number = float(value) if len(value) <= 32 else math.nan
        except ValueError:
            raise self._fail(name, value, allowed) from None
        if not (math.isfinite(number) and low <= number <= high):
            raise self._fail(name, value, allowed)
        return number

    def choice(self, name: str, default: str, pattern: re.Pattern, allowed: str) -> str:
        value = self._raw(name)
        if value is None:
            return default
        if not pattern.fullmatch(value):
            raise self._fail(name, value, f"must be one of {allowed}")
        return value

    def path(self, name: str, default, must_be: str):
        value = self._raw(name)
        if value is None:
            return default
        path = Path(value).expanduser()
        if must_be == "dir" and path.exists() and not path.is_dir():
            raise self._fail(name, value, "must be a folder (it is a file)")
        if must_be == "file" and path.is_dir():
            raise self._fail(name, value, "must be a file path (it is a folder)")
        return path
