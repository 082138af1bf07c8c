"""Name -> encoder: named encoders, and checkpoints whose family is read from their own config.

`load_encoder` accepts
  * a registered encoder name (e.g. "text-layout-minilm"),
  * a local checkpoint folder,
  * a Hugging Face hub id (cache first; the network only for what is not cached),
  * a family name (e.g. "colqwen2"), meaning that family's reference checkpoint.

A checkpoint's family comes from its config.json (`model_type`, `architectures`); a PEFT adapter
(adapter_config.json) is followed to its base model's config. Names are never parsed for
family hints: a folder called "colpali-x" holding a ColQwen2 is a ColQwen2.

Nothing heavy is imported here: family adapters and named loaders are "module:attribute"
strings resolved on first use.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from .base import Encoder

logger = logging.getLogger(__name__)

# loader(device=..., batch_size=...) -> Encoder, or "module:function" naming one.
Loader = Callable[..., Encoder]


@dataclass(frozen=True)
class Family:
    """One supported colpali-engine model family.

    Attributes:
        name: registry name ("colqwen2").
        adapter: "module:Class" of its `ColVisionEncoder` subclass.
        model_types: config.json `model_type` values of its checkpoints.
        architectures: colpali-engine class names that may appear in config.json `architectures`.
        reference: the hub checkpoint loaded when the family name itself is asked for (None:
            the family name alone is not loadable).
    """

    name: str
    adapter: str
    model_types: tuple[str, ...]
    architectures: tuple[str, ...]
    reference: str | None


FAMILIES: tuple[Family, ...] = (
    Family("colpali", "vdr_app.models.colpali:ColPaliEncoder", ("paligemma",), ("ColPali",), "vidore/colpali-v1.3"),
    Family("colqwen2", "vdr_app.models.colqwen:ColQwen2Encoder", ("qwen2_vl",), ("ColQwen2",), "vidore/colqwen2-v1.0"),
    Family(
        "colqwen2.5",
        "vdr_app.models.colqwen:ColQwen2_5Encoder",
        ("qwen2_5_vl",),
        ("ColQwen2_5",),
        "vidore/colqwen2.5-v0.2",
    ),
    Family(
        "colidefics3",
        "vdr_app.models.colidefics3:ColIdefics3Encoder",
        ("idefics3",),
        ("ColIdefics3",),
        "vidore/colSmol-256M",
    ),
    Family(
        "colmodernvbert",
        "vdr_app.models.colidefics3:ColModernVBertEncoder",
        ("modernvbert",),
        ("ColModernVBert",),
        "ModernVBERT/colmodernvbert",
    ),
    Family("colqwen3", "vdr_app.models.colqwen:ColQwen3Encoder", ("qwen3_vl",), ("ColQwen3",), None),
)

# transformers' own retrieval ports (the "-hf" checkpoints) use another weight layout and API.
_HF_NATIVE_TYPES = {"colpali", "colqwen2", "colmodernvbert"}

_NAMED: dict[str, Loader | str] = {
    "text-layout-minilm": "vdr_app.models.text_layout:load",
}

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def register_encoder(name: str, loader: Loader | str) -> None:
    """Make `load_encoder(name)` call `loader(device=..., batch_size=...)`.

    Args:
        name: the encoder's name (what VDR_MODEL or the UI passes).
        loader: a callable returning an `Encoder`, or a "module:function" string naming one
            (imported only when the encoder is loaded).
    """
    if not name or not name.strip():
        raise ValueError("encoder name must not be empty")
    if not callable(loader) and not (isinstance(loader, str) and ":" in loader):
        raise ValueError(f"loader must be callable or 'module:function', got {loader!r}")
    _NAMED[name.strip()] = loader


def available_encoders() -> list[str]:
    """Named encoders, then the family names that load a reference checkpoint by themselves."""
    return sorted(_NAMED) + [f.name for f in FAMILIES if f.reference]


def supported_families() -> list[str]:
    """Families a checkpoint can belong to, e.g. ["colpali", "colqwen2", ...]."""
    return [f.name for f in FAMILIES]


def _import(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _families_text() -> str:
    return ", ".join(f"{f.name} ({'/'.join(f.model_types)})" for f in FAMILIES)


# ------------------------------------------------------------------ hub access


def offline_message(repo_id: str, what: str = "checkpoint") -> str:
    """The one message for 'not cached and the hub cannot be reached', with what to do."""
    from huggingface_hub import constants

    why = (
        "HF_HUB_OFFLINE is set, so the hub was not contacted"
        if constants.HF_HUB_OFFLINE
        else "the hub could not be reached"
    )
    return (
        f"{what} {repo_id!r} is not in the local Hugging Face cache and {why}. "
        f"To use it: connect to the internet once (it is cached on first use); or pre-download it "
        f"with `hf download {repo_id}`; or set VDR_MODEL to a local checkpoint "
        f"folder; or write a tiny offline test model with `python -m vdr_app make-tiny-model DIR` "
        f"and set VDR_MODEL=DIR; or use the offline encoder `text-layout-minilm`."
    )


def _hub_config(repo_id: str, what: str) -> tuple[str, Path] | None:
    """config.json, else adapter_config.json, of a hub repo: from the cache, else downloaded.

    Returns:
        (file name, local path), or None if the repo has neither file.

    Raises:
        ModelLoadError: repo unknown, or not cached and the hub unreachable.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    names = ("config.json", "adapter_config.json")
    # Cache first: no network round trip (or 20 s of retries when the hub is unreachable) for
    # a checkpoint already here. Adapter repos have no config.json, so look for both.
    for name in names:
        cached = try_to_load_from_cache(repo_id, name)
        if isinstance(cached, str):
            return name, Path(cached)
    for name in names:
        try:
            return name, Path(hf_hub_download(repo_id, name))
        except LocalEntryNotFoundError as error:  # subclass of EntryNotFoundError: test it first
            raise ModelLoadError(offline_message(repo_id, what)) from error
        except EntryNotFoundError:
            continue
        except RepositoryNotFoundError as error:
            raise ModelLoadError(
                f"{what} {repo_id!r} does not exist on the Hugging Face hub (or it is private or "
                "gated: log in with `hf auth login`)"
            ) from error
        except HfHubHTTPError as error:
            raise ModelLoadError(f"could not fetch {name} of {repo_id!r}: {error}") from error
    return None


