"""The hierspeech2 models: plain ``nn.Module``s that load the official checkpoints."""

from __future__ import annotations

from .backbone import HierSpeech2
from .denoiser import MPSENet
from .speechsr import SpeechSR
from .ttv import TextToVec

__all__ = ["HierSpeech2", "MPSENet", "SpeechSR", "TextToVec"]
