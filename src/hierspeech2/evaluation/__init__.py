"""Evaluation metrics over waveforms and F0 tracks (the first part of the evaluation toolkit).

:func:`f0_metrics` compares F0 tracks in Hz (0 = unvoiced), as voice conversion is judged;
:func:`log_spectral_distance` compares waveforms by their log power spectra, full band and above
8 kHz, as speech super-resolution is judged (NU-Wave, AudioSR).
"""

from __future__ import annotations

from hierspeech2.evaluation.pitch import F0Metrics, f0_metrics
from hierspeech2.evaluation.spectral import SpectralDistance, log_spectral_distance

__all__ = ["F0Metrics", "SpectralDistance", "f0_metrics", "log_spectral_distance"]
