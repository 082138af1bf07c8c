"""A page's words and where they sit: text plus one box per character, in reading order.

Per character rather than per word because CJK text has no spaces (a whole line would be one
"word") and because a tokenizer's offsets point at characters: a word-piece token's box is the
union of its characters' boxes. Filled by the text layer (`text_layer.py`) or by OCR (`ocr.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TEXT_LAYER, OCR, NO_TEXT = "text-layer", "ocr", "none"


@dataclass
class Word:
    """One whitespace-delimited run of characters and its box.

    Attributes:
        text: the characters.
        box: float32 (4,) (x0, y0, x1, y1) in 0-1 page coordinates.
        start: offset of the first character in `PageText.text`.
    """

    text: str
    box: np.ndarray
    start: int


@dataclass
class PageText:
    """A page's text in reading order with a box per character.

    Attributes:
        text: words separated by " ", lines by "\\n".
        char_boxes: float32 (len(text), 4) (x0, y0, x1, y1) in 0-1 page coordinates, NaN rows
            for the separators inserted between words and lines.
        source: "text-layer", "ocr" or "none".
        info: facts worth recording (e.g. OCR seconds, why OCR was skipped).
    """

    text: str = ""
    char_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    source: str = NO_TEXT
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.char_boxes = np.asarray(self.char_boxes, dtype=np.float32).reshape(-1, 4)
        if self.char_boxes.shape[0] != len(self.text):
            raise ValueError(f"char_boxes has {self.char_boxes.shape[0]} rows for {len(self.text)} characters")

    @property
    def n_alnum(self) -> int:
        """Letters and digits on the page: how much real text there is."""
        return sum(ch.isalnum() for ch in self.text)

    def words(self) -> list[Word]:
        """Whitespace-delimited words with the union of their characters' boxes, in reading order."""
        out: list[Word] = []
        start = None
        for i, ch in enumerate(self.text + " "):
            if ch.isspace():
                if start is not None:
                    boxes = self.char_boxes[start:i]
                    out.append(Word(self.text[start:i], _union(boxes), start))
                    start = None
            elif start is None:
                start = i
        return out


def _union(boxes: np.ndarray) -> np.ndarray:
    """float32 (4,) union of (k, 4) boxes, ignoring NaN rows (NaN if all are)."""
    valid = boxes[~np.isnan(boxes).any(axis=1)]
    if len(valid) == 0:
        return np.full(4, np.nan, np.float32)
    return np.array(
        [valid[:, 0].min(), valid[:, 1].min(), valid[:, 2].max(), valid[:, 3].max()], dtype=np.float32
    )


class TextBuilder:
    """Accumulates characters and boxes into a `PageText`, collapsing runs of whitespace."""

    def __init__(self) -> None:
        self._chars: list[str] = []
        self._boxes: list[tuple[float, float, float, float]] = []
        self._pending: str | None = None  # separator to emit before the next visible character

    def separator(self, kind: str) -> None:
        """Note a word (" ") or line ("\\n") break; a line break wins over a space."""
        if self._chars and self._pending != "\n":
            self._pending = kind

    def add(self, text: str, box: tuple[float, float, float, float]) -> None:
        """Append visible characters that share one box (a ligature expands to several)."""
        if self._pending is not None:
            self._chars.append(self._pending)
            self._boxes.append((np.nan,) * 4)
            self._pending = None
        for ch in text:
            self._chars.append(ch)
            self._boxes.append(box)

    def build(self, source: str, info: dict | None = None) -> PageText:
        return PageText(
            "".join(self._chars),
            np.array(self._boxes, dtype=np.float32).reshape(-1, 4),
            source if self._chars else NO_TEXT,
            dict(info or {}),
        )
