"""The engine: the one place that composes pdf -> models -> reduce -> store -> search.

Encode once, reduce many times: full page embeddings are stored once; every view (a reduction
spec) is derived from them, stored, and kept in step when documents come and go. The CLI, the web
app and the evaluation lab all go through `Engine`; it knows nothing about any of them.

Long calls take `progress(fraction, message)`; encoding is serialised by a lock so two uploads do
not fight over one model, while searches run concurrently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from . import heatmap
from . import reduce as reduce_lib
from .config import Settings
from .errors import (
    EncodeError, IndexUnavailableError, InvalidQueryError, InvalidSpecError, ModelMismatchError, NotFoundError,
    PdfError, PdfTooLargeError, VdrError,
)
from .index import IndexStatus, SearchIndex, SyncReport, open_index
from .memory import MemorySummary, summarize
from .quantise import MAX_RESCORE, bytes_per_vector, cosine_error
from .models.base import Encoder
from .pdf import PdfLimits, check_pdf_bytes, inspect_pdf, render_pdf
from .store import FULL_VIEW, AddResult, DocumentRow, PageRow, Store
from .types import PageEmbedding, Progress, QueryEmbedding, Reduction, SearchHit, log_progress, scaled_progress

log = logging.getLogger(__name__)


DEFAULT_RESCORE = 100  # candidates of a quantised view re-scored exactly, unless the caller says otherwise


def check_rescore(rescore: int | float | str | None) -> int:
    """The rescoring depth as an int (None -> DEFAULT_RESCORE); InvalidQueryError when it is not a
    whole number in [0, MAX_RESCORE]."""
    if rescore is None or rescore == "":
        return DEFAULT_RESCORE
    shown = repr(rescore) if len(str(rescore)) <= 24 else f"{str(rescore)[:20]!r}... ({len(str(rescore))} characters)"
    try:  # a 400-digit int does not fit a float: OverflowError, refused like any other bad number
        value = float(rescore) if len(str(rescore)) <= 32 else math.inf
    except (TypeError, ValueError, OverflowError):
        raise InvalidQueryError(f"rescore must be a whole number of pages (0 = none), got {shown}") from None
    if value != value or not 0 <= value <= MAX_RESCORE or value != int(value):
        raise InvalidQueryError(f"rescore must be a whole number from 0 to {MAX_RESCORE} (0 = none), got {shown}")
    return int(value)


def expected_model_id(model: str) -> str:
    """The model id an encoder loaded from `model` records in the store (without loading it): a
    local folder's absolute path, else the hub id or encoder name as given."""
    text = (model or "").strip()
    path = Path(text).expanduser()
    return str(path.resolve()) if text and path.is_dir() else text


@dataclass
class Exploration:
    """One page under one view, computed on the fly (nothing stored): what the Explore tab shows."""

    page: PageRow
    embedding: PageEmbedding
    reduction: Reduction
    spec: str
    kinds: frozenset[str]  # {"pruning"}, {"merging"}, both (prune_then_merge), or empty (identity)
    full_vectors: int
    view_vectors: int
    dim: int
    quant: str | None = None  # "int8" / "int4" / "int2" / "binary" for a quantised view
    # float32 (n,) for a quantised view: per patch, the cosine between the float vector that stands
    # for it and its dequantised code (NaN where pruned); None otherwise
    quant_cosine: np.ndarray | None = None
    # float64 (n,) SAP's score per patch (mid-layer in-degree centrality averaged over the window
    # the view uses, or the store's `layers=auto` window), and that window (first, last, n_layers);
    # None for a page stored without centrality
    centrality: np.ndarray | None = None
    centrality_window: tuple[int, int, int] | None = None

    @property
    def kind(self) -> str:
        """How to draw `reduction.groups`: "merging" (colour by group; -1 still means pruned),
        "pruning" (kept vs pruned) or "identity"."""
        if reduce_lib.MERGING in self.kinds:
            return "merging"
        return "pruning" if reduce_lib.PRUNING in self.kinds else "identity"

    @property
    def full_bytes(self) -> int:
        return self.full_vectors * self.dim * 2

    @property
    def view_bytes(self) -> int:
        """The view's real bytes for this page (codes and scales for a quantised view)."""
        return self.view_vectors * bytes_per_vector(self.dim, self.quant)


@dataclass
class RankingComparison:
    """How a view's ranking for one query differs from the full index's."""

    full: list[SearchHit]
    view: list[SearchHit]
    overlap: float  # |top-k(full) ∩ top-k(view)| / k
    moved: list[dict] = field(default_factory=list)  # per view hit: full rank (None if new) and shift