@dataclass(frozen=True)
class _Source:
    """Where a checkpoint lives: a local folder or a hub repo."""

    ref: str  # what from_pretrained gets
    local: bool

    @property
    def model_id(self) -> str:
        return str(Path(self.ref).resolve()) if self.local else self.ref


def _source(name_or_path: str) -> _Source:
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{name_or_path!r} is a file; a checkpoint is a folder")
        return _Source(str(path), True)
    if not _REPO_ID.match(name_or_path) or name_or_path.startswith((".", "~")):
        raise ModelLoadError(f"{name_or_path!r} is neither an existing checkpoint folder nor a Hugging Face hub id")
    return _Source(name_or_path, False)


def _find_config(source: _Source, what: str) -> tuple[str, Path] | None:
    if source.local:
        for name in ("config.json", "adapter_config.json"):
            if (Path(source.ref) / name).is_file():
                return name, Path(source.ref) / name
        return None
    return _hub_config(source.ref, what)


def read_checkpoint_config(name_or_path: str, _depth: int = 0) -> dict:
    """The config.json of a checkpoint; for a PEFT adapter, that of its base model.

    Args:
        name_or_path: local folder or hub id.

    Returns:
        the parsed config.

    Raises:
        ModelLoadError: no config, unreadable config, or not available offline.
    """
    if _depth > 3:
        raise ModelLoadError(f"adapter chain too deep at {name_or_path!r}")
    what = "base model" if _depth else "checkpoint"
    found = _find_config(_source(name_or_path), what)
    if found is None:
        raise ModelLoadError(
            f"{name_or_path!r} has neither config.json nor adapter_config.json; "
            "it is not a transformers / PEFT checkpoint"
        )
    name, path = found
    if name == "config.json":
        return _read_json(path)
    base = _read_json(path).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{path} names no base_model_name_or_path")
    return read_checkpoint_config(str(base), _depth + 1)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    return data


