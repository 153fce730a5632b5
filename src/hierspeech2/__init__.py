"""hierspeech2: the HierSpeech++ family of zero-shot speech synthesizers, usable and trainable.

Models: the HierSpeech2 backbone (voice conversion), TextToVec (text → semantic features + F0)
and SpeechSR (16 kHz → 24/48 kHz super-resolution). See README.md for the public API.

``load_model`` and ``list_models`` are imported on first use, so ``import hierspeech2`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "list_models", "load_model"]

if TYPE_CHECKING:
    from .registry import list_models, load_model


def __getattr__(name: str) -> Any:
    if name in ("load_model", "list_models"):
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'hierspeech2' has no attribute {name!r}")