@dataclass
class Explanation:
    """Why a page matched a query: each query token's similarity to every original patch.

    For a reduced view each patch shows the similarity of the vector that stands for it in that
    view (mapped back through `Reduction.groups`); patches the view pruned are NaN.
    """

    page: PageRow
    embedding: PageEmbedding
    query: QueryEmbedding
    spec: str
    maps: np.ndarray  # float32 (q, n): query token x original patch
    tokens: list[int]  # indices of the query tokens worth a map (see heatmap.content_tokens)


@dataclass(frozen=True)
class SapWindow:
    """What `layers=auto` of a `sap` view means in a store: decoder layers first..last of n_layers,
    the window `sap-window` recorded for the store's model (calibrated) or else the paper's middle band."""

    first: int
    last: int
    n_layers: int
    calibrated: bool

    @property
    def layers(self) -> str:
        return f"{self.first}-{self.last}"


def _phase(progress: Progress, name: str, phase: str, n_pages: int | None = None) -> Progress:
    """A Progress that words a step's callbacks as "NAME: PHASE page i/n".

    Rendering reports "rendered page i/n" after each page; encoders report after each batch. For
    encoding, the page named is the next one being worked on. Messages naming OCR pass through
    (OCR takes seconds a page: the user should see it is running).
    """

    def report(fraction: float, message: str) -> None:
        if "OCR" in message or "reading the text" in message:
            progress(fraction, f"{name}: {message}")
            return
        if n_pages:
            page = min(n_pages, int(round(fraction * n_pages)) + (1 if fraction < 1 else 0))
            progress(fraction, f"{name}: {phase} page {max(page, 1)}/{n_pages}")
            return
        words = message.rsplit("page ", 1)
        progress(fraction, f"{name}: {phase} page {words[1]}" if len(words) == 2 else f"{name}: {phase}")

    return report


def _first_rows(codes, k: int):
    """The QuantisedVectors of the first k rows (a view's own vectors, without extra tokens)."""
    return dataclasses.replace(codes, codes=codes.codes[:k], scales=None if codes.scales is None else codes.scales[:k])


def _prefixed(progress: Progress, prefix: str) -> Progress:
    return lambda fraction, message: progress(fraction, prefix + message)


@dataclass(frozen=True)
class LibraryQuota:
    """How much one library may hold (a public-demo visitor's): pages, and bytes of PDFs added."""

    max_pages: int
    max_bytes: int

    def check(self, store: Store, name: str, n_pages: int, n_bytes: int) -> None:
        """Raise PdfTooLargeError (one line) if adding this file would go over either limit."""
        documents = store.list_documents()
        pages = sum(d.n_pages for d in documents) + n_pages
        size = sum(d.n_bytes for d in documents) + n_bytes
        if pages > self.max_pages:
            raise PdfTooLargeError(f"{name}: its {n_pages} pages would bring your library to {pages} pages, over "
                                   f"the limit of {self.max_pages} per visitor; delete a document first")
        if size > self.max_bytes:
            raise PdfTooLargeError(f"{name}: it would bring your library to {size / 2**20:.1f} MB of PDFs, over the "
                                   f"limit of {self.max_bytes / 2**20:.1f} MB per visitor; delete a document first")


