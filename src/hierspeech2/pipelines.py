"""End-to-end inference with the official HierSpeech++ semantics: VC, TTS and super-resolution.

Inputs are file paths, numpy arrays or tensors at any sample rate; every pipeline returns
``(waveform [N] float32 tensor on CPU, sample_rate)``.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, Union

import numpy as np
import torch
from torch import Tensor, nn

from .audio import LogMelSpectrogram, load_audio, pad_to_multiple, resample, validate_waveform
from .errors import AudioError
from .models import HierSpeech2, SpeechSR, TextToVec
from .pitch import yaapt
from .text import text_to_tokens

if TYPE_CHECKING:
    from .ssl import SemanticEncoder

AudioInput = Union[str, "os.PathLike[str]", np.ndarray, Tensor]
ScaleNorm = Literal["max", "prompt", "none"]

SAMPLE_RATE = 16_000
SOURCE_MULTIPLE = 1280  # official VC pads the source so MMS frames (hop 320) and F0 frames (hop 80) align
PROMPT_MULTIPLE = 1600  # official pads prompts to a multiple of lcm(320, 400): model hop 320, denoiser hop 400
MIN_PROMPT_SECONDS = 0.5
PITCH_FLOOR_HZ = 55.0  # the official TTS chain zeroes log F0 below this
PEAK = 0.999  # official output peak after "max" normalisation
OUTPUT_RATES = (16_000, 24_000, 48_000)
MAX_CHANNELS = 32  # a [C, N] array with more rows than this is taken for a batch, which pipelines refuse


def as_waveform(audio: AudioInput, sample_rate: int | None, name: str, target_rate: int = SAMPLE_RATE) -> Tensor:
    """A path, array or tensor → mono float32 ``[N]`` at ``target_rate`` (validated: non-empty, finite)."""
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, target_rate)
    if sample_rate is None:
        raise AudioError(f"{name}: pass its sample rate together with an array or tensor (or give a file path)")
    wav = validate_waveform(audio, name).detach().to(device="cpu", dtype=torch.float32)
    if wav.dim() == 2 and wav.shape[0] <= MAX_CHANNELS:  # [C, N]: mix down to mono
        wav = wav.mean(dim=0)
    elif wav.dim() != 1:
        raise AudioError(f"{name}: expected mono [N] or multichannel [C, N] audio, got shape {tuple(wav.shape)}")
    return resample(wav, sample_rate, target_rate) if sample_rate != target_rate else wav


def peak_normalise(wav: Tensor, peak: float) -> Tensor:
    """Scale so that ``max |wav| == peak`` (silence stays silence)."""
    top = wav.abs().max()
    return wav if top == 0 else wav / top * peak


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with a fixed CPU/CUDA RNG state when ``seed`` is given, restoring it afterwards."""
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def transfer_log_f0(source_f0: np.ndarray, prompt_f0: np.ndarray) -> Tensor:
    """Move the source's voiced F0 to the prompt's mean/std (official VC) → ``log(F0 + 1)``, float32."""
    f0 = source_f0.astype(np.float64).copy()
    voiced, prompt_voiced = f0 != 0, prompt_f0[prompt_f0 != 0].astype(np.float64)
    if voiced.any():
        if prompt_voiced.size == 0:
            warnings.warn("the voice prompt has no voiced frame; keeping the source's F0 unchanged", stacklevel=3)
        else:
            standardised = (f0[voiced] - f0[voiced].mean()) / max(f0[voiced].std(), 1e-8)
            f0[voiced] = (standardised * prompt_voiced.std() + prompt_voiced.mean()).clip(min=0)
    return torch.log(torch.from_numpy(f0 + 1).float())


class _PromptEncoder:
    """Prompt waveform → the two-row log-mel the released models take (original, denoised)."""

    def __init__(self, mel: LogMelSpectrogram, denoiser: nn.Module | None) -> None:
        self.mel = mel
        self.denoiser = denoiser

    def __call__(self, prompt: Tensor, denoise_ratio: float) -> tuple[Tensor, Tensor]:
        seconds = prompt.numel() / SAMPLE_RATE
        if seconds < MIN_PROMPT_SECONDS:
            raise AudioError(
                f"voice prompt is {seconds:.2f} s long; give at least {MIN_PROMPT_SECONDS} s of speech (3–10 s works best)"
            )
        if not 0.0 <= denoise_ratio <= 1.0:
            raise ValueError(f"denoise_ratio must be in [0, 1], got {denoise_ratio}")
        if denoise_ratio > 0 and self.denoiser is None:
            raise ValueError(
                "denoise_ratio > 0 needs a prompt denoiser; none is loaded, so pass denoise_ratio=0"
            )
        if denoise_ratio > 0:
            padded = pad_to_multiple(prompt, PROMPT_MULTIPLE)
            denoised = self.denoiser(padded.unsqueeze(0)).reshape(-1)[: prompt.numel()]
        else:
            denoised = prompt
        rows = torch.stack([prompt, denoised])
        mel = self.mel(rows.to(self.mel_device))
        lengths = torch.full((2,), mel.size(-1), dtype=torch.long, device=mel.device)
        return mel, lengths

    @property
    def mel_device(self) -> torch.device:
        return next(iter(self.mel.buffers())).device


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


