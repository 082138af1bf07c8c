"""ColQwen2 / ColQwen2.5 / ColQwen3 (Qwen-VL backbones): a dynamic grid per page.

The processor resizes each page (keeping its aspect ratio) to multiples of patch x merge px
(28 px for Qwen2/2.5-VL, 32 px for Qwen3-VL) within its pixel budget and cuts patches;
`image_grid_thw` = (t, h, w) in patches. The vision merger fuses 2x2 patches, so a page yields
(h/2) x (w/2) tokens in row-major order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from .colvision import ColVisionEncoder
from .layout import PatchLayout, grid_layout


class ColQwen2Encoder(ColVisionEncoder):
    """ColQwen2 checkpoints such as vidore/colqwen2-v1.0."""

    family = "colqwen2"
    model_class = "ColQwen2"
    processor_class = "ColQwen2Processor"

    def layouts(self, batch: Any, images: Sequence[Image.Image]) -> list[PatchLayout]:
        merge = int(self.model.config.vision_config.spatial_merge_size)
        out = []
        for t, h, w in batch["image_grid_thw"].tolist():
            if t != 1:  # a still image is one temporal patch (the frame is repeated to fill it)
                raise RuntimeError(f"{self.family}: expected one temporal patch per page, got t={t}")
            out.append(grid_layout(h // merge, w // merge))
        return out

    def attention_module(self) -> Any:
        return self.model.language_model.layers[-1].self_attn

    def decoder_attention_modules(self) -> list[Any]:
        return [layer.self_attn for layer in self.model.language_model.layers]

    def stage_modules(self) -> dict[str, Any]:
        return {"vision": self.model.visual, "lm": self.model.language_model}


class ColQwen2_5Encoder(ColQwen2Encoder):  # noqa: N801
    """ColQwen2.5 checkpoints such as vidore/colqwen2.5-v0.2 (same token geometry)."""

    family = "colqwen2.5"
    model_class = "ColQwen2_5"
    processor_class = "ColQwen2_5_Processor"


class ColQwen3Encoder(ColQwen2Encoder):
    """ColQwen3 checkpoints (Qwen3-VL backbone, 16-px patches; colpali-engine projects to d=320)."""

    family = "colqwen3"
    model_class = "ColQwen3"
    processor_class = "ColQwen3Processor"
