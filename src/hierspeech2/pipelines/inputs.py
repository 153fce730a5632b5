"""Input checks of the pipelines: audio from a path, an array or a tensor, validated, mono, at 16 kHz."""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from ..audio import load_audio, resample, validate_waveform
from ..audio_stream import AudioReader
from ..constants import MODEL_SAMPLE_RATE
from ..errors import AudioError

__all__ = [
    "MAX_CHANNELS",
    "MAX_INPUT_PEAK",
    "AudioInput",
    "as_waveform",
    "check_peak",
    "open_reader",
    "peak_normalise",
    "with_rate",
]

AudioInput = Union[str, "os.PathLike[str]", np.ndarray, Tensor]
"""A file path, or a waveform ``[N]``/``[C, N]`` (array or tensor) given with its sample rate."""

MAX_CHANNELS = 32
"""A ``[C, N]`` array with more rows than this is taken for a batch, which pipelines refuse."""
MAX_INPUT_PEAK = 1_000.0
"""Float audio is about [-1, 1]; far beyond, the spectrogram features overflow and the output turns to NaN."""


def as_waveform(
    audio: AudioInput, sample_rate: int | None, name: str, target_rate: int = MODEL_SAMPLE_RATE
) -> Tensor:
    """A path, array or tensor → mono float32 ``[N]`` at ``target_rate`` (validated: non-empty, finite)."""
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, target_rate)
    if sample_rate is None:
        raise AudioError(
            f"{name}: pass its sample rate together with an array or tensor (or give a file path)"
        )
    wav = validate_waveform(audio, name).detach().to(device="cpu", dtype=torch.float32)
    if wav.dim() == 2 and wav.shape[0] <= MAX_CHANNELS:  # [C, N]: mix down to mono
        wav = wav.mean(dim=0)
    elif wav.dim() != 1:
        raise AudioError(
            f"{name}: expected mono [N] or multichannel [C, N] audio, got shape {tuple(wav.shape)}"
        )
    return resample(wav, sample_rate, target_rate) if sample_rate != target_rate else wav


def check_peak(wav: Tensor, name: str) -> Tensor:
    """``wav`` unchanged, or an :class:`AudioError` when its samples are far outside [-1, 1] (not audio)."""
    peak = float(wav.abs().max()) if wav.numel() else 0.0
    if peak > MAX_INPUT_PEAK:
        raise AudioError(
            f"{name} peaks at {peak:.3g}, but audio samples belong in [-1, 1] (limit {MAX_INPUT_PEAK:g}); "
            "is it 16-bit PCM stored as float? divide it by 32768"
        )
    return wav


def with_rate(audio: Any, sample_rate: int | None) -> tuple[Any, int | None]:
    """``(waveform, rate)`` pairs (how ``*_many`` jobs pass in-memory audio) → waveform and rate."""
    if isinstance(audio, tuple) and len(audio) == 2 and not isinstance(audio[1], (Tensor, np.ndarray)):
        return audio
    return audio, sample_rate


def open_reader(audio: AudioInput, sample_rate: int | None, name: str) -> AudioReader:
    """A 16 kHz :class:`~hierspeech2.audio_stream.AudioReader` of a path or a checked in-memory waveform."""
    audio, sample_rate = with_rate(audio, sample_rate)
    if not isinstance(audio, (str, os.PathLike)):
        audio = as_waveform(audio, sample_rate, name)
        sample_rate = MODEL_SAMPLE_RATE
    return AudioReader(audio, sample_rate, MODEL_SAMPLE_RATE, name)


def peak_normalise(wav: Tensor, peak: float) -> Tensor:
    """Scale so that ``max |wav| == peak`` (silence stays silence)."""
    top = wav.abs().max()
    return wav if top == 0 else wav / top * peak
