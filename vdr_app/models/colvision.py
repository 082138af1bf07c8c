"""What every colpali-engine family shares: loading, batching, one forward with attention capture.

A family adapter (colpali.py, colqwen.py, colidefics3.py) only says which colpali-engine classes
it wraps, where its last text-decoder attention lives, and where its image tokens sit on the page
(`layouts`). Everything else, including the split of the model output into image patches, extra
tokens and final-token attention, happens here once.

torch / transformers / colpali_engine are imported inside functions: importing vdr_app.models
stays cheap, and `ensure_torchvision()` always runs before transformers is first imported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..errors import ModelLoadError
from ..types import PageEmbedding, PageImage, QueryEmbedding
from .base import Encoder, Progress
from .capture import capture_for
from .layout import PatchLayout

logger = logging.getLogger(__name__)

# Queries are short: encode more of them per forward than pages.
_QUERY_BATCH_FACTOR = 4


def resolve_device(device: str = "auto") -> str:
    """Turn "auto" into the best available device and check an explicit one exists.

    Args:
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".

    Returns:
        a torch device string.

    Raises:
        ModelLoadError: the requested device is not available here.
    """
    import torch

    name = (device or "auto").strip().lower()
    cuda_ok = torch.cuda.is_available()
    mps_ok = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if cuda_ok else "mps" if mps_ok else "cpu"
    if name.startswith("cuda"):
        if not cuda_ok:
            raise ModelLoadError(f"device {device!r} was asked for but CUDA is not available here")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ModelLoadError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
        return name
    if name == "mps":
        if not mps_ok:
            raise ModelLoadError("device 'mps' was asked for but MPS is not available here")
        return name
    if name == "cpu":
        return name
    raise ModelLoadError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")


def dtype_for(device: str, requested: str = "auto"):
    """bfloat16 on CUDA GPUs that have it (compute capability >= 8.0), float16 on older ones and
    on MPS; on CPU bfloat16 only with native hardware support (AVX512-BF16 / AMX), else float32
    (see `resources.choose_dtype`)."""
    from .resources import choose_dtype

    return choose_dtype(device, requested)


def _l2_normalise(rows: np.ndarray) -> np.ndarray:
    """Re-normalise in float32: the model normalised in its own (possibly 16-bit) dtype."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


