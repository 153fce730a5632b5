"""Numbers fixed by the released HierSpeech++ models, in one place.

Every module that needs one of these imports it from here; none restates it.
"""

from __future__ import annotations

__all__ = [
    "F0_FRAMES_PER_HOP",
    "F0_HOP",
    "HOP_LENGTH",
    "MODEL_SAMPLE_RATE",
    "OUTPUT_RATES",
    "PAD_MULTIPLE",
    "PITCH_FLOOR_HZ",
    "SEMANTIC_LAYER",
]

MODEL_SAMPLE_RATE = 16_000
"""The rate every model reads and the backbone writes."""

HOP_LENGTH = 320
"""Samples per model frame: one MMS frame, one mel frame, the generator's total upsampling."""

F0_FRAMES_PER_HOP = 4
"""The released models read F0 at 4 frames per model hop."""

F0_HOP = HOP_LENGTH // F0_FRAMES_PER_HOP
"""Samples per F0 frame (80)."""

PAD_MULTIPLE = F0_FRAMES_PER_HOP * HOP_LENGTH
"""Official preprocessing and VC pad waveforms to a multiple of 1280 samples (4 hops), so that an
utterance of T frames has 320 T samples and 4 T F0 frames."""

SEMANTIC_LAYER = 7
"""The released backbone and TTV read hidden state 7 of MMS-300m's 24."""

OUTPUT_RATES = (16_000, 24_000, 48_000)
"""Rates a pipeline can write: the backbone's own, or either SpeechSR's."""

PITCH_FLOOR_HZ = 55.0
"""The official TTS chain zeroes log F0 below this (TTV's F0 is then read by the backbone)."""