class Engine:
    """Index PDFs, keep views, search.

    Args:
        settings: configuration (model, store path, limits).
        encoder: an already loaded encoder; loaded lazily from `settings.model` when None.
        store: an open store; opened from `settings.store_file` when None.
        index: a search index over that store; opened from the settings when None (memory
            by default, or Qdrant: see vdr_app.index).
    """

    def __init__(self, settings: Settings | None = None, encoder: Encoder | None = None, store: Store | None = None,
                 index: SearchIndex | None = None):
        self.settings = settings or Settings()
        self._encoder = encoder
        self.store = store or Store(self.settings.store_file)
        self.limits = PdfLimits(
            dpi=self.settings.dpi,
            max_pages=self.settings.max_pages,
            max_bytes=int(self.settings.max_upload_mb * 1024 * 1024),
            max_pixels=self.settings.max_image_pixels,
        )
        self._encode_lock = threading.Lock()
        self._model_owner: Engine | None = None  # see sharing_model
        self.quota: LibraryQuota | None = None  # a public-demo visitor's limit (vdr_app.sessions)
        self._store_version = self.store.data_version()
        # SQLite is written first, the index second; see vdr_app.index for what happens when the
        # second step fails (the document stays stored and is reported pending).
        self.index = index or open_index(self.settings, self.store)
        self._load_error: Exception | None = None
        stored = self.store.model_id
        if encoder is None and stored and not self.settings.model_given and stored != self.settings.model:
            # No model asked for: the store's own model is the one that can search it.
            log.info("no model given: using the store's model %s", stored)
            self.settings = dataclasses.replace(self.settings, model=stored)

    # -- model ------------------------------------------------------------------------------------

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use (raises ModelLoadError with what to do).

        A model the store was not built with is refused before loading (ModelMismatchError), and
        a failed load is remembered: later calls raise the same error at once instead of trying
        again (a hub id without network costs ~20 s of retries) until `retry_model` or
        `set_model`.
        """
        if self._model_owner is not None:
            return self._model_owner.encoder
        if self._encoder is None:
            from .models import load_encoder

            with self._encode_lock:
                if self._encoder is None:
                    if self._load_error is not None:
                        raise self._load_error
                    try:
                        self.check_store_model()
                        encoder = load_encoder(
                            self.settings.model, device=self.settings.device, batch_size=self.settings.batch_size,
                            dtype=self.settings.dtype,
                        )
                        if self.settings.zero_gpu:
                            from .models.zerogpu import on_gpu_worker

                            encoder = on_gpu_worker(encoder)
                        self._encoder = encoder
                    except Exception as error:
                        self._load_error = error
                        raise
        return self._encoder

    @property
    def model_loaded(self) -> bool:
        return self._model_owner.model_loaded if self._model_owner is not None else self._encoder is not None

    def sharing_model(self, store: Store) -> "Engine":
        """An engine over another store that uses this engine's encoder (loaded once, shared, with
        one encoding lock): the web app's per-visitor libraries in public-demo mode."""
        # Visitors' temporary libraries are small and short-lived: always the in-process index.
        other = Engine(dataclasses.replace(self.settings, index="memory"), store=store)
        other._model_owner = self
        other._encode_lock = self._encode_lock
        return other

    @property
    def model_error(self) -> str:
        """The remembered load failure ('' when none)."""
        error = self._load_error
        if error is None:
            return ""
        return str(error) if isinstance(error, VdrError) else f"{type(error).__name__}: {error}"

    def check_store_model(self) -> None:
        """Refuse at once (ModelMismatchError, one line) a model the store was not built with."""
        stored = self.store.model_id
        wanted = expected_model_id(self.settings.model)
        if stored and wanted != stored:
            raise ModelMismatchError(
                f"this store holds vectors of '{stored}', not '{self.settings.model}': "
                f"leave the model unset to use the store's, or use another store (--store PATH / VDR_DATA_DIR)"
            )

    def retry_model(self) -> None:
        """Forget a failed load, so the next use tries to load the model again."""
        with self._encode_lock:
            self._load_error = None

    def set_model(self, model: str) -> None:
        """Use another checkpoint or encoder name from now on (loaded lazily like the first).

        The web app offers this when the configured checkpoint cannot be loaded.
        """
        with self._encode_lock:
            self.settings = dataclasses.replace(self.settings, model=model, model_given=True)
            self._encoder = None
            self._load_error = None

    # -- documents --------------------------------------------------------------------------------

    def add_pdf(self, data: bytes, name: str, progress: Progress | None = None) -> AddResult:
        """Render, encode, reduce for every stored view, and store one PDF in one transaction.

        Adding bytes already stored is a no-op (returns `added=False`). Bad files raise a PdfError
        before anything is encoded or written. Progress names the phase: "NAME: reading page
        i/n", "loading the model", "encoding page i/n" (or "OCR page i/n"), "computing N views".
        """
        progress = progress or log_progress
        name = Path(name).name
        check_pdf_bytes(data, name, self.limits)
        sha256 = hashlib.sha256(data).hexdigest()
        existing = self.store.find_document(sha256)
        if existing is not None:
            progress(1.0, f"{name}: already indexed")
            n_pages = next((d.n_pages for d in self.store.list_documents() if d.id == existing), 0)
            return AddResult(doc_id=existing, added=False, n_pages=n_pages)
        if not self.model_loaded:
            self.check_store_model()  # a model this store cannot take is refused before rendering
        progress(0.0, f"{name}: reading")
        pages = render_pdf(data, name, self.limits, _phase(scaled_progress(progress, 0.0, 0.1), name, "reading"))
        if self.quota is not None:
            self.quota.check(self.store, name, len(pages), len(data))
        if not self.model_loaded:
            progress(0.1, f"{name}: loading the model {self.settings.model}")
        encoder = self.encoder
        self.store.check_model(encoder.model_id, encoder.dim)
        embeddings = self._encode_pages(encoder, pages, name, progress)
        specs = self.store.view_specs()
        if specs:
            progress(0.9, f"{name}: computing {len(specs)} view{'s' if len(specs) != 1 else ''}")

        def reduce_view(spec: str) -> list[Reduction]:
            return [reduce_lib.reduce_page(e, spec) for e in embeddings]

        views = {spec: reduce_view(spec) for spec in specs}
        progress(0.97, f"{name}: saving")
        # A view stored meanwhile (another process, a racing view add) is computed inside the
        # store's transaction, so the document never lands with a view missing its pages.
        result = self.store.add_document(
            name, sha256, len(data), encoder.model_id, list(zip(pages, embeddings)), views, reduce_view=reduce_view
        )
        try:
            self.index.add_document(result.doc_id)
        except VdrError as error:
            log.warning("%s is stored but not in the search index yet: %s", name, error)
            progress(1.0, f"{name}: {len(pages)} pages stored, pending in the index")
            return dataclasses.replace(result, index_error=str(error))
        progress(1.0, f"{name}: {len(pages)} pages indexed")
        return result

    def _encode_pages(self, encoder: Encoder, pages: list, name: str, progress: Progress) -> list[PageEmbedding]:
        """Encode a file's rendered pages (progress 0.1-0.9), one file at a time; EncodeError when the
        model refuses them."""
        encoding = _phase(scaled_progress(progress, 0.1, 0.9), name, "encoding", len(pages))
        with self._encode_lock:
            encoding(0.0, "")
            try:
                return encoder.encode_pages(pages, encoding)
            except ValueError as error:  # e.g. a page shape the checkpoint refuses (ColQwen2: aspect ratio)
                log.info("%s: encoding failed", name, exc_info=True)  # the traceback with -v; the error says why
                raise EncodeError(f"{name}: the model cannot encode this file's pages ({error})") from error

    def reencode_pdf(self, data: bytes, name: str, progress: Progress | None = None) -> tuple[int, int]:
        """Encode a stored PDF again and swap its embeddings and view rows in one transaction.

        For pages stored before a signal was captured (the per-layer centrality `sap` needs):
        the same bytes give the same pages, so page ids, images and the document row stay and
        every view is recomputed from the new embeddings. A failure leaves the document as it was.

        Returns:
            (document id, pages re-encoded).

        Raises:
            NotFoundError: the PDF is not stored (add it instead); PdfError for a bad file.
        """
        progress = progress or log_progress
        name = Path(name).name
        check_pdf_bytes(data, name, self.limits)
        doc_id = self.store.find_document(hashlib.sha256(data).hexdigest())
        if doc_id is None:
            raise NotFoundError(f"{name} is not in this store (its bytes match no stored document); add it instead")
        pages = render_pdf(data, name, self.limits, _phase(scaled_progress(progress, 0.0, 0.1), name, "reading"))
        encoder = self.encoder
        embeddings = self._encode_pages(encoder, pages, name, progress)
        progress(0.95, f"{name}: saving")
        self.store.replace_embeddings(
            doc_id, encoder.model_id, embeddings,
            lambda spec: [reduce_lib.reduce_page(e, spec) for e in embeddings],
        )
        try:  # the index holds the old vectors of these pages: load the new ones
            self.index.remove_document(doc_id)
            self.index.add_document(doc_id)
        except VdrError as error:
            log.warning("%s is re-encoded in the store; the search index catches up on sync: %s", name, error)
        progress(1.0, f"{name}: {len(pages)} pages re-encoded")
        return doc_id, len(pages)

    def check_files(self, paths: Sequence[str | Path]) -> list[tuple[Path, bytes | None, VdrError | None]]:
        """Read and check every file without encoding: (path, bytes or None if not read, the error
        it would raise or None). A file over the size limit is refused before it is read."""
        out: list[tuple[Path, bytes | None, VdrError | None]] = []
        for path in (Path(p) for p in paths):
            if not path.is_file():
                out.append((path, None, NotFoundError(f"{path.name}: no such file")))
                continue
            size = path.stat().st_size  # before reading: a 2 GB file is refused without loading it
            if size > self.limits.max_bytes:
                out.append((path, None, PdfTooLargeError(
                    f"{path.name}: {size / 1e6:.1f} MB exceeds the upload limit of {self.limits.max_bytes / 1e6:.1f} MB"
                )))
                continue
            data = path.read_bytes()
            try:
                inspect_pdf(data, path.name, self.limits)
            except PdfError as error:
                out.append((path, data, error))
            else:
                out.append((path, data, None))
        return out

    def add_files(self, paths: Sequence[str | Path], progress: Progress | None = None) -> list[AddResult]:
        """Add several PDFs, all or none. Every file is checked before any is encoded, so one bad
        file changes nothing (the error names every bad file, one per line); if a later file fails
        in the encoder, the files this call already added are taken out again."""
        progress = progress or log_progress
        files = [Path(p) for p in paths]
        progress(0.0, f"reading {len(files)} file{'s' if len(files) != 1 else ''}")
        checked = self.check_files(files)
        missing = [str(error) for _, _, error in checked if isinstance(error, NotFoundError)]
        if missing:
            raise NotFoundError("\n".join(missing))
        bad = [error for _, _, error in checked if error is not None]
        if len(bad) == 1:
            raise bad[0]
        if bad:
            raise PdfError(f"{len(bad)} of {len(files)} files cannot be indexed; nothing was added:\n"
                           + "\n".join(map(str, bad)))
        results: list[AddResult] = []
        try:
            for i, (path, data, _) in enumerate(checked):
                sub = scaled_progress(progress, i / len(files), (i + 1) / len(files))
                if len(files) > 1:
                    sub = _prefixed(sub, f"file {i + 1}/{len(files)} · ")
                results.append(self.add_pdf(data, path.name, sub))
        except BaseException as error:
            added = [(path.name, r.doc_id) for (path, _, _), r in zip(checked, results) if r.added]
            for _, doc_id in reversed(added):
                self.store.delete_document(doc_id)
                try:
                    self.index.remove_document(doc_id)
                except VdrError:  # stale index pages are skipped by search; `index sync` removes them
                    log.warning("document %d taken out of the store; its index pages are pending removal", doc_id)
            if added and isinstance(error, VdrError):
                names = ", ".join(n for n, _ in added)
                raise type(error)(f"{error}; nothing was added ({names} taken out again)") from error
            raise
        return results

    def delete_document(self, ref: str | int) -> int:
        """Delete a document (id, name or sha256 prefix) and everything derived from it."""
        doc_id = self.store.resolve_document(ref)
        self.store.delete_document(doc_id)
        try:
            self.index.remove_document(doc_id)
        except VdrError as error:  # search skips the stale pages meanwhile
            raise IndexUnavailableError(f"document {doc_id} is deleted from the store, but its pages are still "
                                        f"in the search index: {error}") from error
        return doc_id

    def list_documents(self) -> list[DocumentRow]:
        return self.store.list_documents()

    def pages(self, doc_id: int | None = None) -> list[PageRow]:
        rows = self.store.page_rows()
        return [r for r in rows if doc_id is None or r.doc_id == doc_id]

    def page_image(self, page_id: int) -> Image.Image:
        return self.store.page_image(page_id)

    def page_jpeg(self, page_id: int) -> bytes:
        """The stored page image, undecoded (JPEG at the rendering resolution): for a viewer."""
        return self.store.page_jpeg(int(page_id))

    def page(self, page_id: int) -> PageRow:
        """One page's row (document name, page number, size), or NotFoundError."""
        rows = self.store.page_rows_existing([int(page_id)])
        if not rows:
            raise NotFoundError(f"no page with id {page_id}")
        return rows[0]

    def pages_without_text(self, doc_id: int) -> tuple[list[int], str | None]:
        """Page numbers of a document where the encoder found no text, and the known cause when
        there is one (e.g. "OCR unavailable: ..."), so that nobody mistakes it for a blank page."""
        rows = [p for p in self.pages(doc_id) if p.info.get("no_text")]
        reasons = {p.info["ocr_unavailable"] for p in rows if p.info.get("ocr_unavailable")}
        reason = f"OCR unavailable: {sorted(reasons)[0]}" if reasons else None
        return [p.page_number for p in rows], reason

    # -- views ------------------------------------------------------------------------------------

    @staticmethod
    def canonical_view(spec: str | None) -> str:
        """The canonical text of a view spec; "full" (and identity) for the stored embeddings,
        "full@int8" / "full@binary" for them quantised."""
        if spec is None or str(spec).strip() in ("", FULL_VIEW):
            return FULL_VIEW
        parsed = reduce_lib.parse_spec(str(spec))
        if parsed.strategy == "identity":
            return FULL_VIEW + (f"@{parsed.quant}" if parsed.quant else "")
        return str(parsed)

    def sap_window(self) -> SapWindow | None:
        """The window `layers=auto` resolves to in this store: the one `record_sap_window` stored for
        the store's model, else the middle band of its layer count; None while no page has centrality."""
        from .reduce.sap import middle_window, window

        n_layers = self.store.centrality_layers()
        model_id = self.store.model_id
        recorded = self.store.sap_window(model_id) if model_id else None
        if recorded is not None and (n_layers is None or int(recorded["n_layers"]) == n_layers):
            first, last = window(recorded["layers"], int(recorded["n_layers"]))
            return SapWindow(first, last, int(recorded["n_layers"]), True)
        if n_layers is None:
            return None
        first, last = middle_window(n_layers)
        return SapWindow(first, last, n_layers, False)

    def resolve_view(self, spec: str | None) -> str:
        """The canonical spec with `sap`'s `layers=auto` replaced by this store's window (`sap_window`).

        A view is stored under the window it was cut with, so recording a window later never changes
        what a stored view holds. One exception keeps older stores working: a view stored with
        `layers=auto` before windows were resolved (cut with the middle band) answers to its own name
        until a window is recorded, which renames it to its band (`record_sap_window`).
        """
        from .reduce.sap import AUTO

        canonical = self.canonical_view(spec)
        if not canonical.startswith("sap:"):
            return canonical
        parsed = reduce_lib.parse_spec(canonical)
        if parsed.kwargs["layers"] != AUTO:
            return canonical
        resolved = self.sap_window()
        if resolved is None or (not resolved.calibrated and self.store.has_view(canonical)):
            return canonical  # no centrality stored (the view says what to do), or an older auto view
        return str(parsed.with_values(layers=resolved.layers))

    def record_sap_window(self, layers: str, n_layers: int, details: dict | None = None) -> dict[str, str]:
        """Record the window `layers=auto` means from now on for this store's model.

        Views stored with `layers=auto` (cut with the middle band) are renamed to that band in the
        same transaction, so no stored view changes what it holds or claims.

        Returns:
            old name -> new name of every renamed view.
        """
        from .reduce.sap import AUTO, middle_window, window

        model_id = self.store.model_id
        if model_id is None:
            raise NotFoundError("the store holds no pages yet: add the labelled documents first")
        first, last = window(layers, n_layers)
        band = "{}-{}".format(*middle_window(n_layers))
        renames = {}
        for spec in self.store.view_specs():
            parsed = reduce_lib.parse_spec(spec)
            if parsed.strategy == "sap" and parsed.kwargs["layers"] == AUTO:
                renames[spec] = str(parsed.with_values(layers=band))
        record = {**(details or {}), "layers": f"{first}-{last}", "n_layers": int(n_layers)}
        self.store.record_sap_window(model_id, record, renames)
        for old, new in renames.items():
            self.index.remove_view(old)
            self.index.add_view(new)
        return renames

    def add_view(self, spec: str, progress: Progress | None = None) -> str:
        """Compute and store a view over every page (no re-encoding). Returns its canonical spec
        (`sap`'s `layers=auto` resolved: `resolve_view`)."""
        progress = progress or log_progress
        canonical = self.resolve_view(spec)
        if canonical == FULL_VIEW:
            raise InvalidSpecError("'full' is always available; it needs no view")
        page_ids = self.store.page_ids()
        reductions = {}
        for i, (page_id, embedding) in enumerate(self.store.iter_page_embeddings(page_ids)):
            reductions[page_id] = reduce_lib.reduce_page(embedding, canonical)
            progress((i + 1) / max(len(page_ids), 1), f"{canonical}: page {i + 1}/{len(page_ids)}")
        # Pages added meanwhile (another process, a racing upload) are reduced inside the
        # store's transaction; pages deleted meanwhile are dropped there.
        self.store.add_view(
            canonical, reductions,
            reduce_page=lambda page_id: reduce_lib.reduce_page(self.store.page_embedding(page_id), canonical),
            quant=reduce_lib.parse_spec(canonical).quant,
        )
        self.index.add_view(canonical, progress)
        return canonical

    def ensure_view(self, spec: str | None, progress: Progress | None = None) -> str:
        """The canonical spec, computing and storing the view on first use."""
        canonical = self.resolve_view(spec)
        if not self.store.has_view(canonical):
            self.add_view(canonical, progress)
        return canonical

    def delete_view(self, spec: str) -> str:
        canonical = self.resolve_view(spec)
        if canonical == FULL_VIEW:
            raise InvalidSpecError("the full index cannot be deleted; delete documents instead")
        self.store.delete_view(canonical)
        self.index.remove_view(canonical)
        return canonical

    def views(self) -> list[MemorySummary]:
        """Memory of the full index and of every stored view (real bytes: codes and scales for a
        quantised view)."""
        dim = self.store.dim or 0
        full_counts = self.store.vector_counts(FULL_VIEW)
        total = int(full_counts.sum())
        out = [summarize(FULL_VIEW, full_counts, dim, total)]
        for spec in self.store.view_specs():
            out.append(summarize(spec, self.store.vector_counts(spec), dim, total, self.store.view_quant(spec)))
        return out

    @staticmethod
    def strategies() -> list[dict]:
        """Every registered reduction strategy with its parameters (for UI choices)."""
        return reduce_lib.describe_strategies()

    def explore(self, page_id: int, spec: str) -> Exploration:
        """Reduce one page under a spec on the fly (nothing stored, no re-encoding)."""
        canonical = self.resolve_view(spec)
        embedding = self.store.page_embedding(page_id)
        strategy = "identity" if canonical == FULL_VIEW else canonical
        reduction = reduce_lib.reduce_page(embedding, strategy)
        page = self.store.page_rows([page_id])[0]
        quant = reduce_lib.parse_spec(strategy).quant
        cosine = None
        if reduction.quantised is not None:
            # Per output vector, then mapped back to the patches it stands for (NaN where pruned).
            per_vector = cosine_error(reduction.vectors, _first_rows(reduction.quantised, reduction.vectors.shape[0]))
            cosine = np.full(embedding.n_patches, np.nan, dtype=np.float32)
            kept = reduction.groups >= 0
            cosine[kept] = per_vector[reduction.groups[kept]]
        centrality = window = None
        if embedding.centrality is not None:
            from .reduce.sap import sap_scores

            # the layers of the sap view shown (resolved: `resolve_view`), else what `layers=auto` means here
            parsed = reduce_lib.parse_spec(strategy)
            resolved = self.sap_window()
            layers = (parsed.kwargs["layers"] if parsed.strategy == "sap"
                      else resolved.layers if resolved is not None else "auto")
            centrality, (first, last) = sap_scores(embedding.centrality, layers)
            window = (first, last, int(embedding.centrality.shape[0]))
        return Exploration(
            centrality=centrality,
            centrality_window=window,
            page=page,
            embedding=embedding,
            reduction=reduction,
            spec=canonical,
            kinds=reduce_lib.strategy_kinds(strategy),
            full_vectors=embedding.n_patches + len(embedding.extra),
            view_vectors=reduction.n_vectors,
            dim=embedding.dim,
            quant=quant,
            quant_cosine=cosine,
        )

    # -- search -----------------------------------------------------------------------------------

    def encode_query(self, query: str) -> QueryEmbedding:
        """Validate and encode one query (InvalidQueryError for empty or too long)."""
        text = (query or "").strip()
        if not text:
            raise InvalidQueryError("the query is empty: type a few words to search for")
        if len(text) > self.settings.max_query_chars:
            raise InvalidQueryError(
                f"the query has {len(text)} characters; the limit is {self.settings.max_query_chars}"
            )
        self.store.check_model(self.encoder.model_id, self.encoder.dim)
        return self.encoder.encode_queries([text])[0]

    def resolve_documents(self, docs: Sequence[str | int] | None) -> list[int] | None:
        """Document ids for a search filter (ids, file names or sha256 prefixes); None for no filter.

        Raises NotFoundError naming the first reference that matches no document.
        """
        if docs is None:
            return None
        refs = [d for d in docs if str(d).strip()]
        return sorted({self.store.resolve_document(d) for d in refs}) if refs else None

    def sync_with_store(self) -> bool:
        """Bring the search index up to date with writes made by other processes (the CLI, a
        second app on the same store); True when there were any. Called before every search.

        Cheap when nothing changed (one PRAGMA); otherwise the index syncs incrementally (pages
        and views added or deleted elsewhere), not a rebuild.
        """
        version = self.store.data_version()
        if version == self._store_version:
            return False
        log.info("the store changed outside this engine; bringing the search index in step")
        self._store_version = version
        self.index.sync()
        return True

    def search_embedding(self, query: QueryEmbedding, k: int = 10, view: str | None = None,
                         docs: Sequence[str | int] | None = None, rescore: int | None = None) -> list[SearchHit]:
        """Rank pages for an encoded query by MaxSim over one view (computed on first use),
        optionally only the pages of some documents (`docs`: ids, names or sha256 prefixes).

        rescore: for a quantised view, re-score its quantised top max(rescore, k) exactly with
            the float view's vectors (rebuilt from the full embeddings); 0 = quantised scores
            only; None = `DEFAULT_RESCORE`. Ignored for float views.
        """
        if k < 1:
            raise InvalidQueryError(f"k must be at least 1, got {k}")
        rescore = check_rescore(rescore)
        self.sync_with_store()
        doc_ids = self.resolve_documents(docs)
        spec = self.ensure_view(view)
        ranked = self.index.top_k(spec, query.vectors, k, doc_ids, rescore=rescore)
        rows = {r.id: r for r in self.store.page_rows_existing([pid for pid, _ in ranked])}
        hits = []
        for pid, score in ranked:
            row = rows.get(pid)
            if row is None:  # deleted from the store, not yet from the index (see `index status`)
                continue
            hits.append(SearchHit(row.id, row.doc_id, row.doc_name, row.page_number, float(score), len(hits) + 1))
        return hits

    def search(self, query: str, k: int = 10, view: str | None = None,
               docs: Sequence[str | int] | None = None, rescore: int | None = None) -> list[SearchHit]:
        """Encode a query and rank pages by MaxSim over one view ("full" by default); `rescore`
        as in `search_embedding`."""
        view = self.canonical_view(view)  # a bad spec fails before the model is loaded
        self.resolve_documents(docs)  # so does an unknown document
        check_rescore(rescore)
        return self.search_embedding(self.encode_query(query), k, view, docs, rescore)

    # -- index ------------------------------------------------------------------------------------

    def index_status(self) -> IndexStatus:
        """The search index against the store: pages and vectors per view, pending, stale."""
        return self.index.status()

    def sync_index(self, progress: Progress | None = None) -> SyncReport:
        """Bring the search index in step with the store (incremental, idempotent): repairs missed
        writes, builds a fresh Qdrant collection from an existing store, and picks up what another
        process wrote to the store."""
        return self.index.sync(progress or log_progress)

    def index_problem(self) -> str | None:
        """One line when the index is out of step with the store or cannot be reached, else None
        (what the CLI and the app say at start)."""
        try:
            return self.index.status().problem()
        except IndexUnavailableError as error:
            return str(error)

    def compare(self, query: str, k: int = 10, view: str | None = None,
                docs: Sequence[str | int] | None = None, rescore: int | None = None) -> RankingComparison:
        """Search the full index and a view with the same query; report overlap and moves."""
        self.resolve_documents(docs)
        check_rescore(rescore)
        embedding = self.encode_query(query)
        full = self.search_embedding(embedding, k, FULL_VIEW, docs)
        reduced = self.search_embedding(embedding, k, view, docs, rescore)
        full_rank = {h.page_id: h.rank for h in full}
        moved = [
            dict(
                page_id=h.page_id, doc_name=h.doc_name, page_number=h.page_number, view_rank=h.rank,
                full_rank=full_rank.get(h.page_id),
                shift=None if h.page_id not in full_rank else full_rank[h.page_id] - h.rank,
            )
            for h in reduced
        ]
        overlap = len(set(full_rank) & {h.page_id for h in reduced}) / max(min(k, len(full)), 1)
        return RankingComparison(full=full, view=reduced, overlap=overlap, moved=moved)

    def explain(self, query: str | QueryEmbedding, page_id: int, view: str | None = None) -> Explanation:
        """Per-token similarity maps of one page for a query, under a view ("full" by default).

        A stored view is read as stored; any other spec is reduced on the fly (nothing stored).
        For a quantised view each vector is its dequantised code scaled to unit length, so a map
        shows the cosine between the query token and what the view holds (the ±1 direction for
        binary).
        """
        embedding_q = query if isinstance(query, QueryEmbedding) else self.encode_query(query)
        spec = self.resolve_view(view)
        embedding = self.store.page_embedding(page_id)
        if spec == FULL_VIEW:
            maps = heatmap.similarity_maps(embedding_q.vectors, embedding.patches)
        else:
            reduction = (
                self.store.view_reduction(spec, page_id)
                if self.store.has_view(spec)
                else reduce_lib.reduce_page(embedding, spec)
            )
            vectors = reduction.vectors
            if reduction.quantised is not None:
                vectors = reduction.quantised.dequantise()[: vectors.shape[0]]
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.where(norms > 0, norms, 1.0)
            maps = heatmap.similarity_maps(embedding_q.vectors, embedding.patches, reduction.groups, vectors)
        return Explanation(
            page=self.store.page_rows([page_id])[0],
            embedding=embedding,
            query=embedding_q,
            spec=spec,
            maps=maps,
            tokens=heatmap.content_tokens(embedding_q.tokens or [str(i) for i in range(len(embedding_q.vectors))]),
        )

    # -- stats ------------------------------------------------------------------------------------

    def stats(self) -> dict:
        """Store totals and the memory of every view, as plain data (CLI `stats --json`, UI)."""
        documents = self.store.list_documents()
        return dict(
            store=self.store.path,
            model=self.store.model_id,
            dim=self.store.dim,
            schema_version=self.store.schema_version,
            documents=len(documents),
            pages=sum(d.n_pages for d in documents),
            file_bytes=self.store.file_bytes(),
            reclaimable_bytes=self.store.reclaimable_bytes(),
            views=[v.as_dict() for v in self.views()],
        )

