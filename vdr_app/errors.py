"""One small error hierarchy. Everything a user can cause is a `VdrError`.

The CLI prints `str(error)` on one line and exits non-zero; the UI turns it into `gr.Error`.
"""


class VdrError(Exception):
    """Base class: a problem the user can act on (bad input, missing model, ...)."""


class ConfigError(VdrError, ValueError):
    """A setting (a `VDR_*` variable) has a value outside what it allows."""


class PdfError(VdrError):
    """A file could not be turned into page images (base for the PDF errors below)."""


class NotAPdfError(PdfError):
    """The bytes are not a PDF at all (no %PDF header)."""


class EncryptedPdfError(PdfError):
    """The PDF is password-protected."""


class MalformedPdfError(PdfError):
    """The PDF is damaged and poppler cannot read it."""


class EmptyPdfError(PdfError):
    """The PDF has no pages."""


class PdfTooLargeError(PdfError):
    """The upload exceeds the configured size, page or pixel limits."""


class EncodeError(VdrError):
    """The model could not encode a file's pages (e.g. a page shape the checkpoint refuses)."""


class ModelLoadError(VdrError):
    """A checkpoint could not be loaded (not cached and no network, unknown family, ...)."""


class ModelMismatchError(VdrError):
    """A store holds another model's vectors than the one asked to add or search with."""


class UnknownStrategyError(VdrError, ValueError):
    """A reduction strategy name is not registered."""


class InvalidSpecError(VdrError, ValueError):
    """A view spec or one of its parameters is malformed or out of range."""


class InvalidQueryError(VdrError, ValueError):
    """A query is empty or too long."""


class NotFoundError(VdrError, LookupError):
    """A document, page or view does not exist in the store."""


class StoreError(VdrError):
    """The store file cannot be used (newer schema, corrupt, ...)."""


class InvalidLabelsError(VdrError, ValueError):
    """An evaluation label or query file is malformed or names a file or page that does not exist."""


class IndexUnavailableError(VdrError):
    """The search index (a Qdrant server, cluster or local folder) cannot be reached or written.

    SQLite stays the system of record: nothing stored is lost, and `index sync` repairs the index.
    """
