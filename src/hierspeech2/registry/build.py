"""Checkpoints → models and pipelines: ``load_model`` and the class of each model family.

``load_model(name_or_path)`` accepts
- a registry name (``list_models()``): fetched and verified (:mod:`.fetch`), then built; a pipeline
  (``hierspeech2-tts``, ``hierspeech2-vc``) is built from its components;
- a local official ``.pth`` (the family is read off its keys), a native folder
  (``config.json`` + ``model.safetensors``), a native ``model.safetensors`` or a transformers
  Wav2Vec2 folder;
- ``hf://owner/repo`` (a native checkpoint at the root of a Hub repo), ``hf://owner/repo/sub/folder``
  (native, in a sub-folder) or ``hf://owner/repo/path/file.pth`` (official).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, HierSpeechError
from .fetch import Fetched, ensure_available, fetch, model_entries
from .hub import HF_SCHEME, ensure_hub_files, hf_download_command, hub_download
from .schema import PIPELINES, Registry, RegistryError, resolve_registry, unknown_name_message

if TYPE_CHECKING:
    import torch
    from torch import nn

_FAMILY_CLASSES = {  # family → class in hierspeech2.models ("mms" is hierspeech2.ssl.SemanticEncoder)
    "backbone": "HierSpeech2",
    "ttv": "TextToVec",
    "speechsr": "SpeechSR",
    "denoiser": "MPSENet",
}


def family_class(family: str) -> type:
    """The class that builds ``family``: ``"backbone"`` → ``HierSpeech2``, ``"mms"`` → ``SemanticEncoder``…"""
    if family == "mms":
        from ..ssl import SemanticEncoder

        return SemanticEncoder
    if family not in _FAMILY_CLASSES:
        raise CheckpointError(
            f"hierspeech2 has no {family} model yet; `hierspeech2 download` can still fetch its checkpoint"
        )
    from ..models import MODEL_CLASSES

    return MODEL_CLASSES[_FAMILY_CLASSES[family]]


def model_class(class_name: str, source: str) -> type:
    """The hierspeech2 model class named ``class_name``, as a native checkpoint (``source``) records it."""
    from ..models import model_class as lookup

    return lookup(class_name, source)


def official_family(state: Mapping[str, Any], source: str = "checkpoint") -> str:
    """Which released model an official state dict belongs to, from its top-level key names."""
    prefixes = {key.split(".", 1)[0] for key in state}
    if "enc_p_l" in prefixes:
        return "backbone"
    if "w2v_decoder" in prefixes:
        return "ttv"
    if prefixes == {"dec"}:
        return "speechsr"
    if {"dense_encoder", "mask_decoder", "phase_decoder"} <= prefixes:
        return "denoiser"
    raise CheckpointError(
        f"cannot tell which model {source} is: its top-level keys ({', '.join(sorted(prefixes)[:8])}) "
        "match no "
        "released HierSpeech2 backbone (enc_p_l.*), TextToVec (w2v_decoder.*), SpeechSR (dec.* only) "
        "or MP-SENet denoiser (dense_encoder.*)"
    )


def _build_official(
    path: Path, family: str | None = None, config: Mapping[str, Any] | None = None
) -> nn.Module:
    from ..checkpoint import load_official_file

    state = load_official_file(path)
    family = family or official_family(state, str(path))
    cls = family_class(family)
    if config:
        _check_config(cls, config, str(path))
    return cls.from_official(state, config=dict(config) if config else None)


def _check_config(cls: type, config: Mapping[str, Any], source: str) -> None:
    parameters = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(config) - set(parameters))
    if unknown:
        raise RegistryError(
            f"{source}: config key(s) {', '.join(unknown)} are not arguments of {cls.__name__}"
        )


def _build_native(folder: Path) -> nn.Module:
    from ..checkpoint import NATIVE_CLASS_KEY, NATIVE_CONFIG_FILE

    config_path = folder / NATIVE_CONFIG_FILE
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {config_path}: {error}") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object, got {type(config).__name__}")
    if config.get("model_type") == "wav2vec2":
        from ..ssl import SemanticEncoder

        try:
            return SemanticEncoder.from_pretrained(folder)
        except (OSError, ValueError, TypeError, RuntimeError) as error:
            if isinstance(error, HierSpeechError):
                raise
            raise CheckpointError(f"cannot load the Wav2Vec2 checkpoint in {folder}: {error}") from error
    class_name = config.get(NATIVE_CLASS_KEY)
    if class_name is None:
        raise CheckpointError(
            f"{config_path} names no model class ({NATIVE_CLASS_KEY!r}); it was not written by hierspeech2's "
            "save_pretrained"
        )
    return model_class(class_name, str(folder)).from_pretrained(folder)


def _build_entry(fetched: Fetched) -> nn.Module:
    entry = fetched.entry
    if entry.format == "official":
        return _build_official(fetched.path, entry.family, entry.config)
    if entry.format == "native":
        model = _build_native(fetched.path.parent)
        expected = _FAMILY_CLASSES[entry.family]
        if type(model).__name__ != expected:
            raise CheckpointError(
                f"{entry.name} is registered as {entry.family} but holds a {type(model).__name__}"
            )
        return model
    from ..ssl import SemanticEncoder

    return SemanticEncoder.from_pretrained(fetched.path, **dict(entry.config))


def _load_local(path: Path) -> nn.Module:
    if path.is_dir():
        if (path / "config.json").is_file():
            return _build_native(path)
        raise CheckpointError(
            f"{path} is a folder without config.json: expected a native checkpoint (config.json + "
            "model.safetensors) or a transformers Wav2Vec2 folder"
        )
    if path.suffix == ".safetensors":
        if (path.parent / "config.json").is_file():
            return _build_native(path.parent)
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as file:
                class_name = (file.metadata() or {}).get("model")
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"cannot read {path} as safetensors: {error}") from error
        cls = model_class(class_name, str(path)) if class_name else None
        if cls is None or not hasattr(cls, "from_native"):  # SpeechSR's single file (the packaged weights)
            raise CheckpointError(f"{path} is a bare safetensors file; put its config.json next to it")
        return cls.from_native(path)
    return _build_official(path)


def _load_hf_uri(uri: str, revision: str | None, local_files_only: bool) -> nn.Module:
    parts = uri[len(HF_SCHEME) :].strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise RegistryError(
            f"{uri!r}: expected hf://owner/repo, hf://owner/repo/sub/folder or hf://owner/repo/file.pth"
        )
    repo_id, inner = "/".join(parts[:2]), "/".join(parts[2:])
    is_official = bool(inner) and not inner.endswith(".safetensors") and bool(Path(inner).suffix)
    folder = inner.rpartition("/")[0] if inner.endswith(".safetensors") else inner
    prefix = f"{folder}/" if folder else ""
    files = [inner] if is_official else [f"{prefix}config.json", f"{prefix}model.safetensors"]
    ensure_hub_files(repo_id, files, revision=revision, local_files_only=local_files_only)
    kwargs = {
        "revision": revision or "main",
        "local_files_only": local_files_only,
        "command": hf_download_command(repo_id, files, revision=revision),
    }
    if is_official:
        return _build_official(hub_download(repo_id, inner, **kwargs))
    hub_download(repo_id, f"{prefix}config.json", **kwargs)
    weights = hub_download(repo_id, f"{prefix}model.safetensors", **kwargs)
    return _build_native(weights.parent)


def _place(module: nn.Module, device: str | torch.device | None, dtype: torch.dtype | None) -> nn.Module:
    if device is None and dtype is None:
        return module
    return module.to(device=device, dtype=dtype)


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    revision: str | None = None,
    *,
    registry: Registry | str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> Any:
    """A ready model (eval mode) or pipeline from a registry name, a local checkpoint or ``hf://owner/repo``.

    ``revision`` picks a branch, tag or commit of the entry's repository (the registry's sha256
    is checked only at the registry's own revision). ``local_files_only`` never touches the
    network, like ``HF_HUB_OFFLINE=1``. Pipelines (``hierspeech2-tts``, ``hierspeech2-vc``) are
    built from their components, each downloaded and verified.
    """
    if isinstance(name_or_path, str) and not name_or_path.strip():
        raise RegistryError(
            "load_model needs a model name, a checkpoint path or hf://owner/repo; got an empty string"
        )
    if isinstance(name_or_path, str) and name_or_path.startswith(HF_SCHEME):
        return _place(_load_hf_uri(name_or_path, revision, local_files_only), device, dtype).eval()
    resolved = resolve_registry(registry)
    if isinstance(name_or_path, str) and name_or_path in resolved:
        entry = resolved[name_or_path]
        for part in model_entries(entry, resolved):
            family_class(part.family)  # fail before downloading anything we cannot build
        if revision is not None and entry.is_pipeline:
            raise ValueError(
                f"{entry.name} is a pipeline of several checkpoints; load its components to pick revisions"
            )
        ensure_available(
            [name_or_path], registry=resolved, revision=revision, local_files_only=local_files_only
        )
        if not entry.is_pipeline:
            return _place(_build_entry(fetch(entry, revision, local_files_only)), device, dtype).eval()
        parts = {
            role: _place(_build_entry(fetch(resolved[name], None, local_files_only)), device, dtype).eval()
            for role, name in entry.components.items()
        }
        from .. import pipelines

        return getattr(pipelines, PIPELINES[entry.family][0])(**parts)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return _place(_load_local(path), device, dtype).eval()
    if isinstance(name_or_path, str) and "/" not in name_or_path and os.sep not in name_or_path:
        raise RegistryError(unknown_name_message(name_or_path, resolved.names()))
    raise CheckpointError(
        f"checkpoint not found: {path} (no such file or folder); for a Hub repository write hf://owner/repo"
    )
