"""Exact int8 x int8 -> int32 matrix products through `torch._int_mm` (int8 VNNI / AMX on x86).

The int8 quantised search (`vdr_app.index.maxsim_quantised`) uses this for its one matmul per block:
on the project machine it costs ~34 ns per stored vector for a 20-token query against ~74 ns for
numpy's float32 sgemm of the same values (one thread). torch is imported lazily, on the first
int8 query, so importing the engine, CLI or app never loads it; where torch is missing or its
`_int_mm` fails or disagrees with numpy on a probe product, `available()` is False and the caller
keeps its numpy float32 path.

    available(k) -> bool                      # usable for inner dimension k
    int_mm(a, b) -> int32 (m, n)              # a int8 (m, k) @ b int8 (n, k).T, exact
"""

from __future__ import annotations

import threading

import numpy as np

_LOCK = threading.Lock()
_TORCH = None  # the torch module once imported; False when it cannot be imported
_USABLE: dict[int, bool] = {}  # inner dimension k -> the probe product succeeded and was exact


def _torch():
    global _TORCH
    if _TORCH is None:
        try:
            import torch

            _TORCH = torch if hasattr(torch, "_int_mm") else False
        except Exception:  # noqa: BLE001 - any import failure means: use the numpy path
            _TORCH = False
    return _TORCH


def available(k: int) -> bool:
    """Whether `int_mm` works, exactly, for inner dimension k (probed once per k, then cached)."""
    k = int(k)
    with _LOCK:
        if k not in _USABLE:
            torch = _torch()
            ok = False
            if torch:
                rng = np.random.default_rng(k)
                a = rng.integers(-127, 128, (3, k), dtype=np.int8)
                b = rng.integers(-127, 128, (37, k), dtype=np.int8)
                b[0] = 127
                a[0] = 127  # the largest product sum, k * 127**2
                try:
                    got = torch._int_mm(torch.from_numpy(a), torch.from_numpy(b).T).numpy()
                    ok = bool(np.array_equal(got, a.astype(np.int64) @ b.astype(np.int64).T))
                except Exception:  # noqa: BLE001 - unsupported platform, shape or build
                    ok = False
            _USABLE[k] = ok
        return _USABLE[k]


def int_mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a int8 (m, k) @ b int8 (n, k).T -> int32 (m, n), exact (b is read in place, not copied).

    Raises:
        RuntimeError: torch's kernel failed (callers check `available(k)` first).
    """
    torch = _torch()
    if not torch:
        raise RuntimeError("torch._int_mm is not available")
    return torch._int_mm(torch.from_numpy(a), torch.from_numpy(b).T).numpy()


__all__ = ["available", "int_mm"]
