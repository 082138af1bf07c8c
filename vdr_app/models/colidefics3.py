"""ColIdefics3 (colSmol) and ColModernVBert: local tiles, then a global thumbnail.

The Idefics3 image processor resizes a page so its longest side is `size["longest_edge"]`,
stretches it up to whole multiples of the tile side (`max_image_size["longest_edge"]`, 512 px for
colSmol) and cuts rows x cols tiles; the whole page, squashed to one tile, follows as the global
image. Each tile becomes image_seq_len = 8x8 tokens (patches + pixel shuffle), row-major inside
the tile, tiles in row-major order, global tokens last. A page that fits in one tile is not
split: only the global image's 8x8 tokens exist.

Rows and cols come from the image processor itself (`return_row_col_info`), not from
`ColIdefics3Processor.get_n_patches`, which in colpali-engine 0.3.18 miscounts whenever the
resized page sides are not multiples of 512 px.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from PIL import Image

from ..errors import ModelLoadError
from .colvision import ColVisionEncoder
from .layout import PatchLayout, idefics3_layout


class ColIdefics3Encoder(ColVisionEncoder):
    """ColIdefics3 checkpoints such as vidore/colSmol-256M and vidore/colSmol-500M."""

    family = "colidefics3"
    model_class = "ColIdefics3"
    processor_class = "ColIdefics3Processor"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Tiling depends only on the page size; PDFs repeat one size, so ask once per size.
        self._tiles = lru_cache(maxsize=256)(self._tiles_for_size)

    @property
    def side(self) -> int:
        """Tokens per tile side: sqrt(image_seq_len), 8 for colSmol."""
        return math.isqrt(int(self.processor.image_seq_len))

    def check_loaded(self) -> None:
        seq = int(self.processor.image_seq_len)
        if self.side**2 != seq:
            raise ModelLoadError(f"{self.model_id}: image_seq_len {seq} is not a square number of tokens per tile")

    def _tiles_for_size(self, size: tuple[int, int]) -> tuple[int, int]:
        # A blank image of the same size tiles exactly like the page (tiling is size-only).
        info = self.processor.image_processor([Image.new("RGB", size)], return_row_col_info=True, return_tensors=None)
        return int(info["rows"][0][0]), int(info["cols"][0][0])

    def layouts(self, batch: Any, images: Sequence[Image.Image]) -> list[PatchLayout]:
        return [idefics3_layout(*self._tiles(im.size), self.side) for im in images]

    def attention_module(self) -> Any:
        return self.model.model.text_model.layers[-1].self_attn

    def decoder_attention_modules(self) -> list[Any]:
        return [layer.self_attn for layer in self.model.model.text_model.layers]

    def stage_modules(self) -> dict[str, Any]:
        return {"vision": self.model.model.vision_model, "lm": self.model.model.text_model}


class ColModernVBertEncoder(ColIdefics3Encoder):
    """ColModernVBert checkpoints such as ModernVBERT/colmodernvbert.

    Same Idefics3 image processor and token geometry; the text model is a bidirectional
    ModernBERT encoder, whose attention modules are called `attn`.
    """

    family = "colmodernvbert"
    model_class = "ColModernVBert"
    processor_class = "ColModernVBertProcessor"

    def attention_module(self) -> Any:
        return self.model.model.text_model.layers[-1].attn

    def decoder_attention_modules(self) -> list[Any]:
        return [layer.attn for layer in self.model.model.text_model.layers]
