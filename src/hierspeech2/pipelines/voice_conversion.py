"""Zero-shot voice conversion with the official semantics, in windows for sources of any length."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..audio_stream import AudioReader
from ..chunking import ChunkPlan, CrossFader, Window
from ..constants import F0_HOP, PAD_MULTIPLE
from ..errors import SettingError
from ..models import HierSpeech2, SpeechSR
from ..nn.inference import inference, inference_context
from ..options import VoiceConversionOptions
from ..pitch import f0_extractor
from .base import option
from .inputs import AudioInput, check_peak, open_reader
from .jobs import ConversionJob, Result
from .prompts import Prompt, PromptCache
from .scheduler import Run, device_of, finish_runs, make_sink, run_windows, seeded
from .synthesis import Synthesis

if TYPE_CHECKING:
    from ..ssl import SemanticEncoder

__all__ = ["VC_CHUNKS", "VoiceConversion", "transfer_log_f0"]

VC_CHUNKS = ChunkPlan(
    chunk=256 * PAD_MULTIPLE, context=16 * PAD_MULTIPLE, crossfade=2 * PAD_MULTIPLE, multiple=PAD_MULTIPLE
)
"""20.48 s owned per window, 1.28 s of context each side, 0.16 s cross-fades; a source up to 23.04 s
(padded) is converted whole, exactly as the official script does."""


def transfer_log_f0(source_f0: np.ndarray, prompt_f0: np.ndarray) -> Tensor:
    """Move the source's voiced F0 to the prompt's mean/std (official VC) → ``log(F0 + 1)``, float32."""
    f0 = source_f0.astype(np.float64).copy()
    voiced, prompt_voiced = f0 != 0, prompt_f0[prompt_f0 != 0].astype(np.float64)
    if voiced.any():
        if prompt_voiced.size == 0:
            warnings.warn(
                "the voice prompt has no voiced frame; keeping the source's F0 unchanged", stacklevel=3
            )
        else:
            standardised = (f0[voiced] - f0[voiced].mean()) / max(f0[voiced].std(), 1e-8)
            f0[voiced] = (standardised * prompt_voiced.std() + prompt_voiced.mean()).clip(min=0)
    return torch.log(torch.from_numpy(f0 + 1).float())


@dataclass
class _ConversionRun(Run):
    reader: AudioReader | None = None
    prompt: Prompt | None = None
    log_f0: Tensor | None = None  # of the whole (padded) source, moved to the prompt's statistics


class VoiceConversion(Synthesis[VoiceConversionOptions]):
    """Zero-shot voice conversion: the words and melody of ``source`` in the voice of ``target``.

    Sources longer than one window of ``chunk_plan`` (23 s by default) are converted in overlapping
    windows with cross-fades; the F0 statistics moved to the prompt's are those of the whole source.

    Args:
        backbone, semantic_encoder, speechsr: the models (``speechsr`` for 24/48 kHz output).
        denoiser: MP-SENet prompt denoiser; with one, ``denoise_ratio`` defaults to the official
            :data:`~hierspeech2.options.OFFICIAL_DENOISE_RATIO`.
        options: a :class:`~hierspeech2.options.VoiceConversionOptions`: output rate, noise scale,
            denoise ratio (the default of every call; prompt audio is denoised with ``denoiser``, an
            encoded :class:`Prompt` brings its denoised row), loudness, F0 extractor (a name from
            :data:`~hierspeech2.pitch.F0_METHODS`, "yaapt" official; "swift" or "praat" about 10×
            faster; or a callable ``[N] → Hz [N / 80]``) and windows per model call.
        chunk_plan: window geometry.
        **overrides: fields of the options given as keywords (``noise_scale=0.5, batch_size=4`` …).
    """

    OPTIONS = VoiceConversionOptions
    NEEDS_F0 = True
    noise_scale = option("noise_scale", "Prior noise of the backbone, the default of every call.")

    def __init__(
        self,
        backbone: HierSpeech2,
        semantic_encoder: SemanticEncoder,
        speechsr: SpeechSR | None = None,
        denoiser: nn.Module | None = None,
        *,
        options: VoiceConversionOptions | None = None,
        chunk_plan: ChunkPlan = VC_CHUNKS,
        **overrides: Any,
    ) -> None:
        super().__init__(backbone, speechsr, denoiser, self._make_options(options, overrides))
        if chunk_plan.multiple % PAD_MULTIPLE:
            raise SettingError(
                f"voice conversion windows must align to {PAD_MULTIPLE} samples, got {chunk_plan}"
            )
        self.semantic_encoder = semantic_encoder.eval()
        self.f0_extractor = f0_extractor(self.options.f0_extractor, "inference")
        self.chunk_plan = chunk_plan

    def encode_prompt(
        self, audio: AudioInput, sample_rate: int | None = None, denoise_ratio: float | None = None
    ) -> Prompt:
        """Load and encode a voice prompt once, with its F0 (see :meth:`Synthesis.encode_prompt`)."""
        return super().encode_prompt(audio, sample_rate, denoise_ratio, f0_extractor=self.f0_extractor)

    @inference
    def __call__(
        self,
        source: AudioInput,
        target: AudioInput | Prompt,
        *,
        source_rate: int | None = None,
        target_rate: int | None = None,
        noise_scale: float | None = None,
        denoise_ratio: float | None = None,
        seed: int | None = None,
    ) -> tuple[Tensor, int]:
        """Convert ``source`` to the voice of ``target`` → ``(waveform [N], output_rate)``.

        ``noise_scale`` and ``denoise_ratio`` override the constructor's for this call.
        """
        job = ConversionJob(source, target, None, source_rate, target_rate)
        (result,) = self._run([job], seed, True, noise_scale=noise_scale, denoise_ratio=denoise_ratio)
        return result.audio, self.output_rate

    @inference
    def convert_file(
        self,
        source: AudioInput,
        target: AudioInput | Prompt,
        output: str | os.PathLike,
        *,
        noise_scale: float | None = None,
        denoise_ratio: float | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> Path:
        """Convert into ``output`` (format by extension), streaming: memory does not grow with the source."""
        job = ConversionJob(source, target, output)
        settings = {"noise_scale": noise_scale, "denoise_ratio": denoise_ratio}
        (result,) = self._run([job], seed, True, progress, **settings)
        return result.path

    @inference
    def convert_many(
        self,
        jobs: Sequence[ConversionJob | tuple[Any, ...]],
        *,
        noise_scale: float | None = None,
        denoise_ratio: float | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> list[Result]:
        """``(source, target, output path or None)`` triples (or :class:`ConversionJob` s) → one
        :class:`Result` each.

        Equal-length windows of different jobs share a model call. Sources and targets are file
        paths, ``(waveform, sample_rate)`` pairs or (targets) encoded :class:`Prompt` s. A job that
        fails (unreadable file, short prompt …) is reported in its result; the others complete.
        """
        jobs = [ConversionJob.of(job) for job in jobs]
        return self._run(jobs, seed, False, progress, noise_scale=noise_scale, denoise_ratio=denoise_ratio)

    def stream(
        self,
        source: AudioInput,
        target: AudioInput | Prompt,
        *,
        source_rate: int | None = None,
        target_rate: int | None = None,
        seed: int | None = None,
        **settings: float | None,
    ) -> Iterator[Tensor]:
        """Convert ``source`` window by window, yielding blocks of audio ``[n]`` at ``output_rate``.

        The blocks joined are the whole conversion (the same windows and cross-fades as
        :meth:`__call__`; with ``noise_scale=0`` the same audio up to loudness). Source F0 and the
        prompt are prepared before the first block. Loudness: the first window sets the gain of the
        stream, lowered for a later one only as far as it would clip. ``seed`` seeds window ``i``
        with ``seed + i``.
        """
        job = ConversionJob(source, target, None, source_rate, target_rate)
        with inference_context():
            options, (run,) = self._start_runs(
                [job], _ConversionRun, lambda item: item.target, settings, True
            )
        gain = self._stream_gain(run.prompt)
        blocks = _BlockSink()
        run.sink = blocks
        for index, window in enumerate(list(run.windows)):
            with inference_context(), seeded(None if seed is None else seed + index):
                (audio,) = self._render([(run, window)], options)
            run.push(audio, self.ratio, window)
            for block in blocks.take():
                yield gain(block)

    def _run(
        self,
        jobs: Sequence[ConversionJob],
        seed: int | None,
        raise_errors: bool,
        progress: bool = False,
        **settings: float | None,
    ) -> list[Result]:
        options, runs = self._start_runs(jobs, _ConversionRun, lambda job: job.target, settings, raise_errors)
        with seeded(seed):
            run_windows(
                runs, lambda group: self._render(group, options), self.ratio, self.batch_size, progress
            )
        return finish_runs(runs, raise_errors)

    def _prepare(
        self, run: _ConversionRun, job: ConversionJob, prompts: PromptCache, options: VoiceConversionOptions
    ) -> None:
        prompt = prompts.get(job.target, job.target_rate)
        reader = open_reader(job.source, job.source_rate, "source")
        run.sink = make_sink(job.output, self.output_rate, self.scale_norm, self._peak_for(prompt))
        total = (reader.num_samples // PAD_MULTIPLE + 1) * PAD_MULTIPLE  # official padding
        run.windows = self.chunk_plan.windows(total)
        # F0 of the whole source, window by window (each window keeps its own core frames)
        source_f0 = np.zeros(total // F0_HOP, dtype=np.float32)
        for window in run.windows:
            f0 = self.f0_extractor(reader.read(window.start, window.end)).reshape(-1).cpu().numpy()
            first, last = window.core_start // F0_HOP, window.core_end // F0_HOP
            offset = window.start // F0_HOP
            source_f0[first:last] = f0[first - offset : last - offset]
        run.reader, run.prompt = reader, prompt
        run.log_f0 = transfer_log_f0(source_f0, prompt.f0)
        run.fader = CrossFader(round(self.chunk_plan.crossfade * self.ratio))
        run.remaining = len(run.windows)

    def _render(self, group: list[tuple[_ConversionRun, Window]], options: VoiceConversionOptions) -> Tensor:
        wav = check_peak(torch.stack([run.reader.read(w.start, w.end) for run, w in group]), "source")
        semantic = self.semantic_encoder(wav.to(device_of(self.semantic_encoder)))
        log_f0 = torch.stack([run.log_f0[w.start // F0_HOP : w.end // F0_HOP] for run, w in group])
        prompts = [run.prompt for run, _ in group]
        return self._render_rows(
            semantic, log_f0.unsqueeze(1), prompts, options.noise_scale, options.denoise_ratio
        )


class _BlockSink:
    """The blocks a run writes, kept until :meth:`take` hands them on (:meth:`VoiceConversion.stream`)."""

    def __init__(self) -> None:
        self.blocks: list[Tensor] = []

    def write(self, block: Tensor) -> None:
        if block.numel():
            self.blocks.append(block.detach().reshape(-1).float().cpu())

    def take(self) -> list[Tensor]:
        blocks, self.blocks = self.blocks, []
        return blocks

    def close(self) -> None:
        return None

    def discard(self) -> None:
        self.blocks = []
