"""The index on Qdrant: a server, a cluster, or qdrant-client's local mode (a folder).

Layout (one store, one model):

* One collection per view, named from the store and the model: `vdr_<store>_<model>_<hash>` holds
  the full view and `<that>__<hash of the spec>` each stored view. A view added later is a new
  collection built from the store; deleting a view drops its collection (its memory is freed at
  once; no rewrite of the full view's points).
* One point per page: id = the store's page id; payload doc_id, doc_name, page_number, sha256 and
  n_vectors; one named multivector "page" (`MAX_SIM` over dot products, float16 storage, so
  the store's float16 vectors are held exactly). A page without vectors gets a point without it.
* HNSW off on the multivector (`m=0`): building HNSW over multivectors is far too slow
  (../shared/notes/scale-out.md); search is brute force per shard, so it scales by shards.
* `VDR_QDRANT_QUANTIZATION=int8`: scalar int8 kept in RAM, the float16 originals on disk, and
  queries rescore with the originals (oversampling 2).
* Quantised views (`...@int8`, `...@int4`, `...@int2`, `...@binary`): the collection holds the
  float view's vectors (rebuilt from the store's full embeddings and the view's groups) at float32
  on disk, and Qdrant's own quantisation in RAM: scalar int8 (Qdrant's scale is per collection,
  from the 0.99 quantile, not our per-vector scale), TurboQuant at 4 or 2 bits (Qdrant >= 1.18:
  its own rotation and codebook, not ours) or binary (one bit per value). A search asks Qdrant to rescore with
  the originals, oversampling rescore / k, or not to rescore when rescore = 0. Qdrant's local
  mode ignores quantisation (it keeps no quantised copy and searches exactly): there a
  quantised view returns the float view's exact scores, as with full rescoring.
* Shard and replica counts are set when a collection is created (local mode ignores them).
* Two-stage (`two_stage=True`, VDR_SEARCH_MODE=two-stage): each point also carries a small named
  vector "summary" (the page's MUVERA encoding, `vdr_app.index.muvera`, the same as the memory index's
  first stage) under Qdrant's HNSW; a search is one Query API call that prefetches the `depth`
  best summaries and re-ranks them with MAX_SIM on the multivector (still m = 0, quantised as
  above). Local mode has no HNSW (it scans the summaries exactly); the same configuration on
  Qdrant's own engine is tested with qdrant-edge-py (tests/test_qdrant_edge.py).

Local mode (`VDR_QDRANT_PATH`) runs the same client calls in-process with numpy; it is meant for
tests and small stores (qdrant-client warns above ~20k points) and locks its folder to one process.
Every client error becomes one `IndexUnavailableError` naming the URL or folder; the store is
never touched here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import IndexUnavailableError
from ..store import FULL_VIEW, Store
from ..types import Progress
from .base import IndexStatus, SearchIndex, SyncReport, ViewState

log = logging.getLogger(__name__)

VECTOR = "page"
SUMMARY = "summary"
UPSERT_VECTORS = 65_536  # vectors per upsert request (about 32 MB of JSON floats at d = 128)
QUANTIZATIONS = ("", "none", "int8")


def _slug(text: str, limit: int = 24) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:limit] or "x"


def collection_base(store_path: str, model_id: str) -> str:
    """The full view's collection name for a store and model (views add `__<hash>`)."""
    path = store_path if store_path == ":memory:" else str(Path(store_path).resolve())
    digest = hashlib.sha1(f"{path}\0{model_id}".encode()).hexdigest()[:8]
    return f"vdr_{_slug(Path(store_path).stem)}_{_slug(model_id.rsplit('/', 1)[-1])}_{digest}"


def view_suffix(spec: str) -> str:
    return "" if spec == FULL_VIEW else "__" + hashlib.sha1(spec.encode()).hexdigest()[:12]


