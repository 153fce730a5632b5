"""Audio in and out of the server: uploads decoded with limits, responses encoded in the asked format."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from ..errors import AudioError

__all__ = ["MEDIA_TYPES", "decode_upload", "encode_audio", "pcm16", "streaming_wav_header"]

MEDIA_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
}
_SOUNDFILE = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", None),
    "opus": ("OGG", "OPUS"),
}
_OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)


def decode_upload(data: bytes, what: str, max_seconds: float) -> tuple[Tensor, int]:
    """An uploaded file → mono float waveform ``[N]`` and its rate; a clear :class:`AudioError` otherwise."""
    if not data:
        raise AudioError(f"{what} is empty")
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            rate, frames = handle.samplerate, handle.frames
            if rate <= 0 or frames <= 0:
                raise AudioError(f"{what} holds no audio")
            if frames / rate > max_seconds:
                raise AudioError(
                    f"{what} lasts {frames / rate:.1f} s; this server takes at most {max_seconds:g} s"
                )
            samples = handle.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError) as error:
        raise AudioError(f"{what} is not audio this server can read (WAV, FLAC, OGG, MP3): {error}") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{what} holds no audio")
    wav = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))
    if not torch.isfinite(wav).all():
        raise AudioError(f"{what} holds NaN or infinite samples")
    return wav, rate


def pcm16(wav: Tensor) -> bytes:
    """Raw 16-bit little-endian samples (clipped to [-1, 1])."""
    samples = (wav.detach().float().cpu().clamp(-1, 1) * 32767).round().to(torch.int16).numpy()
    return samples.astype("<i2").tobytes()


def streaming_wav_header(rate: int) -> bytes:
    """A 16-bit mono WAV header of unknown length (sizes 0xFFFFFFFF), as streaming servers send."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data" + struct.pack("<I", unknown)
    )  # fmt: skip


def encode_audio(wav: Tensor, rate: int, response_format: str) -> tuple[bytes, int]:
    """``wav`` ``[N]`` in ``response_format`` → (bytes, the rate written: Opus takes 8/12/16/24/48 kHz)."""
    if response_format == "pcm":
        return pcm16(wav), rate
    container, subtype = _SOUNDFILE[response_format]
    if response_format == "opus" and rate not in _OPUS_RATES:
        from ..audio import resample

        wav, rate = resample(wav, rate, 48_000), 48_000
    buffer = io.BytesIO()
    sf.write(buffer, wav.detach().float().cpu().clamp(-1, 1).numpy(), rate, format=container, subtype=subtype)
    return buffer.getvalue(), rate