class SuperResolution:
    """16 kHz → 24/48 kHz speech with SpeechSR; any input rate is first resampled to 16 kHz."""

    def __init__(self, speechsr: SpeechSR, scale_norm: ScaleNorm = "max") -> None:
        self.speechsr = speechsr.eval()
        self.scale_norm = scale_norm

    @property
    def output_rate(self) -> int:
        return int(self.speechsr.output_rate)

    @torch.inference_mode()
    def __call__(self, audio: AudioInput, sample_rate: int | None = None) -> tuple[Tensor, int]:
        wav = as_waveform(audio, sample_rate, "input audio")
        device = _device_of(self.speechsr)
        out = self.speechsr(wav.view(1, 1, -1).to(device)).reshape(-1).float().cpu()
        if self.scale_norm == "max":
            out = peak_normalise(out, PEAK)
        return out, self.output_rate


class _Synthesis:
    """What VC and TTS share: prompt encoding, the backbone call, optional SpeechSR, normalisation."""

    def __init__(
        self,
        backbone: HierSpeech2,
        speechsr: SpeechSR | None,
        denoiser: nn.Module | None,
        output_rate: int,
        scale_norm: ScaleNorm,
    ) -> None:
        if output_rate not in OUTPUT_RATES:
            raise ValueError(f"output_rate must be one of {OUTPUT_RATES}, got {output_rate}")
        if output_rate != SAMPLE_RATE and (speechsr is None or speechsr.output_rate != output_rate):
            have = "none" if speechsr is None else f"{speechsr.output_rate} Hz"
            raise ValueError(
                f"output_rate={output_rate} needs a SpeechSR model for {output_rate} Hz (have {have}); "
                f"pass speechsr=SpeechSR.from_packaged({output_rate}) or output_rate=16000"
            )
        self.backbone = backbone.eval()
        self.speechsr = speechsr.eval() if speechsr is not None else None
        self.output_rate = output_rate
        self.scale_norm = scale_norm
        self.mel = LogMelSpectrogram().to(_device_of(backbone))
        self.prompt_encoder = _PromptEncoder(self.mel, denoiser)

    def _render(self, semantic: Tensor, log_f0: Tensor, prompt_mel: Tensor, prompt_lengths: Tensor,
                noise_scale: float, denoise_ratio: float, prompt_peak: float) -> Tensor:
        lengths = torch.full((semantic.size(0),), semantic.size(-1), dtype=torch.long, device=semantic.device)
        wav = self.backbone.voice_conversion(
            semantic, lengths, prompt_mel, prompt_lengths, log_f0,
            noise_scale=noise_scale, denoise_ratio=denoise_ratio,
        )
        if self.output_rate != SAMPLE_RATE:
            wav = self.speechsr(wav)
        wav = wav.reshape(-1).float().cpu()
        if self.scale_norm == "max":
            return peak_normalise(wav, PEAK)
        if self.scale_norm == "prompt":
            return peak_normalise(wav, prompt_peak)
        return wav


class VoiceConversion(_Synthesis):
    """Zero-shot voice conversion: the words and melody of ``source`` in the voice of ``target``."""

    def __init__(
        self,
        backbone: HierSpeech2,
        semantic_encoder: SemanticEncoder,
        speechsr: SpeechSR | None = None,
        denoiser: nn.Module | None = None,
        output_rate: int | None = None,
        noise_scale: float = 0.333,
        denoise_ratio: float = 0.0,
        scale_norm: ScaleNorm = "max",
    ) -> None:
        super().__init__(backbone, speechsr, denoiser, output_rate or _default_rate(speechsr), scale_norm)
        self.semantic_encoder = semantic_encoder.eval()
        self.noise_scale = noise_scale
        self.denoise_ratio = denoise_ratio

    @torch.inference_mode()
    def __call__(
        self,
        source: AudioInput,
        target: AudioInput,
        *,
        source_rate: int | None = None,
        target_rate: int | None = None,
        noise_scale: float | None = None,
        denoise_ratio: float | None = None,
        seed: int | None = None,
    ) -> tuple[Tensor, int]:
        """Convert ``source`` to the voice of ``target`` → ``(waveform [N], output_rate)``."""
        noise_scale = self.noise_scale if noise_scale is None else noise_scale
        denoise_ratio = self.denoise_ratio if denoise_ratio is None else denoise_ratio
        source_wav = pad_to_multiple(as_waveform(source, source_rate, "source"), SOURCE_MULTIPLE)
        prompt = as_waveform(target, target_rate, "target")
        device = _device_of(self.backbone)

        source_f0 = yaapt(source_wav, variant="inference").reshape(-1).numpy()
        prompt_f0 = yaapt(prompt, variant="inference").reshape(-1).numpy()
        log_f0 = transfer_log_f0(source_f0, prompt_f0).view(1, 1, -1).to(device)
        semantic = self.semantic_encoder(source_wav.unsqueeze(0).to(_device_of(self.semantic_encoder)))
        semantic = semantic.to(device=device, dtype=log_f0.dtype)
        prompt_mel, prompt_lengths = self.prompt_encoder(prompt, denoise_ratio)
        with seeded(seed):
            wav = self._render(semantic, log_f0, prompt_mel, prompt_lengths, noise_scale, denoise_ratio,
                               float(prompt.abs().max()))
        return wav, self.output_rate