def family_from_config(config: dict, name: str = "checkpoint") -> Family:
    """Pick the family from a config's `model_type`, then its `architectures`.

    Raises:
        ModelLoadError: single-vector (Bi*) model, transformers-native port, or unknown type.
    """
    model_type = str(config.get("model_type", ""))
    architectures = [str(a) for a in config.get("architectures") or []]
    single = [a for a in architectures if re.match(r"^Bi[A-Z]", a)]
    if single:
        raise ModelLoadError(
            f"{name} is a single-vector model ({', '.join(single)}); this app needs a "
            f"multi-vector ColPali-family model: {_families_text()}"
        )
    if model_type in _HF_NATIVE_TYPES:
        raise ModelLoadError(
            f"{name} is in transformers' native '{model_type}' format (the '-hf' checkpoints); "
            f"use the colpali-engine checkpoint instead (e.g. "
            f"{', '.join(f.reference for f in FAMILIES[:2])})"
        )
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    for family in FAMILIES:
        if set(architectures) & set(family.architectures):
            return family
    raise ModelLoadError(
        f"{name} has model type {model_type or '(none)'!r} (architectures {architectures or '-'}), "
        f"which is not a supported ColPali family; supported: {_families_text()}"
    )


def detect_family(name_or_path: str) -> str:
    """The family name of a checkpoint, read from its config (see `family_from_config`)."""
    return family_from_config(read_checkpoint_config(name_or_path), repr(name_or_path)).name


# ------------------------------------------------------------------ loading


def load_encoder(name_or_path: str, device: str = "auto", batch_size: int = 0, dtype: str = "auto") -> Encoder:
    """Load an encoder by name, folder, hub id or family name.

    Args:
        name_or_path: see the module docstring.
        device: "auto" (cuda, else mps, else cpu), "cpu", "cuda", "cuda:N", "mps".
        batch_size: pages per forward pass; 0 = chosen for the device (1 on CPU, by free memory
            on CUDA; see `resources.choose_batch_size`).
        dtype: weights' dtype for checkpoints: "auto" (`resources.choose_dtype`), "float32",
            "bfloat16" or "float16"; registered encoders (text-layout-minilm) keep their own.

    Returns:
        the ready encoder.

    Raises:
        ModelLoadError: with a message saying what is wrong and what to do.
    """
    key = (name_or_path or "").strip()
    if not key:
        raise ModelLoadError("no model given; set VDR_MODEL to a checkpoint or encoder name")
    if key in _NAMED:
        return _load_named(key, device, batch_size)
    by_name = {f.name: f for f in FAMILIES}
    if key in by_name and not Path(key).exists():
        if by_name[key].reference is None:
            raise ModelLoadError(f"family {key!r} has no reference checkpoint; give a checkpoint folder or hub id")
        key = by_name[key].reference
    source = _source(key)
    family = family_from_config(read_checkpoint_config(key), repr(key))
    adapter = _import(family.adapter)
    return _load_checkpoint(adapter, source, device, batch_size, dtype)


def _load_named(name: str, device: str, batch_size: int) -> Encoder:
    loader = _NAMED[name]
    try:
        if isinstance(loader, str):
            loader = _import(loader)
        return loader(device=device, batch_size=batch_size)
    except ModelLoadError:
        raise
    except (ImportError, AttributeError) as error:
        raise ModelLoadError(f"encoder {name!r} is not available: {error}") from error


def _load_checkpoint(adapter: Any, source: _Source, device: str, batch_size: int, dtype: str = "auto") -> Encoder:
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    def load(**kwargs: Any) -> Encoder:
        return adapter.load(
            source.ref, model_id=source.model_id, device=device, batch_size=batch_size, dtype=dtype, **kwargs
        )

    try:
        if source.local:
            return load()
        try:
            # Cache first, as for the config: a cached model loads without touching the network.
            return load(local_files_only=True)
        except OSError as error:  # transformers' way of saying "file not in the cache"
            if constants.HF_HUB_OFFLINE:
                raise ModelLoadError(offline_message(source.ref)) from error
            logger.info("%s is not fully cached (%s); fetching from the hub", source.ref, error)
        return load()
    except ModelLoadError:
        raise
    except LocalEntryNotFoundError as error:
        raise ModelLoadError(offline_message(source.ref)) from error
    except OSError as error:
        text = str(error).lower()
        if any(s in text for s in ("connect", "offline", "local cache", "resolve")):
            raise ModelLoadError(offline_message(source.ref)) from error
        raise ModelLoadError(f"could not load {source.model_id!r}: {error}") from error
    except Exception as error:  # a broken checkpoint: surface it as one clear message
        raise ModelLoadError(
            f"could not load {source.model_id!r} as {adapter.family}: {type(error).__name__}: {error}"
        ) from error
