"""Audio of any length without holding it: windowed reads at the model rate, two-pass normalised writes.

:class:`AudioReader` reads ``[start, end)`` of a file (or an in-memory waveform) at 16 kHz,
resampling only the part it reads; the result equals resampling the whole file to within
float rounding. :class:`FileSink` writes finished blocks to a raw float32 scratch file next to the
output, tracking the peak, then rescales them into the final file (format from its extension),
so the peak normalisation of the official scripts needs no more memory than one block.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from .audio import _format_for, resample, validate_waveform
from .constants import MODEL_SAMPLE_RATE
from .errors import AudioError, AudioFileNotFoundError, OutputError

__all__ = ["AudioReader", "FileSink", "MemorySink", "Normalisation"]

Normalisation = Literal["max", "prompt", "none"]

# torchaudio's Kaiser-sinc resampler (hierspeech2.audio.resample) looks this many zero crossings
# each side, with a cut-off at 0.99 of the lower Nyquist rate; a read adds that much input.
_LOWPASS_WIDTH = 6
_ROLLOFF = 0.99
WRITE_BLOCK = 1 << 18  # samples per block when rescaling the scratch file into the output


class AudioReader:
    """Random-access mono view of an audio file or waveform at ``rate`` Hz; files are read window by window.

    Args:
        audio: a file path, or a waveform ``[N]``/``[C, N]`` (tensor or array) with ``sample_rate``.
        sample_rate: rate of an in-memory waveform (ignored for files).
        rate: the rate reads are returned at.
        name: what to call the audio in error messages.
    """

    def __init__(
        self,
        audio: str | os.PathLike | Tensor | np.ndarray,
        sample_rate: int | None = None,
        rate: int = MODEL_SAMPLE_RATE,
        name: str = "audio",
    ) -> None:
        self.rate = rate
        self.name = name
        self.path: Path | None = None
        self.waveform: Tensor | None = None
        if isinstance(audio, (str, os.PathLike)):
            self.path = Path(audio)
            self.file_rate, self.file_frames = _probe(self.path)
            reduced = math.gcd(self.file_rate, rate)
            self._orig, self._new = self.file_rate // reduced, rate // reduced
            width = math.ceil(_LOWPASS_WIDTH * self._orig / (_ROLLOFF * min(self._orig, self._new)))
            self._margin_blocks = math.ceil(width / self._orig) + 2
            self.num_samples = math.ceil(self.file_frames * self._new / self._orig)
        else:
            if sample_rate is None:
                raise AudioError(
                    f"{name}: pass its sample rate together with an array or tensor (or give a file path)"
                )
            wav = validate_waveform(audio, name).detach().to(device="cpu", dtype=torch.float32)
            if wav.dim() == 2:
                wav = wav.mean(dim=0)
            if wav.dim() != 1:
                raise AudioError(
                    f"{name}: expected mono [N] or multichannel [C, N] audio, got shape {tuple(wav.shape)}"
                )
            self.waveform = resample(wav, sample_rate, rate) if sample_rate != rate else wav
            self.num_samples = self.waveform.numel()

    def read(self, start: int, end: int) -> Tensor:
        """Samples ``[start, end)`` at ``rate`` as float32 ``[end - start]``; zeros outside
        ``[0, num_samples)``."""
        if end < start:
            raise ValueError(f"cannot read [{start}, {end})")
        out = torch.zeros(end - start)
        lo, hi = max(start, 0), min(end, self.num_samples)
        if hi > lo:
            out[lo - start : hi - start] = self._read_inside(lo, hi)
        return out

    def _read_inside(self, start: int, end: int) -> Tensor:
        if self.waveform is not None:
            return self.waveform[start:end]
        if self._orig == self._new:
            return _read_frames(self.path, start, end)
        # Resample whole blocks of the reduced ratio with margin: output sample n·new + p depends
        # only on input samples near n·orig, exactly as in one call over the whole file.
        first_block = start // self._new - self._margin_blocks
        last_block = math.ceil(end / self._new) + self._margin_blocks
        frames_from, frames_to = first_block * self._orig, last_block * self._orig
        segment = torch.zeros(frames_to - frames_from)
        lo, hi = max(frames_from, 0), min(frames_to, self.file_frames)
        if hi > lo:
            segment[lo - frames_from : hi - frames_from] = _read_frames(self.path, lo, hi)
        resampled = resample(segment, self.file_rate, self.rate)
        offset = start - first_block * self._new
        return resampled[offset : offset + end - start]


def _probe(path: Path) -> tuple[int, int]:
    if not path.exists():
        raise AudioFileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"cannot read {path} as audio ({error})") from error
    if info.frames <= 0:
        raise AudioError(f"{path} contains no audio samples")
    return int(info.samplerate), int(info.frames)


def _read_frames(path: Path, start: int, end: int) -> Tensor:
    try:
        with sf.SoundFile(str(path)) as file:
            file.seek(start)
            data = file.read(end - start, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError) as error:
        raise AudioError(f"cannot read samples {start}–{end} of {path} ({error})") from error
    wav = torch.from_numpy(data).mean(dim=1)
    if not bool(torch.isfinite(wav).all()):
        raise AudioError(f"{path} contains NaN/Inf samples; clean or re-export the audio")
    if wav.numel() < end - start:  # a file shorter than its header says
        wav = torch.nn.functional.pad(wav, (0, end - start - wav.numel()))
    return wav


def _gain(peak: float, normalisation: Normalisation, target_peak: float) -> float:
    if normalisation == "none" or peak == 0:
        return 1.0
    return target_peak / peak


class MemorySink:
    """Collects blocks ``[n]``; ``close`` returns the whole waveform, peak-normalised to ``target_peak``."""

    def __init__(self, normalisation: Normalisation = "max", target_peak: float = 0.999) -> None:
        self.normalisation = normalisation
        self.target_peak = target_peak
        self.blocks: list[Tensor] = []

    def write(self, block: Tensor) -> None:
        self.blocks.append(block.detach().reshape(-1).float().cpu())

    def close(self) -> Tensor:
        wav = torch.cat(self.blocks) if self.blocks else torch.zeros(0)
        self.blocks = []
        peak = float(wav.abs().max()) if wav.numel() else 0.0
        return wav * _gain(peak, self.normalisation, self.target_peak)

    def discard(self) -> None:
        self.blocks = []


class FileSink:
    """Streams blocks to ``path`` (wav/flac/ogg… by extension) through a float32 scratch file;
    memory stays flat.

    The output appears atomically when :meth:`close` succeeds; :meth:`discard` leaves nothing behind.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int,
        normalisation: Normalisation = "max",
        target_peak: float = 0.999,
        subtype: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.format = _format_for(self.path)
        self.sample_rate = sample_rate
        self.normalisation = normalisation
        self.target_peak = target_peak
        self.subtype = subtype
        token = uuid.uuid4().hex
        self.scratch = self.path.with_name(f".{self.path.name}.{token}.f32")
        self.partial = self.path.with_name(f".{self.path.name}.{token}.tmp")
        self.peak = 0.0
        self.samples = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._raw = open(self.scratch, "wb")  # noqa: SIM115 - closed in close()/discard()
        except OSError as error:
            raise OutputError.writing(self.path, error) from error

    def write(self, block: Tensor) -> None:
        data = block.detach().reshape(-1).float().cpu().numpy()
        if data.size:
            self.peak = max(self.peak, float(np.abs(data).max()))
            try:
                self._raw.write(data.tobytes())
            except OSError as error:  # the scratch file filled the disk
                self.discard()
                raise OutputError.writing(self.path, error) from error
            self.samples += data.size

    def close(self) -> Path:
        """Rescale the scratch file into the output; returns its path."""
        gain = _gain(self.peak, self.normalisation, self.target_peak)
        try:
            self._raw.close()  # flushes the last buffered block, which can hit a full disk
            with sf.SoundFile(
                str(self.partial),
                "w",
                samplerate=self.sample_rate,
                channels=1,
                format=self.format,
                subtype=self.subtype,
            ) as out:
                for offset in range(0, self.samples, WRITE_BLOCK):
                    count = min(WRITE_BLOCK, self.samples - offset)
                    block = np.fromfile(self.scratch, dtype=np.float32, count=count, offset=4 * offset)
                    out.write(block * np.float32(gain))
            os.replace(self.partial, self.path)
        except OSError as error:
            raise OutputError.writing(self.path, error) from error
        except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
            raise AudioError(f"cannot write {self.path}: {error}") from error
        finally:
            self._cleanup()
        return self.path

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._raw.close()
        self._cleanup()

    def _cleanup(self) -> None:
        for path in (self.scratch, self.partial):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