class QdrantIndex(SearchIndex):
    """Search through qdrant-client.

    Args:
        store: the store to mirror.
        url: a Qdrant server or cluster (http://host:6333); or
        path: a folder for qdrant-client's local mode (":memory:" for a throwaway one).
        api_key: sent to the server (never logged).
        quantization: "" / "none" or "int8".
        shards, replicas: `shard_number` and `replication_factor` of new collections.
        timeout: seconds per request.
    """

    backend = "qdrant"

    def __init__(self, store: Store, url: str | None = None, path: str | Path | None = None,
                 api_key: str | None = None, quantization: str = "", shards: int = 1, replicas: int = 1,
                 timeout: int = 30, two_stage: bool = False, depth: int = 1000):
        super().__init__(store)
        self.two_stage, self.depth = bool(two_stage), int(depth)
        self._encoder = None
        if bool(url) == bool(path):
            raise ValueError("give exactly one of url (a Qdrant server) and path (local mode)")
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
        self.url, self.path = url or None, (str(path) if path else None)
        self.api_key, self.timeout = api_key or None, timeout
        self.quantization = "" if quantization == "none" else quantization
        self.shards, self.replicas = int(shards), int(replicas)
        self._client = None

    # -- connection -----------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.url or f"local folder {self.path}"

    @property
    def local(self) -> bool:
        return self.path is not None

    @contextlib.contextmanager
    def _calls(self, doing: str) -> Iterator[None]:
        """Turn any client failure into one line naming where the index is."""
        try:
            with warnings.catch_warnings():
                # Local mode warns that search params and payload indexes have no effect there.
                warnings.filterwarnings("ignore", message=".*[Ll]ocal.*", category=UserWarning)
                yield
        except IndexUnavailableError:
            raise
        except Exception as error:  # noqa: BLE001 - httpx, grpc, qdrant and portalocker errors alike
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise IndexUnavailableError(
                f"the Qdrant index at {self.location} could not {doing} ({reason}); the store is intact; "
                "check the server, then `python -m vdr_app index sync`"
            ) from error

    @property
    def client(self):
        if self._client is None:
            from qdrant_client import QdrantClient

            with self._calls("be opened"):
                if self.local:
                    if self.path != ":memory:":
                        Path(self.path).mkdir(parents=True, exist_ok=True)
                    self._client = QdrantClient(path=self.path) if self.path != ":memory:" else QdrantClient(":memory:")
                else:
                    # No background version check: against an unreachable server it prints a
                    # multi-line warning; our own error says so once, naming the URL.
                    self._client = QdrantClient(url=self.url, api_key=self.api_key, timeout=self.timeout,
                                                check_compatibility=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    # -- collections ----------------------------------------------------------------------------

    def collection(self, spec: str) -> str | None:
        """The collection of a view, or None while the store has no model (nothing added yet)."""
        model = self.store.model_id
        return None if model is None else collection_base(self.store.path, model) + view_suffix(spec)

    def _existing(self) -> set[str]:
        with self._calls("list its collections"):
            return {c.name for c in self.client.get_collections().collections}

    def _quant(self, spec: str) -> str | None:
        """The quantisation of a view's collection: the spec's own, else VDR_QDRANT_QUANTIZATION."""
        return self.store.view_quant(spec) or (self.quantization or None)

    def _create(self, name: str, spec: str = FULL_VIEW) -> None:
        from qdrant_client import models

        quant = self._quant(spec)
        # A quantised view's originals are the rebuilt float view, kept at float32 (on disk) so that
        # rescoring is exact; every other collection holds the store's float16 values exactly.
        view_quantised = spec != FULL_VIEW and self.store.view_quant(spec) is not None
        params = models.VectorParams(
            size=int(self.store.dim), distance=models.Distance.DOT,
            datatype=models.Datatype.FLOAT32 if view_quantised else models.Datatype.FLOAT16,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            hnsw_config=models.HnswConfigDiff(m=0), on_disk=quant is not None,
        )
        quantization = None
        if quant == "int8":
            quantization = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, always_ram=True))
        elif quant in ("int4", "int2"):
            bits = models.TurboQuantBitSize.BITS4 if quant == "int4" else models.TurboQuantBitSize.BITS2
            quantization = models.TurboQuantization(
                turbo=models.TurboQuantQuantizationConfig(bits=bits, always_ram=True))
        elif quant == "binary":
            quantization = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
        vectors = {VECTOR: params}
        if self.two_stage:  # the first stage: one encoding per page under HNSW (Qdrant's default m)
            vectors[SUMMARY] = models.VectorParams(size=self.encoder.size, distance=models.Distance.DOT)
        with self._calls(f"create collection {name}"):
            self.client.create_collection(
                name, vectors_config=vectors, quantization_config=quantization,
                shard_number=self.shards, replication_factor=self.replicas,
            )
            self.client.create_payload_index(name, "doc_id", models.PayloadSchemaType.INTEGER)

    @property
    def encoder(self):
        """The first stage's page encoding (MUVERA, the memory index's default)."""
        if self._encoder is None:
            from .muvera import Muvera

            self._encoder = Muvera(int(self.store.dim), k_sim=3)
        return self._encoder

    def _upload(self, spec: str, name: str, page_ids: list[int], progress: Progress | None = None) -> int:
        """Upsert pages of one view, in requests of about UPSERT_VECTORS vectors."""
        from qdrant_client import models

        if not page_ids:
            return 0
        rows = {r.id: r for r in self.store.page_rows(page_ids)}
        shas = self.store.document_shas()
        done, batch, batch_vectors = 0, [], 0

        def flush() -> None:
            nonlocal batch, batch_vectors
            if batch:
                with self._calls(f"write to collection {name}"):
                    self.client.upsert(name, points=batch, wait=True)
            batch, batch_vectors = [], 0

        quantised = self.store.view_quant(spec) is not None
        for start in range(0, len(page_ids), 256):  # read the store in slices, not all at once
            if quantised:  # Qdrant quantises itself; it gets the float view to rescore with
                ids = [p for p in page_ids[start : start + 256] if p in rows]
                vectors = self.float_view_pages(spec, ids)
            else:
                ids, vectors = self.store.load_vectors(spec, page_ids[start : start + 256])
            summaries = None
            if self.two_stage and ids:
                lengths = [v.shape[0] for v in vectors]
                packed = np.concatenate(vectors).astype(np.float32) if sum(lengths) else np.empty((0, self.store.dim), np.float32)
                summaries = self.encoder.encode_pages(packed, np.concatenate([[0], np.cumsum(lengths)]))
            for j, (pid, vecs) in enumerate(zip(ids, vectors)):
                row = rows[pid]
                payload = dict(doc_id=row.doc_id, doc_name=row.doc_name, page_number=row.page_number,
                               sha256=shas.get(row.doc_id, ""), n_vectors=int(vecs.shape[0]))
                vector = {VECTOR: vecs.astype(np.float32).tolist()} if vecs.shape[0] else {}
                if summaries is not None and vecs.shape[0]:
                    vector[SUMMARY] = summaries[j].tolist()
                batch.append(models.PointStruct(id=pid, vector=vector, payload=payload))
                batch_vectors += vecs.shape[0]
                if batch_vectors >= UPSERT_VECTORS:
                    flush()
            done += len(ids)
            if progress:
                progress(done / len(page_ids), f"{spec}: {done}/{len(page_ids)} pages")
        flush()
        return done

    def _held(self, name: str) -> dict[int, tuple[int, str, int]]:
        """page id -> (doc id, sha256, n_vectors) of every point of a collection."""
        held, offset = {}, None
        with self._calls(f"read collection {name}"):
            while True:
                points, offset = self.client.scroll(name, limit=10_000, offset=offset, with_vectors=False,
                                                    with_payload=["doc_id", "sha256", "n_vectors"])
                for p in points:
                    held[int(p.id)] = (p.payload.get("doc_id"), p.payload.get("sha256"), p.payload.get("n_vectors", 0))
                if offset is None:
                    return held

    def _doc_filter(self, doc_ids: Iterable[int]):
        from qdrant_client import models

        return models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=[int(d) for d in doc_ids]))])

    # -- writes ---------------------------------------------------------------------------------

    def add_document(self, doc_id: int, progress: Progress | None = None) -> None:
        page_ids = [pid for pid, doc in self.store.page_docs() if doc == doc_id]
        existing = self._existing()
        specs = self.store_views()
        for i, spec in enumerate(specs):
            name = self.collection(spec)
            if name not in existing:
                self._create(name, spec)
            sub = None if progress is None else (lambda f, m, i=i: progress((i + f) / len(specs), m))
            self._upload(spec, name, page_ids, sub)

    def remove_document(self, doc_id: int) -> None:
        from qdrant_client import models

        names = self._existing()
        selector = models.FilterSelector(filter=self._doc_filter([doc_id]))
        for spec in self.store_views():
            name = self.collection(spec)
            if name in names:
                with self._calls(f"delete from collection {name}"):
                    self.client.delete(name, points_selector=selector, wait=True)

    def add_view(self, spec: str, progress: Progress | None = None) -> None:
        name = self.collection(spec)
        if name is None:
            return
        if name in self._existing():
            with self._calls(f"drop collection {name}"):
                self.client.delete_collection(name)
        self._create(name, spec)
        self._upload(spec, name, self.store.page_ids(), progress)

    def remove_view(self, spec: str) -> None:
        name = self.collection(spec)
        if name is not None and name in self._existing():
            with self._calls(f"drop collection {name}"):
                self.client.delete_collection(name)

    # -- search ---------------------------------------------------------------------------------

    def top_k(self, spec: str, query: np.ndarray, k: int, doc_ids: Iterable[int] | None = None,
              rescore: int = 0) -> list[tuple[int, float]]:
        from qdrant_client import models

        name = self.collection(spec)
        if name is None:
            return []
        doc_ids = None if doc_ids is None else list(doc_ids)
        params = None
        if self.store.has_view(spec) and self.store.view_quant(spec) is not None:
            # rescore = 0: Qdrant's quantised scores; else its top rescore/k * k re-scored with the originals
            params = models.SearchParams(quantization=models.QuantizationSearchParams(
                rescore=rescore > 0, oversampling=max(1.0, rescore / max(int(k), 1)) if rescore > 0 else None))
        elif self.quantization == "int8":
            params = models.SearchParams(quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0))
        with self._calls(f"search collection {name}"):
            if not self.client.collection_exists(name):
                raise IndexUnavailableError(
                    f"view {spec} is not in the Qdrant index at {self.location} yet: run `python -m vdr_app index sync`")
            query_filter = None if doc_ids is None else self._doc_filter(doc_ids)
            prefetch = None
            if self.two_stage:  # candidates by summary (HNSW), re-ranked by MAX_SIM in the same call
                prefetch = models.Prefetch(query=self.encoder.encode_query(np.asarray(query, np.float32)).tolist(),
                                           using=SUMMARY, limit=max(self.depth, int(k)), filter=query_filter)
            result = self.client.query_points(
                name, query=np.asarray(query, dtype=np.float32).tolist(), using=VECTOR, limit=int(k),
                prefetch=prefetch, query_filter=query_filter, search_params=params,
                with_payload=False, with_vectors=False,
            )
        return [(int(p.id), float(p.score)) for p in result.points]

    # -- bookkeeping ----------------------------------------------------------------------------

    def _collections_of_store(self) -> tuple[dict[str, str], list[str]]:
        """(spec -> collection for the store's views, names of this store's other view collections)."""
        specs = {spec: self.collection(spec) for spec in self.store_views()}
        base = self.collection(FULL_VIEW)
        mine = {n for n in self._existing() if n.startswith(base + "__")}
        return specs, sorted(mine - set(specs.values()))

    def status(self) -> IndexStatus:
        status = IndexStatus(self.backend, self.location, self.store.model_id)
        if self.store.model_id is None:
            return status
        docs = self.store.page_docs()
        store_pages = {pid for pid, _ in docs}
        shas = self.store.document_shas()
        doc_of = dict(docs)
        specs, stale_views = self._collections_of_store()
        existing = self._existing()
        missing, stale = set(), set()
        for spec, name in specs.items():
            pages, vectors = self.store_counts(spec)
            if name not in existing:
                status.views.append(ViewState(spec, pages, vectors, 0, 0))
                missing |= store_pages
                continue
            held = self._held(name)
            wrong = {pid for pid, (doc, sha, _) in held.items() if pid in store_pages and sha != shas.get(doc_of[pid])}
            missing |= (store_pages - set(held)) | wrong
            stale |= set(held) - store_pages
            first = (f"'{SUMMARY}' vector ({self.encoder.describe()}) under Qdrant's HNSW, prefetch {self.depth} "
                     "-> MAX_SIM" if self.two_stage else "none (exhaustive)")
            status.views.append(ViewState(spec, pages, vectors, len(held), sum(h[2] for h in held.values()), first))
        status.pending = self.document_names(missing)
        status.stale_pages = len(stale)
        status.stale_views = [n for n in stale_views]
        return status

    def sync(self, progress: Progress | None = None) -> SyncReport:
        """Create missing collections, upload missing or replaced pages, delete stale ones, drop the
        collections of deleted views. Only the difference is written."""
        from qdrant_client import models

        report = SyncReport()
        if self.store.model_id is None:
            return report
        docs = self.store.page_docs()
        order = [pid for pid, _ in docs]
        doc_of = dict(docs)
        shas = self.store.document_shas()
        specs, stale_views = self._collections_of_store()
        for name in stale_views:
            with self._calls(f"drop collection {name}"):
                self.client.delete_collection(name)
            report.removed_views.append(name)
        existing = self._existing()
        for i, (spec, name) in enumerate(specs.items()):
            sub = None if progress is None else (lambda f, m, i=i: progress((i + f) / len(specs), m))
            if name not in existing:
                self._create(name, spec)
                report.added_views.append(spec)
                report.added_pages += self._upload(spec, name, order, sub)
                continue
            held = self._held(name)
            gone = [pid for pid, (doc, sha, _) in held.items()
                    if pid not in doc_of or sha != shas.get(doc_of[pid])]
            if gone:
                with self._calls(f"delete from collection {name}"):
                    self.client.delete(name, points_selector=models.PointIdsList(points=gone), wait=True)
                report.removed_pages += len(gone)
            keep = set(held) - set(gone)
            report.added_pages += self._upload(spec, name, [p for p in order if p not in keep], sub)
        if progress:
            progress(1.0, str(report))
        return report
