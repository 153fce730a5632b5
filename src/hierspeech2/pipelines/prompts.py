"""Voice prompts: encoded once (log-mel of the original and the denoised audio, peak, F0), cached per call."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..audio import LogMelSpectrogram, pad_to_multiple
from ..constants import HOP_LENGTH, MODEL_SAMPLE_RATE
from ..errors import AudioError, SettingError
from .inputs import AudioInput, as_waveform, check_peak, with_rate
from .scheduler import JOB_ERRORS, device_of, dtype_of

__all__ = [
    "MIN_PROMPT_SECONDS",
    "PROMPT_MULTIPLE",
    "Prompt",
    "PromptCache",
    "encode_prompt",
    "prompt_rows",
    "require_denoiser",
]

MIN_PROMPT_SECONDS = 0.5
DENOISER_WINDOW = 400  # MP-SENet's STFT window at 16 kHz
PROMPT_MULTIPLE = math.lcm(HOP_LENGTH, DENOISER_WINDOW)
"""The official scripts pad prompts to a multiple of the model hop and the denoiser window (1600)."""

F0Extractor = Callable[[Tensor], Tensor]
"""16 kHz waveform ``[N]`` → F0 in Hz, one frame per 80 samples (``[N / 80]`` for N a multiple of 80),
0 = unvoiced."""


@dataclass(frozen=True)
class Prompt:
    """A voice prompt encoded once: log-mel rows (original, denoised) ``[2, 80, T]``, its peak, its F0 (VC).

    ``denoised`` says whether the second row went through the denoiser (otherwise it repeats the first).
    """

    mel: Tensor
    peak: float
    f0: np.ndarray | None = None
    denoised: bool = False


def require_denoiser(denoise_ratio: float, denoiser: nn.Module | None) -> None:
    """Refuse to encode prompt audio at ``denoise_ratio > 0`` without a denoiser to make the denoised row."""
    if denoise_ratio > 0 and denoiser is None:
        raise SettingError(
            f"denoise_ratio={denoise_ratio} needs a prompt denoiser to denoise the voice prompt audio; "
            "none is loaded, so pass denoise_ratio=0, load one "
            "(denoiser=hierspeech2.load_model('denoiser')), or pass a Prompt whose second row is already "
            "denoised"
        )


def encode_prompt(
    audio: AudioInput,
    sample_rate: int | None,
    *,
    mel: LogMelSpectrogram,
    denoiser: nn.Module | None,
    denoise_ratio: float,
    f0_extractor: F0Extractor | None = None,
) -> Prompt:
    """Load, check and encode a voice prompt; denoised (by ``denoiser``) only when ``denoise_ratio > 0``."""
    require_denoiser(denoise_ratio, denoiser)
    prompt = check_peak(as_waveform(audio, sample_rate, "voice prompt"), "voice prompt")
    seconds = prompt.numel() / MODEL_SAMPLE_RATE
    if seconds < MIN_PROMPT_SECONDS:
        raise AudioError(
            f"voice prompt is {seconds:.2f} s long; give at least {MIN_PROMPT_SECONDS} s of speech "
            "(3–10 s works best)"
        )
    f0 = None if f0_extractor is None else f0_extractor(prompt).reshape(-1).cpu().numpy()
    if denoise_ratio > 0:
        padded = pad_to_multiple(prompt, PROMPT_MULTIPLE)
        device, dtype = device_of(denoiser), dtype_of(denoiser)
        denoised = denoiser(padded.unsqueeze(0).to(device, dtype)).reshape(-1)[: prompt.numel()]
    else:
        denoised = prompt
    rows = torch.stack([prompt, denoised.float().cpu()])
    log_mel = mel(rows.to(next(iter(mel.buffers())).device))
    return Prompt(mel=log_mel, peak=float(prompt.abs().max()), f0=f0, denoised=denoise_ratio > 0)


def prompt_rows(prompts: Sequence[Prompt], device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Prompts → interleaved rows ``[2B, 80, T_max]`` (zero-padded) and their lengths ``[2B]``."""
    frames = max(p.mel.shape[-1] for p in prompts)
    mel = torch.cat([nn.functional.pad(p.mel, (0, frames - p.mel.shape[-1])) for p in prompts])
    lengths = torch.tensor([p.mel.shape[-1] for p in prompts for _ in range(2)], device=device)
    return mel.to(device, dtype), lengths


class PromptCache:
    """Prompts by file path within one call, so that a prompt shared by many jobs is encoded once.

    Args:
        encode: ``(audio, sample_rate) → Prompt``.
        denoise_ratio: the call's ratio; an encoded :class:`Prompt` must bring a denoised row for one > 0.
        needs_f0: whether an encoded :class:`Prompt` must bring its F0 (voice conversion).
    """

    def __init__(
        self, encode: Callable[[AudioInput, int | None], Prompt], denoise_ratio: float, needs_f0: bool
    ) -> None:
        self.encode = encode
        self.denoise_ratio = denoise_ratio
        self.needs_f0 = needs_f0
        self.cache: dict[str, Prompt | BaseException] = {}

    def get(self, audio: AudioInput | Prompt, sample_rate: int | None) -> Prompt:
        """The encoded prompt of ``audio`` (checked if already encoded); a failed file fails every job
        using it."""
        audio, sample_rate = with_rate(audio, sample_rate)
        if isinstance(audio, Prompt):
            if self.denoise_ratio > 0 and not audio.denoised:
                raise ValueError(
                    f"this Prompt was encoded without denoising, so denoise_ratio={self.denoise_ratio} would "
                    "mix it with itself; encode it with encode_prompt(audio, denoise_ratio=...) or pass 0"
                )
            if self.needs_f0 and audio.f0 is None:
                raise ValueError(
                    "voice conversion needs the prompt's F0: encode it with VoiceConversion.encode_prompt"
                )
            return audio
        if not isinstance(audio, (str, os.PathLike)):
            return self.encode(audio, sample_rate)
        key = os.fspath(audio)
        if key not in self.cache:
            try:
                self.cache[key] = self.encode(audio, sample_rate)
            except JOB_ERRORS as error:
                self.cache[key] = error
        cached = self.cache[key]
        if isinstance(cached, BaseException):
            raise cached
        return cached
