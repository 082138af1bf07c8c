"""The text-layout encoder and its parts, in one place.

- page_text.py: `PageText`, a page's text with a box per character (plain data);
- text_layer.py: characters and boxes from the PDF text layer (pypdfium2);
- ocr.py: characters and boxes read from the page image (RapidOCR);
- reader.py: which of the two a page gets;
- encoder.py: MiniLM token vectors on a page grid behind the `Encoder` interface.

Imports point one way: encoder -> reader -> (text_layer, ocr) -> page_text.
"""

from .encoder import MODEL_ID, TextLayoutEncoder, load

__all__ = ["MODEL_ID", "TextLayoutEncoder", "load"]
