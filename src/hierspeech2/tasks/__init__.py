"""LightningModules that train the hierspeech2 models (losses, optimizers, logging; no layers)."""

from __future__ import annotations

from .backbone import HierSpeech2Task
from .base import GANTask, OptimizerConfig, TrainingTask
from .export import export
from .speechsr import SpeechSRTask
from .ttv import TTVTask

__all__ = [
    "GANTask",
    "HierSpeech2Task",
    "OptimizerConfig",
    "SpeechSRTask",
    "TTVTask",
    "TrainingTask",
    "export",
]
