"""The hierspeech2 models: plain ``nn.Module``s that load the official checkpoints."""

from __future__ import annotations

from torch import nn

from ..errors import CheckpointError
from .backbone import HierSpeech2
from .denoiser import MPSENet
from .speechsr import SpeechSR
from .ttv import TextToVec

__all__ = ["MODEL_CLASSES", "HierSpeech2", "MPSENet", "SpeechSR", "TextToVec", "model_class"]

MODEL_CLASSES: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (HierSpeech2, TextToVec, SpeechSR, MPSENet)
}
"""Every model class by the name checkpoints record (``config.json``, Lightning export records)."""


def model_class(name: str, source: str = "the checkpoint") -> type[nn.Module]:
    """The model class a checkpoint names; :class:`CheckpointError` (naming ``source``) for any other name."""
    if name not in MODEL_CLASSES:
        raise CheckpointError(
            f"{source} holds a {name!r}, which hierspeech2 does not know ({', '.join(MODEL_CLASSES)})"
        )
    return MODEL_CLASSES[name]
