"""What voice conversion and TTS share: models, prompt encoding, the backbone call, optional SpeechSR."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..audio import LogMelSpectrogram
from ..constants import MODEL_SAMPLE_RATE
from ..errors import SettingError
from ..models import HierSpeech2, SpeechSR
from ..nn.inference import inference, use_fast_activations
from ..options import OFFICIAL_DENOISE_RATIO
from . import prompts
from .base import OptionsT, Pipeline, option
from .inputs import AudioInput
from .prompts import F0Extractor, Prompt, PromptCache
from .scheduler import PEAK, RunT, device_of, dtype_of, start_runs

__all__ = ["Synthesis"]


class Synthesis(Pipeline[OptionsT]):
    """The base of :class:`~hierspeech2.pipelines.VoiceConversion` and
    :class:`~hierspeech2.pipelines.TextToSpeech`.

    It resolves the options the models decide: ``output_rate`` None takes the SpeechSR's rate (16 kHz
    without one), ``denoise_ratio`` None the official :data:`~hierspeech2.options.OFFICIAL_DENOISE_RATIO`
    with a denoiser and 0 without.
    """

    NEEDS_F0: ClassVar[bool] = False
    """Whether encoded prompts must bring their F0."""

    output_rate = option("output_rate", "The rate of the output: 16000, or the SpeechSR's.", writable=False)
    denoise_ratio = option(
        "denoise_ratio", "Weight of the denoised prompt's style, the default of every call."
    )
    scale_norm = option("scale_norm", 'Output loudness: "max" (peak 0.999), "prompt" (its peak) or "none".')
    batch_size = option("batch_size", "Windows or text pieces per model call.")

    def __init__(
        self,
        backbone: HierSpeech2,
        speechsr: SpeechSR | None,
        denoiser: nn.Module | None,
        options: OptionsT,
    ) -> None:
        output_rate = options.output_rate or _default_rate(speechsr)
        if output_rate != MODEL_SAMPLE_RATE and (speechsr is None or speechsr.output_rate != output_rate):
            have = "none" if speechsr is None else f"{speechsr.output_rate} Hz"
            raise SettingError(
                f"output_rate={output_rate} needs a SpeechSR model for {output_rate} Hz (have {have}); "
                f"pass speechsr=SpeechSR.from_packaged({output_rate}) or output_rate=16000"
            )
        # Without a denoiser a ratio > 0 still mixes the rows of prompts given already denoised
        # (encoded Prompts, synthesize_from_tokens); only encoding audio needs the denoiser.
        denoise_ratio = options.denoise_ratio
        if denoise_ratio is None:
            denoise_ratio = OFFICIAL_DENOISE_RATIO if denoiser is not None else 0.0
        self.options = options.updated(output_rate=output_rate, denoise_ratio=denoise_ratio)
        self.backbone = use_fast_activations(backbone.eval())
        self.speechsr = use_fast_activations(speechsr.eval()) if speechsr is not None else None
        self.denoiser = denoiser.eval() if denoiser is not None else None
        self.mel = LogMelSpectrogram().to(device_of(backbone))

    @property
    def ratio(self) -> float:
        """Output samples per 16 kHz sample."""
        return self.output_rate / MODEL_SAMPLE_RATE

    @inference
    def encode_prompt(
        self,
        audio: AudioInput,
        sample_rate: int | None = None,
        denoise_ratio: float | None = None,
        f0_extractor: F0Extractor | None = None,
    ) -> Prompt:
        """Load and encode a voice prompt once: log-mel of the original and denoised rows, peak, F0
        (with an extractor).

        Pass the result instead of the audio to many calls; it is only denoised when ``denoise_ratio > 0``
        (default: the constructor's).
        """
        return prompts.encode_prompt(
            audio,
            sample_rate,
            mel=self.mel,
            denoiser=self.denoiser,
            denoise_ratio=self._call_options({"denoise_ratio": denoise_ratio}).denoise_ratio,
            f0_extractor=f0_extractor,
        )

    def _prompt_cache(self, targets: Iterable[Any], denoise_ratio: float) -> PromptCache:
        """The prompts of one call, encoded at ``denoise_ratio``: refused up front if audio
        needs a missing denoiser."""
        if not all(isinstance(target, Prompt) for target in targets):
            prompts.require_denoiser(denoise_ratio, self.denoiser)
        return PromptCache(
            lambda audio, rate: self.encode_prompt(audio, rate, denoise_ratio), denoise_ratio, self.NEEDS_F0
        )

    def _start_runs(
        self,
        jobs: Sequence[Any],
        run_type: type[RunT],
        prompt_of: Callable[[Any], Any],
        settings: Mapping[str, float | None],
        raise_errors: bool,
    ) -> tuple[OptionsT, list[RunT]]:
        """The options of one call (``settings`` over the constructor's) and one prepared run per job.

        The prompts (``prompt_of(job)``) are encoded once per call and shared by the jobs that
        name the same one; :meth:`_prepare` sets up each run.
        """
        options = self._call_options(settings)
        prompts = self._prompt_cache([prompt_of(job) for job in jobs], options.denoise_ratio)
        runs = start_runs(
            jobs,
            run_type,
            self.output_rate,
            lambda run, job: self._prepare(run, job, prompts, options),
            raise_errors,
        )
        return options, runs

    def _prepare(self, run: Any, job: Any, prompts: PromptCache, options: OptionsT) -> None:
        """Set up ``run`` (reader or text pieces, sink, prompt) for ``job`` under the call's ``options``;
        a subclass provides it."""
        raise NotImplementedError

    def _render_rows(
        self,
        semantic: Tensor,
        log_f0: Tensor,
        rows: Sequence[Prompt],
        noise_scale: float,
        denoise_ratio: float,
    ) -> Tensor:
        """Semantic [B, C, T] + log F0 [B, 1, 4T] + one prompt per row → waveform [B, ratio · 320 T]
        (CPU, float32)."""
        device, dtype = device_of(self.backbone), dtype_of(self.backbone)
        prompt_mel, prompt_lengths = self._prompt_rows(rows)
        lengths = torch.full((semantic.shape[0],), semantic.shape[-1], dtype=torch.long, device=device)
        wav = self.backbone.voice_conversion(
            semantic.to(device, dtype),
            lengths,
            prompt_mel,
            prompt_lengths,
            log_f0.to(device, dtype),
            noise_scale=noise_scale,
            denoise_ratio=denoise_ratio,
        )
        if self.output_rate != MODEL_SAMPLE_RATE:
            wav = self.speechsr(wav.to(device_of(self.speechsr), dtype_of(self.speechsr)))
        return wav[:, 0].float().cpu()

    def _prompt_rows(self, rows: Sequence[Prompt]) -> tuple[Tensor, Tensor]:
        """Prompts → interleaved rows [2B, 80, T_max] on the backbone's device and dtype, and their
        lengths."""
        return prompts.prompt_rows(rows, device_of(self.backbone), dtype_of(self.backbone))

    def _peak_for(self, prompt: Prompt) -> float:
        return prompt.peak if self.scale_norm == "prompt" else PEAK

    def _stream_gain(self, prompt: Prompt) -> _StreamGain:
        """The loudness of a stream spoken in the voice of ``prompt``, under ``scale_norm``."""
        return _StreamGain(None if self.scale_norm == "none" else self._peak_for(prompt))


class _StreamGain:
    """Scales the blocks of a stream: the first block with sound sets the gain that brings it to
    ``target_peak``, lowered for a later block only as far as it would clip (None: no scaling)."""

    def __init__(self, target_peak: float | None) -> None:
        self.target_peak = target_peak
        self.gain: float | None = None

    def __call__(self, block: Tensor) -> Tensor:
        peak = float(block.abs().max()) if block.numel() else 0.0
        if self.target_peak is not None and peak > 0:
            gain = self.target_peak / peak
            self.gain = gain if self.gain is None else min(self.gain, gain)
        return block * (self.gain or 1.0)


def _default_rate(speechsr: SpeechSR | None) -> int:
    return MODEL_SAMPLE_RATE if speechsr is None else int(speechsr.output_rate)
