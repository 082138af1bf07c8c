"""Encoders: page images and queries -> multi-vector embeddings.

With `vdr_app.checkpoints` (the builders of offline test checkpoints) the only package that imports
torch / transformers / colpali_engine, and only inside functions, so `import vdr_app.models` is cheap.

    from vdr_app.models import load_encoder
    encoder = load_encoder("vidore/colSmol-256M")          # or a folder, or "text-layout-minilm"
    pages = encoder.encode_pages(page_images)              # list[PageEmbedding]
    queries = encoder.encode_queries(["revenue by region"])  # list[QueryEmbedding]
"""

from .base import Encoder, Progress
from .registry import (
    FAMILIES,
    available_encoders,
    detect_family,
    load_encoder,
    register_encoder,
    supported_families,
)

__all__ = [
    "Encoder",
    "FAMILIES",
    "Progress",
    "available_encoders",
    "detect_family",
    "load_encoder",
    "register_encoder",
    "supported_families",
]
