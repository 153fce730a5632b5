"""Log-spectral distance between two waveforms, full band and above a cut-off (8 kHz)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SpectralDistance", "log_spectral_distance"]

HIGH_BAND_HZ = 8_000.0
"""Where the high band starts: 16 kHz input carries nothing above it, so SpeechSR makes all of it."""


@dataclass(frozen=True)
class SpectralDistance:
    """Log-spectral distances (in log10 power units, as NU-Wave and AudioSR report them).

    Attributes:
        full: over all frequency bins.
        high: over the bins above ``high_band_hz``.
        high_band_hz: where the high band starts.
    """

    full: float
    high: float
    high_band_hz: float


def log_spectral_distance(
    estimate: Tensor,
    reference: Tensor,
    sample_rate: int,
    n_fft: int = 2048,
    hop_length: int = 512,
    high_band_hz: float = HIGH_BAND_HZ,
    eps: float = 1e-10,
) -> SpectralDistance:
    """LSD of ``estimate`` against ``reference`` (waveforms ``[N]`` or ``[1, N]`` at ``sample_rate``).

    Per frame, the root mean square over frequency of ``log10 P_ref − log10 P_est`` (``P``: the
    power spectrum of a Hann-windowed STFT, floored at ``eps``), then averaged over frames. The
    longer waveform is cut to the shorter.
    """
    estimate = _mono(estimate, "estimate")
    reference = _mono(reference, "reference")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not 0 < high_band_hz < sample_rate / 2:
        raise ValueError(f"high_band_hz must be in (0, {sample_rate / 2:g}), got {high_band_hz}")
    length = min(estimate.numel(), reference.numel())
    if length < n_fft:
        raise ValueError(f"need at least n_fft={n_fft} samples in both waveforms, got {length}")
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def log_power(wav: Tensor) -> Tensor:
        spectrum = torch.stft(
            wav[:length], n_fft, hop_length, window=window, center=True, return_complex=True
        )
        return torch.log10(spectrum.abs().pow(2).clamp_min(eps))  # [F, frames]

    difference = log_power(reference) - log_power(estimate)
    frequencies = torch.linspace(0, sample_rate / 2, difference.shape[0], dtype=torch.float64)
    high = frequencies > high_band_hz

    def distance(rows: Tensor) -> float:
        return float(rows.pow(2).mean(dim=0).sqrt().mean())

    return SpectralDistance(distance(difference), distance(difference[high]), high_band_hz)


def _mono(wav: Tensor, name: str) -> Tensor:
    wav = torch.as_tensor(wav, dtype=torch.float64)
    if wav.dim() == 2 and wav.shape[0] == 1:
        wav = wav[0]
    if wav.dim() != 1:
        raise ValueError(f"{name} must be a mono waveform [N] or [1, N], got shape {tuple(wav.shape)}")
    if not torch.isfinite(wav).all():
        raise ValueError(f"{name} holds NaN or Inf samples")
    return wav
