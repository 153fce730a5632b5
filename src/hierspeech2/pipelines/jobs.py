"""What the pipelines are asked to do (one typed job per pipeline) and what each job gave (:class:`Result`).

The ``*_many`` methods take the jobs, or the tuples they always took, which are read as the
first fields of the job in order: ``(source, target, output)`` for voice conversion,
``(text, prompt, output)`` for TTS and ``(audio, output)`` for super-resolution.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from torch import Tensor

from ..constants import MODEL_SAMPLE_RATE

if TYPE_CHECKING:
    from typing_extensions import Self

    from .inputs import AudioInput
    from .prompts import Prompt

__all__ = ["ConversionJob", "Output", "Result", "SpeechJob", "SuperResolutionJob"]

Output = Union[str, "os.PathLike[str]", None]
"""Where a job writes: a file path (format by extension), or None to return the audio."""


@dataclass(frozen=True)
class _JobSpec:
    @classmethod
    def of(cls, item: Self | tuple[Any, ...]) -> Self:
        """``item`` itself, or the job whose first fields are the tuple ``item``."""
        return item if isinstance(item, cls) else cls(*item)


@dataclass(frozen=True)
class SuperResolutionJob(_JobSpec):
    """One input of :meth:`~hierspeech2.pipelines.SuperResolution.process_many`.

    Attributes:
        audio: a file path, a waveform with ``sample_rate``, or a ``(waveform, sample_rate)`` pair.
        output: the file to write, or None to return the audio.
        sample_rate: the rate of an in-memory waveform.
    """

    audio: AudioInput
    output: Output = None
    sample_rate: int | None = None


@dataclass(frozen=True)
class ConversionJob(_JobSpec):
    """One conversion of :meth:`~hierspeech2.pipelines.VoiceConversion.convert_many`.

    Attributes:
        source: the speech to convert: a path, a waveform with ``source_rate`` or a ``(waveform, rate)`` pair.
        target: the voice prompt: the same, or an encoded :class:`~hierspeech2.pipelines.Prompt`.
        output: the file to write, or None to return the audio.
        source_rate, target_rate: the rates of in-memory waveforms.
    """

    source: AudioInput
    target: AudioInput | Prompt
    output: Output = None
    source_rate: int | None = None
    target_rate: int | None = None


@dataclass(frozen=True)
class SpeechJob(_JobSpec):
    """One text of :meth:`~hierspeech2.pipelines.TextToSpeech.synthesize_many`.

    Attributes:
        text: what to say, of any length.
        prompt: the voice prompt: a path, a waveform with ``prompt_rate``, a ``(waveform, rate)`` pair
            or an encoded :class:`~hierspeech2.pipelines.Prompt`.
        output: the file to write, or None to return the audio.
        prompt_rate: the rate of an in-memory prompt waveform.
    """

    text: str
    prompt: AudioInput | Prompt
    output: Output = None
    prompt_rate: int | None = None


@dataclass
class Result:
    """The outcome of one job of a ``*_many`` call: the audio (or the written file), or the error."""

    audio: Tensor | None = None
    path: Path | None = None
    sample_rate: int = MODEL_SAMPLE_RATE
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the job succeeded."""
        return self.error is None
