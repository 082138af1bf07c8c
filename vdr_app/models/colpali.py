"""ColPali (PaliGemma backbone): every page is stretched to a square and cut into a fixed grid.

448 px / 14 px patches = 32x32 = 1024 image tokens, row-major, at the start of the sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from ..errors import ModelLoadError
from .colvision import ColVisionEncoder
from .layout import PatchLayout, grid_layout


class ColPaliEncoder(ColVisionEncoder):
    """ColPali checkpoints such as vidore/colpali-v1.3."""

    family = "colpali"
    model_class = "ColPali"
    processor_class = "ColPaliProcessor"

    @classmethod
    def repair_loaded_model(cls, model: Any) -> None:
        # colpali-engine 0.3.18 on transformers 5 declares no tied weights for ColPali, so a
        # checkpoint without lm_head.weight (PaliGemma ties it to the input embeddings) leaves it
        # on the meta device and `model.to(device)` fails. Tie it as PaliGemma does.
        lm_head = model.model.lm_head
        if lm_head.weight.is_meta:
            lm_head.weight = model.model.model.language_model.embed_tokens.weight

    def prepare_sdpa(self) -> None:
        # The Gemma layers are marked non-causal (bidirectional), but for an unpadded input the
        # model builds no mask, assuming a causal one, and SDPA then attends everywhere while
        # eager attention (which always gets the causal mask) does not. Marking the layers
        # causal only matters when no mask is passed, and restores eager's behaviour there.
        for layer in self.model.model.model.language_model.layers:
            layer.self_attn.is_causal = True

    def check_loaded(self) -> None:
        rows, cols = self._grid()
        expected = getattr(self.processor, "image_seq_length", rows * cols)
        if rows * cols != expected:
            raise ModelLoadError(
                f"{self.model_id}: the image processor makes a {rows}x{cols} patch grid but the "
                f"processor expects {expected} image tokens"
            )

    def _grid(self) -> tuple[int, int]:
        # Not `ColPali.patch_size`: that property reads `model.vision_tower`, which no longer
        # exists on transformers 5.
        patch = int(self.model.config.vision_config.patch_size)
        size = self.processor.image_processor.size
        return int(size["height"]) // patch, int(size["width"]) // patch

    def layouts(self, batch: Any, images: Sequence[Image.Image]) -> list[PatchLayout]:
        rows, cols = self._grid()
        return [grid_layout(rows, cols) for _ in images]

    def attention_module(self) -> Any:
        return self.model.model.model.language_model.layers[-1].self_attn

    def decoder_attention_modules(self) -> list[Any]:
        return [layer.self_attn for layer in self.model.model.model.language_model.layers]

    def stage_modules(self) -> dict[str, Any]:
        inner = self.model.model.model
        return {"vision": inner.vision_tower, "lm": inner.language_model}

    def model_inputs(self, batch: Any) -> dict:
        inputs = dict(batch)
        # The processor adds `labels`; with them PaliGemma would also compute a language-model
        # loss. logits_to_keep=1 stops it projecting every token onto its 257k-word vocabulary,
        # which ColPali never uses (it reads the last hidden state).
        inputs.pop("labels", None)
        inputs["logits_to_keep"] = 1
        return inputs
