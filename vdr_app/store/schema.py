"""The store's layout in SQLite: the schema version, the ordered migrations that build it, the
schema a new store has, and how arrays become BLOBs (raw little-endian, counts beside them)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import sqlite_utils

SCHEMA_VERSION = 3
FULL_VIEW = "full"
_BOX_SCALE = 65535.0
_JPEG_QUALITY = 85


def _blob(array: np.ndarray, dtype) -> bytes:
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def _array(blob: bytes | None, dtype, shape) -> np.ndarray | None:
    if blob is None:
        return None
    return np.frombuffer(blob, dtype=dtype).reshape(shape)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _create_v1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["documents"].create(
        {"id": int, "sha256": str, "name": str, "n_pages": int, "n_bytes": int, "added_at": str}, pk="id"
    )
    db["documents"].create_index(["sha256"], unique=True)
    db["pages"].create(
        {"id": int, "doc_id": int, "page_number": int, "width": int, "height": int, "image": bytes, "info": str},
        pk="id",
        foreign_keys=[("doc_id", "documents", "id")],
    )
    db["pages"].create_index(["doc_id", "page_number"], unique=True)
    # Vectors and per-patch layout live in separate tables so vector storage stays dense.
    db["embeddings"].create(
        {"page_id": int, "n_patches": int, "n_extra": int, "dim": int, "patches": bytes, "extra": bytes},
        pk="page_id",
        foreign_keys=[("page_id", "pages", "id")],
    )
    db["layouts"].create(
        {"page_id": int, "boxes": bytes, "cells": bytes, "attention": bytes},
        pk="page_id",
        foreign_keys=[("page_id", "pages", "id")],
    )
    db["views"].create({"spec": str, "created_at": str}, pk="spec")
    db["view_pages"].create(
        {"spec": str, "page_id": int, "n_vectors": int, "vectors": bytes, "groups": bytes, "info": str},
        pk=("spec", "page_id"),
        foreign_keys=[("spec", "views", "spec"), ("page_id", "pages", "id")],
    )
    db["view_pages"].create_index(["page_id"])


def _quantised_views_v2(db: sqlite_utils.Database) -> None:
    """Quantised views: the view's quantiser, and the int8 scales beside the codes."""
    db["views"].add_column("quant", str)
    db["view_pages"].add_column("scales", bytes)


def _centrality_v3(db: sqlite_utils.Database) -> None:
    """Per-layer patch centrality (SAP), in its own table: older pages simply have no row."""
    db["centrality"].create(
        {"page_id": int, "n_layers": int, "values": bytes}, pk="page_id", foreign_keys=[("page_id", "pages", "id")]
    )


# MIGRATIONS[i] upgrades a store from version i to i + 1.
MIGRATIONS = [_create_v1, _quantised_views_v2, _centrality_v3]


_EXPECTED_SCHEMA: dict[str, set[str]] = {}


def _expected_schema() -> dict[str, set[str]]:
    """{table: columns} of a new store, made by running MIGRATIONS on an empty in-memory database."""
    if not _EXPECTED_SCHEMA:
        db = sqlite_utils.Database(memory=True)
        for step in MIGRATIONS:
            step(db)
        _EXPECTED_SCHEMA.update({t.name: {c.name for c in t.columns} for t in db.tables})
        db.close()
    return _EXPECTED_SCHEMA
