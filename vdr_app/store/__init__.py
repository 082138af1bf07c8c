"""The SQLite store (sqlite-utils): documents, pages, full embeddings and reduced views.

Layout (schema version in `PRAGMA user_version`, upgraded by the ordered `MIGRATIONS`):

    meta        key -> value: model_id, dim (a store holds one model's vectors); sap_window:<model id>
                -> the JSON of the SAP layer window `sap-window` recorded for that model
    documents   id, sha256 (unique: adding the same PDF twice is a no-op), name, n_pages, n_bytes, added_at
    pages       id, doc_id, page_number, width, height, image (JPEG), info (JSON)
    embeddings  page_id, n_patches, n_extra, dim, patches (float16 n×d), extra (float16 m×d)
    layouts     page_id, boxes (uint16 n×4, 0-1 scaled by 65535), cells (int16 n×3, NULL when
                `derive_cells(boxes)` gives them), attention (float32 n, or NULL)
    views       spec (canonical view spec), created_at, quant (NULL, "int8", "int4", "int2" or "binary"; v2)
    view_pages  spec, page_id, n_vectors, vectors (float16 k×d), groups (int32 n), info (JSON),
                scales (v2: float32 per vector of an int8, int4 or int2 view, else NULL)
    centrality  (v3) page_id, n_layers, values (float16 layers×n): each patch's in-degree
                centrality per decoder layer (what `sap` ranks by); no row for a page encoded
                before it was captured (`reencode` fills it)

Vectors are stored once, in float16, as raw little-endian BLOBs with their counts beside them.
A quantised view (`...@int8`, `...@binary`, vdr_app.quantise) stores instead the codes of all its
n_vectors rows, extra tokens included: int8 (n_vectors×d) plus the float32 scales, packed rotated
int4 / int2 codes (n_vectors×ceil(d/2) or ceil(d/4) bytes) plus the scales, or packed sign bits
(n_vectors×ceil(d/8) bytes). No float copy of such a view is kept: its float vectors
are rebuilt from the full embeddings and the groups (`rescore_inputs`).
Every multi-row write runs in one transaction (`Database.atomic`): a crash or error halfway
leaves the file as it was. The class is thread-safe (one connection behind a lock) because the web
app calls it from worker threads.

One module per concept: `schema` (tables, migrations, BLOBs), `documents` (documents and pages),
`embeddings` (full embeddings and their signals), `views`, `quantised` (quantised views),
`maintenance` (accounting, compact, check, backup), `sqlite_errors` (SQLite failures as one
`StoreError` line) and `core` (`Store`, which composes them).
"""

from .core import BUSY_TIMEOUT_S, Store
from .documents import AddResult, DocumentRow, PageRow
from .schema import FULL_VIEW, MIGRATIONS, SCHEMA_VERSION, _create_v1

__all__ = ["AddResult", "BUSY_TIMEOUT_S", "DocumentRow", "FULL_VIEW", "MIGRATIONS", "PageRow", "SCHEMA_VERSION", "Store",
           "_create_v1"]
