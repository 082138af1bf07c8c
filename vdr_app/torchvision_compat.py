"""Make a CUDA-built torchvision wheel importable next to a CPU-only torch.

pip satisfies colpali-engine's `torchvision` requirement with a CUDA build whose compiled ops
(_C.so) link libtorch_cuda.so, absent from the CPU torch wheel. torchvision then dies in
`_meta_registrations` on `register_fake("torchvision::nms")`, and with it every
`transformers` / `colpali_engine` import. Defining the two op schemas in Python lets the
pure-Python part of torchvision (transforms.v2.functional, all the image processors use) import.

Does nothing where torchvision imports normally (e.g. a CUDA torch on a GPU machine).
`torchvision.ops.nms` stays unusable when shimmed; nothing in this stack calls it.
"""

from __future__ import annotations

import sys

_LIBRARY = None  # keep a reference: the Library object owns the registrations


def ensure_torchvision() -> str:
    """Import torchvision, shimming the missing op schemas if needed.

    Returns:
        "native" if torchvision imported as is, "shimmed" if the schemas had to be defined,
        "absent" if torchvision is not installed.
    """
    global _LIBRARY
    try:
        import torchvision  # noqa: F401

        return "native"
    except ImportError:
        return "absent"
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision  # noqa: F401

    return "shimmed"
