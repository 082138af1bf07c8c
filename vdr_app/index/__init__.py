"""Search indexes behind one seam: `open_index(settings, store)` -> a `SearchIndex`.

    memory   MaxSim in this process's RAM, updated in place (default; `memory.MemoryIndex`);
             large views in two stages (`first_stage`: candidates, optionally filtered by int2
             codes in RAM (`page_codes`), then exact MaxSim from disk)
    qdrant   Qdrant: a server or cluster (VDR_QDRANT_URL) or local mode (VDR_QDRANT_PATH)
             (`qdrant.QdrantIndex`; qdrant-client is imported only when chosen)

The engine talks to `base.SearchIndex` only; SQLite stays the system of record. The search
kernels live here too: `maxsim` (float MaxSim), `maxsim_quantised` (over int8/binary codes),
`int8_matmul` (the int8 matrix product), `token_stage`, `muvera` and `first_stage` (the two-stage
first pass), `page_codes` (its middle stage).
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import IndexUnavailableError
from ..store import Store
from .base import IndexStatus, SearchIndex, SyncReport, ViewState
from .memory import SEARCH_MODES, MemoryIndex

BACKENDS = ("memory", "qdrant")


def open_index(settings: Settings, store: Store) -> SearchIndex:
    """The index the settings ask for (nothing is connected until first use).

    Raises:
        IndexUnavailableError: unknown backend or an unusable Qdrant setting (one line).
    """
    backend = (settings.index or "memory").strip().lower()
    if backend == "memory":
        if settings.search_mode not in SEARCH_MODES:
            raise IndexUnavailableError(f"VDR_SEARCH_MODE must be one of {', '.join(SEARCH_MODES)}, "
                                        f"got {settings.search_mode!r}")
        return MemoryIndex(store, search_mode=settings.search_mode, depth=settings.two_stage_depth,
                           two_stage_min_vectors=settings.two_stage_min_vectors, first_stage=settings.first_stage,
                           code_depth=settings.two_stage_code_depth)
    if backend != "qdrant":
        raise IndexUnavailableError(f"VDR_INDEX / --index must be one of {', '.join(BACKENDS)}, got {settings.index!r}")
    from .qdrant import QUANTIZATIONS, QdrantIndex

    quantization = (settings.qdrant_quantization or "").strip().lower()
    if quantization not in QUANTIZATIONS:
        raise IndexUnavailableError(f"VDR_QDRANT_QUANTIZATION must be empty, 'none' or 'int8', got {quantization!r}")
    if settings.qdrant_shards < 1 or settings.qdrant_replicas < 1:
        raise IndexUnavailableError("VDR_QDRANT_SHARDS and VDR_QDRANT_REPLICAS must be at least 1")
    url = (settings.qdrant_url or "").strip() or None
    path = None if url else (settings.qdrant_path or Path(settings.data_dir) / "qdrant")
    return QdrantIndex(store, url=url, path=path, api_key=settings.qdrant_api_key, quantization=quantization,
                       shards=settings.qdrant_shards, replicas=settings.qdrant_replicas,
                       two_stage=settings.search_mode == "two-stage",
                       depth=settings.two_stage_code_depth or settings.two_stage_depth)


__all__ = ["BACKENDS", "IndexStatus", "MemoryIndex", "SearchIndex", "SyncReport", "ViewState", "open_index"]
