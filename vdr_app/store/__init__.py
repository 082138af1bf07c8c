"""The SQLite store (see `documents`).

A step on the way to one module per concept: store.py moves here whole first (and store_errors.py
to `sqlite_errors`), so their history follows them, and is split by concept in the next commit.
"""

from .documents import (  # noqa: F401
    BUSY_TIMEOUT_S,
    FULL_VIEW,
    MIGRATIONS,
    SCHEMA_VERSION,
    AddResult,
    DocumentRow,
    PageRow,
    Store,
    _create_v1,
)
