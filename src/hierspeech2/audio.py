"""Audio I/O, resampling and the spectral front ends the released models were trained on.

The model side runs at 16 kHz with a 320-sample hop. ``LogMelSpectrogram`` feeds the style
encoders (voice prompts) and the mel losses; ``LinearSpectrogram`` feeds the backbone's posterior
encoder during training.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor, nn

from hierspeech2.constants import HOP_LENGTH, MODEL_SAMPLE_RATE, PAD_MULTIPLE
from hierspeech2.errors import AudioError, AudioFileNotFoundError, OutputError

__all__ = [
    "HOP_LENGTH",
    "MODEL_SAMPLE_RATE",
    "LinearSpectrogram",
    "LogMelSpectrogram",
    "MelConfig",
    "linear_spectrogram",
    "load_audio",
    "log_mel",
    "mel_filterbank",
    "pad_to_multiple",
    "read_audio",
    "resample",
    "save_audio",
    "validate_waveform",
]

# Added to the mel power before the log; the released weights saw exactly this floor.
LOG_MEL_FLOOR = 1e-3
# torchaudio's Kaiser-window sinc resampler with its default width/rolloff/beta: what the official
# inference scripts call (under the older name "kaiser_window").
RESAMPLING_METHOD = "sinc_interp_kaiser"
# The exact sinc resampler builds a [new / gcd, orig / gcd + 2 * width] filter: rates with a small
# common divisor (44101 -> 16000 Hz) would need gigabytes. Refuse above these sizes rather than
# let the process be killed for memory.
MAX_RESAMPLE_KERNEL_ELEMENTS = 1 << 22  # standard rates need < 300 000
MAX_RESAMPLED_SAMPLES = 1 << 30
_RESAMPLING_WIDTH = 6  # torchaudio's lowpass_filter_width default
_RESAMPLING_ROLLOFF = 0.99  # torchaudio's rolloff default


# --------------------------------------------------------------------------------------------
# validation


def validate_waveform(wav: Any, name: str = "waveform", *, min_samples: int = 1) -> Tensor:
    """Check that ``wav`` is a usable floating-point waveform and return it as a tensor (same shape).

    Accepts a ``torch.Tensor`` or ``numpy.ndarray`` of any shape ``[..., N]``; raises
    :class:`AudioError` (naming ``name``) for other types, non-float dtypes, fewer than
    ``min_samples`` samples along the last axis, or NaN/Inf values.
    """
    if isinstance(wav, np.ndarray):
        if not np.issubdtype(wav.dtype, np.floating):
            raise AudioError(
                f"{name} has dtype {wav.dtype}; expected floating-point samples in [-1, 1] "
                "(convert 16-bit PCM with `wav.astype(np.float32) / 32768`)"
            )
        # torch takes neither big-endian arrays (AIFF, raw reads) nor float128: convert those first.
        native = wav.dtype.newbyteorder("=")
        wav = np.asarray(wav, dtype=native if native.itemsize <= 8 else np.float64, order="C")
        wav = torch.from_numpy(wav)
    elif not isinstance(wav, Tensor):
        raise AudioError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(wav).__name__}")
    if not wav.is_floating_point():
        raise AudioError(
            f"{name} has dtype {wav.dtype}; expected floating-point samples in [-1, 1] "
            "(convert 16-bit PCM with `wav.float() / 32768`)"
        )
    if wav.ndim == 0:
        raise AudioError(f"{name} is a scalar; expected samples along the last axis, shape [..., N]")
    if wav.shape[-1] < min_samples or wav.numel() == 0:
        raise AudioError(
            f"{name} has {wav.shape[-1]} samples (shape {tuple(wav.shape)}); at least {min_samples} needed"
        )
    if not bool(torch.isfinite(wav).all()):
        bad = int((~torch.isfinite(wav)).sum())
        raise AudioError(f"{name} contains {bad} NaN/Inf samples; clean or re-export the audio")
    return wav


def _check_rate(rate: float, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise AudioError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    if not math.isfinite(rate) or rate <= 0 or rate != int(rate):
        raise AudioError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    return int(rate)


# --------------------------------------------------------------------------------------------
# file I/O and resampling


def read_audio(path: str | os.PathLike) -> tuple[Tensor, int]:
    """Read an audio file at its own rate → (mono float32 waveform ``[N]`` in [-1, 1], sample rate)."""
    path = Path(path)
    if not path.exists():
        raise AudioFileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [N, C]
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(
            f"cannot read {path} as audio ({error}); supported formats: "
            f"{', '.join(sorted(sf.available_formats()))}"
        ) from error
    if data.shape[0] == 0:
        raise AudioError(f"{path} contains no audio samples")
    # Mix every channel down; the released models are mono.
    wav = torch.from_numpy(data).mean(dim=1)
    validate_waveform(wav, name=str(path))
    return wav, int(rate)


def load_audio(path: str | os.PathLike, sample_rate: int = MODEL_SAMPLE_RATE) -> Tensor:
    """Read an audio file as mono float32 ``[N]`` in [-1, 1], resampled to ``sample_rate``."""
    sample_rate = _check_rate(sample_rate, "sample_rate")
    wav, rate = read_audio(path)
    return resample(wav, rate, sample_rate)


def resample(wav: Tensor, orig_freq: int, new_freq: int) -> Tensor:
    """Resample ``[..., N]`` from ``orig_freq`` to ``new_freq`` Hz with the official Kaiser-sinc filter."""
    orig_freq = _check_rate(orig_freq, "orig_freq")
    new_freq = _check_rate(new_freq, "new_freq")
    wav = validate_waveform(wav)
    if orig_freq == new_freq:
        return wav
    _check_resample_cost(wav, orig_freq, new_freq)
    return AF.resample(wav, orig_freq, new_freq, resampling_method=RESAMPLING_METHOD)


def _check_resample_cost(wav: Tensor, orig_freq: int, new_freq: int) -> None:
    gcd = math.gcd(orig_freq, new_freq)
    up, down = new_freq // gcd, orig_freq // gcd
    width = math.ceil(_RESAMPLING_WIDTH * down / (min(up, down) * _RESAMPLING_ROLLOFF))
    kernel = up * (down + 2 * width)
    if kernel > MAX_RESAMPLE_KERNEL_ELEMENTS:
        raise AudioError(
            f"cannot resample {orig_freq} Hz to {new_freq} Hz exactly: the rates reduce to {down}:{up}, "
            f"whose sinc filter would hold {kernel:,} values (limit {MAX_RESAMPLE_KERNEL_ELEMENTS:,}); "
            "convert the audio to a standard rate first (8000, 16000, 22050, 24000, 44100 or 48000 Hz, "
            "e.g. with ffmpeg -ar)"
        )
    out_samples = (wav.numel() // max(wav.shape[-1], 1)) * math.ceil(wav.shape[-1] * up / down)
    if out_samples > MAX_RESAMPLED_SAMPLES:
        raise AudioError(
            f"resampling {tuple(wav.shape)} from {orig_freq} Hz to {new_freq} Hz would give "
            f"{out_samples:,} samples "
            f"(limit {MAX_RESAMPLED_SAMPLES:,}); check the sample rates, or cut the audio into shorter files"
        )


def save_audio(
    path: str | os.PathLike, wav: Tensor | np.ndarray, sample_rate: int, *, subtype: str | None = None
) -> Path:
    """Write ``[N]`` (mono) or ``[C, N]`` audio atomically; the format follows the file extension.

    ``subtype`` is a soundfile subtype (``"PCM_16"``, ``"FLOAT"``, ...); default: the format's
    default (16-bit PCM for WAV and FLAC). Integer subtypes clip to [-1, 1].
    """
    path = Path(path)
    sample_rate = _check_rate(sample_rate, "sample_rate")
    wav = validate_waveform(wav, name="wav")
    wav = wav.detach().to("cpu", torch.float32)
    while wav.ndim > 2 and wav.shape[0] == 1:
        wav = wav[0]
    if wav.ndim > 2:
        raise AudioError(f"save_audio expects [N] or [C, N] audio, got shape {tuple(wav.shape)}")
    data = wav.numpy().T if wav.ndim == 2 else wav.numpy()  # soundfile wants [N, C]

    audio_format = _format_for(path)
    if subtype is not None and not sf.check_format(audio_format, subtype):
        raise AudioError(
            f"subtype {subtype!r} is not valid for {audio_format} files; "
            f"valid: {', '.join(sorted(sf.available_subtypes(audio_format)))}"
        )
    # A crash mid-write must never leave a truncated file under the final name.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(tmp), data, sample_rate, subtype=subtype, format=audio_format)
        os.replace(tmp, path)
    except OSError as error:  # full disk, read-only folder
        raise OutputError.writing(path, error) from error
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"cannot write {path}: {error}") from error
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def _format_for(path: Path) -> str:
    extension = path.suffix.lstrip(".").upper()
    formats = sf.available_formats()
    aliases = {"AIF": "AIFF", "OGA": "OGG", "OPUS": "OGG"}
    audio_format = aliases.get(extension, extension)
    if audio_format not in formats:
        raise AudioError(
            f"cannot tell the audio format from the extension of {path}; "
            f"use one of: {', '.join('.' + f.lower() for f in sorted(formats))}"
        )
    return audio_format


def pad_to_multiple(wav: Tensor, multiple: int = PAD_MULTIPLE) -> Tensor:
    """Zero-pad ``[..., N]`` on the right to the next multiple of ``multiple`` (official rule).

    As in the official scripts, 1 to ``multiple`` samples are always added: an input that is
    already a multiple still gains a full block. F0 and MMS features are computed on this.
    """
    extra = (wav.shape[-1] // multiple + 1) * multiple - wav.shape[-1]
    return nn.functional.pad(wav, (0, extra))


# --------------------------------------------------------------------------------------------
# spectral front ends


def mel_filterbank(
    n_fft: int = 1280,
    n_mels: int = 80,
    sample_rate: int = MODEL_SAMPLE_RATE,
    f_min: float = 0.0,
    f_max: float = 8000.0,
) -> Tensor:
    """HTK-scale mel triangles, no area normalisation (torchaudio's defaults) →
    ``[n_mels, n_fft // 2 + 1]``."""
    filters = AF.melscale_fbanks(
        n_fft // 2 + 1, float(f_min), float(f_max), n_mels, sample_rate, norm=None, mel_scale="htk"
    )
    return filters.T.contiguous()


def _no_autocast(device: torch.device):
    # The power spectrum reaches ~4e5 for full-scale audio: it would overflow float16 under autocast.
    is_available = getattr(torch.amp, "is_autocast_available", None)
    if is_available is not None and not is_available(device.type):
        return nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


def linear_spectrogram(
    wav: Tensor, window: Tensor, hop_length: int, n_fft: int, power: float = 2.0
) -> Tensor:
    """``|STFT(wav)| ** power`` of ``[..., N]`` → ``[..., n_fft // 2 + 1, N // hop_length]``.

    Centred frames (reflect padding by ``n_fft // 2``), as torchaudio's ``Spectrogram``; the last
    frame is dropped so that frame ``t`` covers samples ``[t * hop, (t + 1) * hop)`` of the model.
    """
    if not isinstance(wav, Tensor) or not wav.is_floating_point() or wav.ndim == 0:
        raise AudioError(
            "expected a floating-point waveform tensor [..., N] in [-1, 1], got "
            f"{type(wav).__name__} {getattr(wav, 'dtype', '')} {tuple(getattr(wav, 'shape', ()))}"
        )
    n_samples = wav.shape[-1]
    if n_samples <= n_fft // 2:
        raise AudioError(
            f"audio of {n_samples} samples is too short for the spectrogram: it needs more than "
            f"{n_fft // 2} samples (n_fft // 2, for the reflect padding)"
        )
    out_dtype = wav.dtype
    compute_dtype = torch.promote_types(wav.dtype, torch.float32)
    leading = wav.shape[:-1]
    with _no_autocast(wav.device):
        spec = torch.stft(
            wav.reshape(-1, n_samples).to(compute_dtype),
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=window.shape[-1],
            window=window.to(compute_dtype),
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        spec = spec[..., :-1].abs()
        if power != 1.0:
            spec = spec.pow(power)
    return spec.reshape(*leading, *spec.shape[-2:]).to(out_dtype)


def log_mel(wav: Tensor, mel_basis: Tensor, window: Tensor, hop_length: int) -> Tensor:
    """``log(mel_basis @ |STFT(wav)|^2 + 0.001)`` of ``[..., N]`` → ``[..., n_mels, N // hop_length]``.

    ``mel_basis`` is ``[n_mels, n_fft // 2 + 1]``; ``n_fft`` follows from it.
    """
    n_fft = 2 * (mel_basis.shape[-1] - 1)
    power = linear_spectrogram(wav, window, hop_length, n_fft, power=2.0)
    out_dtype = power.dtype
    compute_dtype = torch.promote_types(out_dtype, torch.float32)
    with _no_autocast(power.device):
        mel = torch.matmul(mel_basis.to(compute_dtype), power.to(compute_dtype))
        # The released weights saw log(mel + 0.001): no clamp, natural log.
        return torch.log(mel + LOG_MEL_FLOOR).to(out_dtype)


class _FramedSpectrum(nn.Module):
    """What both front ends share: ``n_fft``, ``hop_length`` and a Hann window (a non-persistent buffer)."""

    def __init__(self, n_fft: int, win_length: int, hop_length: int) -> None:
        super().__init__()
        if win_length > n_fft:
            raise ValueError(f"win_length ({win_length}) cannot exceed n_fft ({n_fft})")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)


class LogMelSpectrogram(_FramedSpectrum):
    """The official log-mel front end: ``[..., N]`` 16 kHz audio → ``[..., 80, N // 320]``."""

    def __init__(
        self,
        sample_rate: int = MODEL_SAMPLE_RATE,
        n_fft: int = 1280,
        win_length: int = 1280,
        hop_length: int = HOP_LENGTH,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float = 8000.0,
    ) -> None:
        super().__init__(n_fft, win_length, hop_length)
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.register_buffer(
            "mel_basis", mel_filterbank(n_fft, n_mels, sample_rate, f_min, f_max), persistent=False
        )

    def forward(self, wav: Tensor) -> Tensor:
        """``[..., N]`` → ``[..., n_mels, N // hop_length]``."""
        return log_mel(wav, self.mel_basis, self.window, self.hop_length)


class LinearSpectrogram(_FramedSpectrum):
    """Linear spectrogram for the backbone's posterior encoder: ``[..., N]`` → ``[..., 641, N // 320]``.

    The training code of the backbone is unreleased. The official repository ships
    ``SpectrogramFixed`` (in ``Mels_preprocess.py``) next to the mel front end: torchaudio's
    ``Spectrogram`` with its defaults, i.e. the *power* spectrum (``power=2``), centred reflect-padded
    frames, no log, last frame dropped; the authors' other repositories call it that way for
    their posterior encoders. That is the default here; ``power=1.0`` gives the VITS-style magnitude.
    """

    def __init__(
        self, n_fft: int = 1280, win_length: int = 1280, hop_length: int = HOP_LENGTH, power: float = 2.0
    ) -> None:
        super().__init__(n_fft, win_length, hop_length)
        self.power = power

    @property
    def n_freqs(self) -> int:
        """Number of frequency bins, ``n_fft // 2 + 1`` (the backbone's ``spec_channels``)."""
        return self.n_fft // 2 + 1

    def forward(self, wav: Tensor) -> Tensor:
        """``[..., N]`` → ``[..., n_fft // 2 + 1, N // hop_length]``."""
        return linear_spectrogram(wav, self.window, self.hop_length, self.n_fft, self.power)


@dataclass(frozen=True)
class MelConfig:
    """The log-mel settings of the released models; ``LogMelSpectrogram(**asdict(config))``."""

    sample_rate: int = MODEL_SAMPLE_RATE
    n_fft: int = 1280
    win_length: int = 1280
    hop_length: int = HOP_LENGTH
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