class TextToSpeech(_Synthesis):
    """Zero-shot TTS: TextToVec (text → semantic + F0) → HierSpeech2 backbone → optional SpeechSR."""

    def __init__(
        self,
        ttv: TextToVec,
        backbone: HierSpeech2,
        speechsr: SpeechSR | None = None,
        denoiser: nn.Module | None = None,
        output_rate: int | None = None,
        noise_scale_ttv: float = 0.333,
        noise_scale_vc: float = 0.333,
        noise_scale_w: float = 1.0,
        length_scale: float = 1.0,
        denoise_ratio: float = 0.0,
        scale_norm: ScaleNorm = "max",
    ) -> None:
        super().__init__(backbone, speechsr, denoiser, output_rate or _default_rate(speechsr), scale_norm)
        self.ttv = ttv.eval()
        self.defaults = dict(
            noise_scale_ttv=noise_scale_ttv, noise_scale_vc=noise_scale_vc, noise_scale_w=noise_scale_w,
            length_scale=length_scale, denoise_ratio=denoise_ratio,
        )

    @torch.inference_mode()
    def __call__(self, text: str, prompt: AudioInput, *, prompt_rate: int | None = None, seed: int | None = None,
                 **settings: float) -> tuple[Tensor, int]:
        """Speak ``text`` in the voice and style of ``prompt`` → ``(waveform [N], output_rate)``.

        ``settings`` override the constructor's ``noise_scale_ttv``, ``noise_scale_vc``,
        ``noise_scale_w``, ``length_scale`` and ``denoise_ratio``.
        """
        unknown = settings.keys() - self.defaults.keys()
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        options = {**self.defaults, **settings}
        tokens = text_to_tokens(text)
        prompt_wav = as_waveform(prompt, prompt_rate, "prompt")
        prompt_mel, prompt_lengths = self.prompt_encoder(prompt_wav, options["denoise_ratio"])
        with seeded(seed):
            wav = self._synthesize(tokens, prompt_mel, prompt_lengths, float(prompt_wav.abs().max()), **options)
        return wav, self.output_rate

    @torch.inference_mode()
    def synthesize_from_tokens(
        self,
        tokens: Tensor,
        prompt_mel: Tensor,
        noise_scale_ttv: float = 0.333,
        noise_scale_vc: float = 0.333,
        noise_scale_w: float = 1.0,
        length_scale: float = 1.0,
        denoise_ratio: float = 0.0,
        prompt_peak: float = PEAK,
    ) -> Tensor:
        """Token ids ``[L]``/``[1, L]`` + prompt log-mel ``[2, 80, T]`` → final waveform ``[N]`` at ``output_rate``."""
        device = _device_of(self.backbone)
        prompt_mel = prompt_mel.to(device)
        prompt_lengths = torch.full((prompt_mel.size(0),), prompt_mel.size(-1), dtype=torch.long, device=device)
        return self._synthesize(tokens, prompt_mel, prompt_lengths, prompt_peak, noise_scale_ttv=noise_scale_ttv,
                                noise_scale_vc=noise_scale_vc, noise_scale_w=noise_scale_w,
                                length_scale=length_scale, denoise_ratio=denoise_ratio)

    def _synthesize(self, tokens: Tensor, prompt_mel: Tensor, prompt_lengths: Tensor, prompt_peak: float, *,
                    noise_scale_ttv: float, noise_scale_vc: float, noise_scale_w: float, length_scale: float,
                    denoise_ratio: float) -> Tensor:
        device = _device_of(self.backbone)
        tokens = tokens.reshape(1, -1).to(device)
        token_lengths = torch.tensor([tokens.size(-1)], device=device)
        semantic, log_f0 = self.ttv.infer(
            tokens, token_lengths, prompt_mel, prompt_lengths, noise_scale=noise_scale_ttv,
            noise_scale_w=noise_scale_w, length_scale=length_scale, denoise_ratio=denoise_ratio,
        )
        log_f0 = log_f0.masked_fill(log_f0 < math.log(PITCH_FLOOR_HZ), 0.0)
        return self._render(semantic, log_f0, prompt_mel, prompt_lengths, noise_scale_vc, denoise_ratio, prompt_peak)


def _default_rate(speechsr: SpeechSR | None) -> int:
    return SAMPLE_RATE if speechsr is None else int(speechsr.output_rate)
