"""hierspeech2: the HierSpeech++ family of zero-shot speech synthesizers, usable and trainable.

Models: the HierSpeech2 backbone (voice conversion), TextToVec (text → semantic features + F0)
and SpeechSR (16 kHz → 24/48 kHz super-resolution). See README.md for the public API.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