class ColVisionEncoder(Encoder):
    """An `Encoder` over one colpali-engine model class and its processor.

    Subclasses set `family`, `model_class`, `processor_class` and implement `layouts` and
    `attention_module`.

    Attributes:
        model: the colpali-engine model (eval mode, on `device`).
        processor: its processor.
        device: torch device string.
        batch_size: pages per forward pass.
    """

    kind = "visual"
    family: ClassVar[str] = ""
    model_class: ClassVar[str] = ""  # attribute of colpali_engine.models
    processor_class: ClassVar[str] = ""

    def __init__(
        self,
        model: Any,
        processor: Any,
        model_id: str,
        device: str,
        batch_size: int,
        capture: str = "hook",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.device = device
        self.batch_size = int(batch_size)
        self.dim = int(getattr(model, "dim", 128))
        # "final-row": the hooked layer computes the final token's row itself (SDPA elsewhere);
        # "hook": a forward hook reads the eager attention weights of that layer.
        self.capture = capture
        self._warned_no_attention = False
        # Decoder layers whose in-degree centrality pages get (`centrality.py`); 0 = none (eager
        # attention everywhere, or a family whose attention modules cannot be switched).
        self.centrality_layers = 0
        self._attention_capture = None  # installed on first eager-hook page pass (see capture.py)

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        source: str,
        model_id: str,
        device: str = "auto",
        batch_size: int = 4,
        dtype: str = "auto",
        attn_implementation: str = "auto",
        check_memory: bool = True,
        **from_pretrained_kwargs: Any,
    ) -> ColVisionEncoder:
        """Load model and processor with `from_pretrained` (hub id, cache or local folder).

        Args:
            source: what `from_pretrained` gets (hub id or folder).
            model_id: the id recorded with the embeddings.
            device: see `resolve_device`.
            batch_size: pages per forward pass; 0 = chosen for the device (`resources.choose_batch_size`).
            dtype: "auto" (see `resources.choose_dtype`), "float32", "bfloat16" or "float16".
            attn_implementation: "auto" = SDPA in every layer, the last text layer computing the
                final token's attention row itself (`final_row.py`); "eager" = eager attention in
                every layer, the row read by a forward hook (the slower reference); "sdpa" = the
                same as "auto".
            check_memory: refuse (ModelLoadError) before loading a model that cannot fit.
            **from_pretrained_kwargs: passed to both `from_pretrained` calls
                (e.g. local_files_only=True).

        Returns:
            the ready encoder. Errors propagate; the registry turns them into ModelLoadError.
        """
        from ..torchvision_compat import ensure_torchvision

        ensure_torchvision()
        import colpali_engine.models as cm
        from transformers.utils import logging as hf_logging

        from .centrality import install_centrality
        from .final_row import install_final_row
        from .resources import check_fits, choose_batch_size

        # The engine reports its own progress; transformers' per-weight bar would interleave with it.
        hf_logging.disable_progress_bar()

        device = resolve_device(device)
        torch_dtype = dtype_for(device, dtype)
        attn = (attn_implementation or "auto").strip().lower()
        if attn not in ("auto", "sdpa", "eager"):
            raise ModelLoadError(f"unknown attention implementation {attn_implementation!r}; use auto, sdpa or eager")
        model_cls = getattr(cm, cls.model_class)
        processor_cls = getattr(cm, cls.processor_class)
        if check_memory:
            n_parameters = cls._parameter_count(source)
            if n_parameters:
                check_fits(model_id, n_parameters, torch_dtype, device)
        model = model_cls.from_pretrained(
            source,
            dtype=torch_dtype,
            attn_implementation="eager" if attn == "eager" else "sdpa",
            **from_pretrained_kwargs,
        )
        cls.repair_loaded_model(model)
        meta = [name for name, p in model.named_parameters() if p.is_meta]
        if meta:
            raise ModelLoadError(
                f"{model_id}: weights missing from the checkpoint: {', '.join(meta[:5])}"
                + (f" and {len(meta) - 5} more" if len(meta) > 5 else "")
            )
        model = model.to(device).eval()
        processor = processor_cls.from_pretrained(source, **from_pretrained_kwargs)
        encoder = cls(model, processor, model_id, device, choose_batch_size(device, batch_size))
        if attn != "eager":
            encoder.prepare_sdpa()
            if install_final_row(encoder.attention_module()):
                encoder.capture = "final-row"
            else:  # an attention module without a switchable config: read eager weights there
                logger.warning("%s: cannot switch the last attention layer; attention capture may be missing", model_id)
            # After the final row, so the last layer's centrality wraps its final-row function.
            encoder.centrality_layers = (
                len(encoder.decoder_attention_modules())
                if install_centrality(encoder.decoder_attention_modules()) else 0
            )
        encoder.check_loaded()
        logger.info(
            "loaded %s on %s (%s, %s attention, capture %s, batch %d)",
            encoder.describe(), device, model.dtype, attn, encoder.capture, encoder.batch_size,
        )
        return encoder

    @classmethod
    def _parameter_count(cls, source: str) -> int | None:
        """Parameters of the checkpoint's architecture (meta device, no weights read), or None
        when its config cannot be read here (the load itself then reports why)."""
        from transformers import AutoConfig

        from .registry import read_checkpoint_config
        from .resources import parameter_count

        try:
            data = read_checkpoint_config(source)
            config = AutoConfig.for_model(**data)
            return parameter_count(config)
        except Exception as error:  # noqa: BLE001 - a size estimate must never block a load
            logger.debug("no parameter count for %s: %s", source, error)
            return None

    @classmethod
    def repair_loaded_model(cls, model: Any) -> None:
        """Fix known loading defects of a family in place, before the model is moved."""

    def prepare_sdpa(self) -> None:
        """Family-specific fixes so that SDPA attends exactly where eager attention does."""

    def check_loaded(self) -> None:
        """Family-specific sanity checks after loading; raise ModelLoadError on a mismatch."""

    # ------------------------------------------------------- family-specific hooks
    def layouts(self, batch: Any, images: Sequence[Image.Image]) -> list[PatchLayout]:
        """Geometry of each page's image tokens, in the order the model emits them."""
        raise NotImplementedError

    def attention_module(self) -> Any:
        """The last text-decoder layer's self-attention module (hooked for attention weights)."""
        raise NotImplementedError

    def decoder_attention_modules(self) -> list[Any]:
        """Every text-decoder layer's self-attention module, first to last (centrality capture)."""
        return []

    def stage_modules(self) -> dict[str, Any]:
        """The vision encoder ("vision") and language model ("lm") modules, for per-stage timing."""
        return {}

    def model_inputs(self, batch: Any) -> dict:
        """Tensors passed to `model(**inputs)`; families drop what they do not need."""
        return dict(batch)

    # ----------------------------------------------------------------- encoding
    def encode_pages(self, pages: Sequence[PageImage], progress: Progress | None = None) -> list[PageEmbedding]:
        """Encode pages in batches of `batch_size`.

        Args:
            pages: the page images.
            progress: called as progress(fraction, message) after each batch.

        Returns:
            one PageEmbedding per page, in order: patches (n, d), boxes (n, 4), cells (n, 3),
            attention (n,), extra (m, d).
        """
        out: list[PageEmbedding] = []
        total = len(pages)
        for start in range(0, total, self.batch_size):
            chunk = pages[start : start + self.batch_size]
            out.extend(self._encode_page_batch([p.image for p in chunk]))
            if progress is not None:
                progress(len(out) / total, f"encoded {len(out)}/{total} pages")
        return out

    def encode_queries(self, queries: Sequence[str]) -> list[QueryEmbedding]:
        """Encode queries (with the family's query augmentation tokens).

        Returns:
            one QueryEmbedding per query: vectors (q, d) for the non-padding tokens and the
            q token strings they come from.
        """
        out: list[QueryEmbedding] = []
        step = self.batch_size * _QUERY_BATCH_FACTOR
        tokenizer = self.processor.tokenizer
        for start in range(0, len(queries), step):
            chunk = list(queries[start : start + step])
            batch = self.processor.process_queries(chunk)
            emb, _, _ = self._forward(self.model_inputs(batch), capture_attention=False)  # (B, L, d)
            keep = batch["attention_mask"].bool().numpy()  # (B, L)
            ids = batch["input_ids"].numpy()
            for b, text in enumerate(chunk):
                token_ids = ids[b][keep[b]].tolist()
                out.append(
                    QueryEmbedding(
                        vectors=_l2_normalise(emb[b][keep[b]]),
                        tokens=[tokenizer.decode([t]) for t in token_ids],
                        text=text,
                    )
                )
        return out

    def _encode_page_batch(self, images: list[Image.Image]) -> list[PageEmbedding]:
        images = [im.convert("RGB") for im in images]
        batch = self.processor.process_images(images)
        layouts = self.layouts(batch, images)
        image_mask = self.processor.get_image_mask(batch).cpu().numpy()  # (B, L)
        attention_mask = batch["attention_mask"].bool().cpu().numpy()  # (B, L)
        emb, attention, centrality = self._forward(
            self.model_inputs(batch), capture_attention=True, image_rows=image_mask
        )
        pages = []
        for b, layout in enumerate(layouts):
            is_image = image_mask[b]
            n = int(is_image.sum())
            if n != len(layout):
                raise RuntimeError(
                    f"{self.family}: page {b} of the batch has {n} image tokens but its layout has "
                    f"{len(layout)} patches ({layout.info}); the geometry code does not match "
                    "this checkpoint's processor"
                )
            pages.append(
                PageEmbedding(
                    patches=_l2_normalise(emb[b][is_image]),
                    boxes=layout.boxes,
                    cells=layout.cells,
                    attention=None if attention is None else attention[b][is_image],
                    extra=_l2_normalise(emb[b][attention_mask[b] & ~is_image]),
                    model_id=self.model_id,
                    info={"family": self.family, **layout.info},
                    centrality=None if centrality is None else centrality[:, b][:, is_image],
                )
            )
        return pages

    def _forward(
        self, inputs: dict, capture_attention: bool, image_rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Run the model once; optionally capture the final token's last-layer attention.

        With capture "final-row" (the default) the last text layer's own attention function
        computes that one row from its queries and keys during the ordinary SDPA forward
        (`final_row.py`); with "hook" (eager attention everywhere) a forward hook on that layer
        reads the row from its (B, heads, L, L) weights. Either way embeddings and attention
        come from the same pass, and only the final token's row, averaged over heads, is kept.

        With `image_rows` (bool (B, L), the image tokens) and centrality layers installed, every
        decoder layer also sums the attention the image tokens pay each token (`centrality.py`).

        Returns:
            embeddings float32 (B, L, d), attention float32 (B, L) or None, and centrality
            float32 (layers, B, L) or None, rounded to float16 (the stored precision, so a view
            cut now and one cut later from the store rank patches alike).
        """
        import torch

        inputs = self._to_device(inputs)
        mask = inputs["attention_mask"]  # (B, L)
        length = mask.shape[1]
        # Last real token of each row, whatever the padding side: L-1 minus the number of
        # trailing padding positions.
        final = (length - 1) - mask.flip(1).to(torch.int64).argmax(1)  # (B,)
        captured: dict[str, torch.Tensor] = {}
        layers: dict = {}
        if capture_attention and self.capture == "final-row":
            from .centrality import centrality_capture
            from .final_row import final_row_capture

            rows = torch.from_numpy(np.asarray(image_rows, dtype=bool)) if image_rows is not None else None
            with final_row_capture(final) as captured, torch.inference_mode():
                if rows is not None and self.centrality_layers:
                    with centrality_capture(rows) as degree_target:
                        emb = self.model(**inputs)  # (B, L, d)
                    layers = degree_target["layers"]
                else:
                    emb = self.model(**inputs)  # (B, L, d)
        else:

            def hook(module, args, output):
                weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
                if weights is None or weights.dim() != 4:
                    return
                rows = weights[torch.arange(weights.shape[0], device=weights.device), :, final, :]
                captured["attention"] = rows.float().mean(1).cpu()  # (B, L)

            # The hook stays on the shared model; only this call, on this thread, feeds `captured`,
            # so a query encoded concurrently in another thread neither fires it nor is disturbed.
            with torch.inference_mode():
                if capture_attention:
                    with capture_for(self, "_attention_capture", self.attention_module).capturing(hook):
                        emb = self.model(**inputs)  # (B, L, d)
                else:
                    emb = self.model(**inputs)  # (B, L, d)
        attention = captured.get("attention")
        if capture_attention and attention is None and not self._warned_no_attention:
            self._warned_no_attention = True
            logger.warning(
                "%s: the last attention layer returned no weights; pages get no attention "
                "(attention-based pruning will be unavailable)",
                self.model_id,
            )
        centrality = None
        if layers:
            from .centrality import stack_layers

            centrality = stack_layers(layers, self.centrality_layers)
            if centrality is not None:
                centrality = centrality.astype(np.float16).astype(np.float32)
        return (
            emb.float().cpu().numpy(),
            None if attention is None else attention.numpy().astype(np.float32),
            centrality,
        )

    def _to_device(self, inputs: dict) -> dict:
        import torch

        dtype = self.model.dtype
        moved = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(dtype)
            moved[key] = value
        return moved
