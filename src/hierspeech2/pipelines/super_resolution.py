"""Super-resolution: 16 kHz speech → 24/48 kHz with SpeechSR, in windows that equal one pass."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..audio_stream import AudioReader
from ..chunking import ChunkPlan, CrossFader, Window
from ..constants import HOP_LENGTH, MODEL_SAMPLE_RATE
from ..models import SpeechSR
from ..nn.inference import inference, use_fast_activations
from ..options import SuperResolutionOptions
from .base import Pipeline, option
from .inputs import AudioInput, check_peak, open_reader
from .jobs import Result, SuperResolutionJob
from .scheduler import PEAK, Run, device_of, dtype_of, finish_runs, make_sink, run_windows, start_runs

__all__ = ["SR_CHUNKS", "SuperResolution"]

SR_CHUNKS = ChunkPlan(
    chunk=500 * HOP_LENGTH, context=5 * HOP_LENGTH, crossfade=2 * HOP_LENGTH, multiple=HOP_LENGTH
)
"""SpeechSR is convolutional with a receptive field under 100 samples: 0.1 s of context makes the
windowed output equal the whole one; 10 s per window bounds memory."""


@dataclass
class _SuperResolutionRun(Run):
    reader: AudioReader | None = None


class SuperResolution(Pipeline[SuperResolutionOptions]):
    """16 kHz → 24/48 kHz speech with SpeechSR; any input rate is first resampled to 16 kHz.

    Inputs of any length run in windows of ``chunk_plan`` (identical to one pass, see ``SR_CHUNKS``);
    ``batch_size`` windows go through the model at once.

    Args:
        speechsr: the model; its rate is the output rate.
        options: a :class:`~hierspeech2.options.SuperResolutionOptions` (default: its defaults).
        chunk_plan: window geometry.
        **overrides: fields of the options (``scale_norm``, ``batch_size``) given as keywords.
    """

    OPTIONS = SuperResolutionOptions
    scale_norm = option(
        "scale_norm", 'Output loudness: "max" (peak 0.999), "prompt" (the input\'s peak), "none".'
    )
    batch_size = option("batch_size", "Windows per model call.")

    def __init__(
        self,
        speechsr: SpeechSR,
        *,
        options: SuperResolutionOptions | None = None,
        chunk_plan: ChunkPlan = SR_CHUNKS,
        **overrides: Any,
    ) -> None:
        self.options = self._make_options(options, overrides)
        self.speechsr = use_fast_activations(speechsr.eval())
        self.chunk_plan = chunk_plan

    @property
    def output_rate(self) -> int:
        """The SpeechSR's output rate."""
        return int(self.speechsr.output_rate)

    @inference
    def __call__(self, audio: AudioInput, sample_rate: int | None = None) -> tuple[Tensor, int]:
        """Super-resolve ``audio`` → ``(waveform [⌊ratio · N⌋], output_rate)``."""
        (result,) = self._run([SuperResolutionJob(audio, None, sample_rate)], raise_errors=True)
        return result.audio, self.output_rate

    @inference
    def process_file(
        self,
        audio: AudioInput,
        output: str | os.PathLike,
        sample_rate: int | None = None,
        progress: bool = False,
    ) -> Path:
        """Super-resolve into ``output`` (format by extension), streaming: memory does not grow with
        the input."""
        job = SuperResolutionJob(audio, output, sample_rate)
        (result,) = self._run([job], raise_errors=True, progress=progress)
        return result.path

    @inference
    def process_many(
        self, jobs: Sequence[SuperResolutionJob | tuple[Any, ...]], progress: bool = False
    ) -> list[Result]:
        """``(input, output path or None)`` pairs (or :class:`SuperResolutionJob` s) → one
        :class:`Result` each.

        An input is a file path or a ``(waveform, sample_rate)`` pair; a failing input fails alone.
        """
        return self._run([SuperResolutionJob.of(job) for job in jobs], raise_errors=False, progress=progress)

    def _run(
        self, jobs: Sequence[SuperResolutionJob], raise_errors: bool, progress: bool = False
    ) -> list[Result]:
        runs = start_runs(jobs, _SuperResolutionRun, self.output_rate, self._prepare, raise_errors)
        run_windows(runs, self._render, self._ratio, self.batch_size, progress)
        return finish_runs(runs, raise_errors)

    def _prepare(self, run: _SuperResolutionRun, job: SuperResolutionJob) -> None:
        run.fader = CrossFader(round(self.chunk_plan.crossfade * self._ratio))
        run.reader = open_reader(job.audio, job.sample_rate, "input audio")
        run.windows = self.chunk_plan.windows(run.reader.num_samples)
        run.remaining = len(run.windows)
        run.sink = make_sink(job.output, self.output_rate, self.scale_norm, PEAK)

    @property
    def _ratio(self) -> float:
        return self.output_rate / MODEL_SAMPLE_RATE

    def _render(self, group: list[tuple[_SuperResolutionRun, Window]]) -> Tensor:
        wav = check_peak(torch.stack([run.reader.read(w.start, w.end) for run, w in group]), "input audio")
        device, dtype = device_of(self.speechsr), dtype_of(self.speechsr)
        return self.speechsr(wav.unsqueeze(1).to(device, dtype))[:, 0].float().cpu()
