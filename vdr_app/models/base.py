"""The encoder interface every model family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from ..types import PageEmbedding, PageImage, Progress, QueryEmbedding


class Encoder(ABC):
    """Turns page images and query strings into multi-vector embeddings.

    Attributes:
        model_id: what a store records to refuse mixing models (hub id, folder name or encoder name).
        family: the adapter's registry name (e.g. "colqwen2", "text-layout-minilm").
        dim: vector dimension d.
        kind: "visual" for ColPali-family models, "text-layout" for text encoders; shown in the UI.
    """

    model_id: str
    family: str
    dim: int
    kind: str = "visual"

    @abstractmethod
    def encode_pages(
        self, pages: Sequence[PageImage], progress: Progress | None = None
    ) -> list[PageEmbedding]:
        """Encode pages in batches; one PageEmbedding per page, in order."""

    @abstractmethod
    def encode_queries(self, queries: Sequence[str]) -> list[QueryEmbedding]:
        """Encode queries; one QueryEmbedding per query, in order."""

    def describe(self) -> str:
        """One line for the UI and CLI."""
        return f"{self.model_id} ({self.family}, {self.kind}, d={self.dim})"
