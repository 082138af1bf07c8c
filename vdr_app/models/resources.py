"""What a device can run: dtype, batch size, and whether a checkpoint fits in memory at all.

Chosen per device (benchmarks/bench_encoders.py measures the alternatives):

* dtype: on CUDA bfloat16 where the GPU has bfloat16 units (compute capability 8.0 or newer:
  A100, L4, H100, ZeroGPU's H200), float16 on older GPUs such as the T4 (7.5), which would emulate
  bfloat16; float16 on MPS; on CPU bfloat16 only where the CPU computes it natively (AVX512-BF16
  or AMX-BF16), float32 elsewhere — without native support bfloat16 matmuls are emulated and
  slower than float32. tests/test_models.py holds both 16-bit types to float32's vectors.
* batch size (when not set): on CPU one page per forward (peak memory stays at one page and mixed
  page sizes are not padded; `bench_encoders --configs after,after-b2` compares); on a GPU as
  many pages as the free memory holds, up to 8.
* a checkpoint whose weights (in the chosen dtype) plus one page's working memory do not fit in
  the memory available is refused before any weight is read, with the numbers.

Nothing heavy at import time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

GIB = 1024**3

# Working memory for one page through the model, beyond the weights: activations of the largest
# layer, the processor's pixel tensors, the transformers loading overhead. An estimate (not yet
# checked against every full-size model): bench_encoders.py prints the measured peak RSS.
_PAGE_WORKING_BYTES = 1.5 * GIB
_LOAD_OVERHEAD = 1.10  # weights are briefly held twice for a few tensors while loading


# The first CUDA compute capability with bfloat16 arithmetic (Ampere); a T4 is 7.5.
BF16_CAPABILITY = (8, 0)


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_native_bf16(flags: set[str] | None = None) -> bool:
    """True where the CPU has bfloat16 arithmetic in hardware (AVX512-BF16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def choose_dtype(device: str, requested: str = "auto", flags: set[str] | None = None,
                 capability: tuple[int, int] | None = None):
    """The torch dtype to run a model in on `device`.

    Args:
        device: a resolved torch device string.
        requested: "auto", "float32", "bfloat16" or "float16".
        flags: CPU flags (for tests); read from /proc/cpuinfo when None.
        capability: the CUDA device's compute capability (for tests); read from torch when None.

    Raises:
        ValueError: an unknown dtype name.
    """
    import torch

    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    name = (requested or "auto").strip().lower()
    if name != "auto":
        if name not in names:
            raise ValueError(f"unknown dtype {requested!r}; use auto, float32, bfloat16 or float16")
        return names[name]
    if device.startswith("cuda"):
        major, minor = capability if capability is not None else torch.cuda.get_device_capability(device)
        return torch.bfloat16 if (major, minor) >= BF16_CAPABILITY else torch.float16
    if device == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_native_bf16(flags) else torch.float32


def available_memory(device: str) -> int | None:
    """Bytes a new model may use on `device`: free GPU memory, or the host's available memory
    (MemAvailable, capped by a cgroup limit). None where it cannot be read."""
    if device.startswith("cuda"):
        import torch

        index = int(device.partition(":")[2] or torch.cuda.current_device())
        free, _ = torch.cuda.mem_get_info(index)
        return int(free)
    if device == "mps":
        return None
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    limit = _cgroup_room()
    if limit is not None:
        available = limit if available is None else min(available, limit)
    return available


def _cgroup_room() -> int | None:
    """Room left under a cgroup v2 memory limit (containers, Spaces), or None."""
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if raw == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(0, int(raw) - used)
    except (OSError, ValueError):
        return None


def parameter_count(config) -> int:
    """Parameters of a colpali-engine model for `config`, counted on the meta device (no memory)."""
    import colpali_engine.models as cm
    import torch

    classes = {
        "idefics3": "ColIdefics3",
        "qwen2_vl": "ColQwen2",
        "qwen2_5_vl": "ColQwen2_5",
        "paligemma": "ColPali",
        "modernvbert": "ColModernVBert",
        "qwen3_vl": "ColQwen3",
    }
    cls = getattr(cm, classes[config.model_type])
    with torch.device("meta"):
        model = cls(config)
    return sum(p.numel() for p in model.parameters())


def bytes_per_element(dtype) -> int:
    import torch

    return torch.empty((), dtype=dtype).element_size()


def memory_needed(n_parameters: int, dtype) -> int:
    """Bytes to load `n_parameters` in `dtype` and encode one page."""
    return int(n_parameters * bytes_per_element(dtype) * _LOAD_OVERHEAD + _PAGE_WORKING_BYTES)


def check_fits(model_id: str, n_parameters: int, dtype, device: str, available: int | None = None) -> None:
    """Refuse, before loading, a model that cannot fit in the memory available on `device`.

    Raises:
        ModelLoadError: with what it needs, what there is, and what to do.
    """
    from ..errors import ModelLoadError

    room = available_memory(device) if available is None else available
    if room is None:
        return
    needed = memory_needed(n_parameters, dtype)
    if needed > room:
        name = str(dtype).replace("torch.", "")
        raise ModelLoadError(
            f"{model_id} has {n_parameters / 1e9:.2f}B parameters: in {name} on {device} it needs about "
            f"{needed / GIB:.1f} GiB (weights + one page of working memory), but only {room / GIB:.1f} GiB "
            "is available. Free memory, use a machine with more (a GPU with bfloat16 halves the weights), "
            "or pick a smaller model such as vidore/colSmol-256M."
        )


def choose_batch_size(device: str, requested: int | None, per_page_bytes: int = int(_PAGE_WORKING_BYTES)) -> int:
    """Pages per forward on `device`.

    Args:
        device: resolved device.
        requested: a batch size >= 1 is used as given; 0 or None means "choose": 1 on CPU and
            MPS, on CUDA as many pages (up to 8) as 80 % of the free memory holds.
        per_page_bytes: working memory of one page.
    """
    if requested is not None and int(requested) >= 1:
        return int(requested)
    if not device.startswith("cuda"):
        return 1
    room = available_memory(device)
    if room is None:
        return 4
    return max(1, min(8, int(room * 0.8 // per_page_bytes)))


def process_peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux ru_maxrss is KiB)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss() -> int:
    """Resident set size of this process now, in bytes (0 where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
