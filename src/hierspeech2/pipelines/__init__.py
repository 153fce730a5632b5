"""End-to-end inference with the official HierSpeech++ semantics: VC, TTS and super-resolution.

Inputs are file paths, numpy arrays or tensors at any sample rate; calling a pipeline returns
``(waveform [N] float32 tensor on CPU, sample_rate)``. For real use:

* long inputs are processed in overlapping windows of equal length with cross-fades
  (:mod:`hierspeech2.chunking`), so model memory does not grow with the input; the ``*_file``
  methods also stream their input and output, so nothing grows with it;
* long text is split into sentence-sized pieces joined with short pauses
  (:func:`hierspeech2.text.segment.split_text`), all spoken from one prompt encoding;
* the ``*_many`` methods run several jobs (:class:`ConversionJob`, :class:`SpeechJob`,
  :class:`SuperResolutionJob`, or plain tuples) with batched model calls and report failures per job;
* a voice prompt can be denoised with MP-SENet (``denoiser=``, ``denoise_ratio``) as officially.

Each pipeline is configured by one frozen options dataclass from :mod:`hierspeech2.options`
(``options=VoiceConversionOptions(...)``, or its fields as keywords), kept as ``pipeline.options``.

Modules: :mod:`.inputs` (audio checks), :mod:`.jobs` (jobs and results), :mod:`.scheduler`
(batched, per-job-failing execution), :mod:`.prompts` (prompt encoding and its cache),
:mod:`.synthesis` (what VC and TTS share) and one module per pipeline.
"""

from __future__ import annotations

from ..options import (
    DEFAULT_NOISE_SCALE,
    OFFICIAL_DENOISE_RATIO,
    ScaleNorm,
    SuperResolutionOptions,
    TextToSpeechOptions,
    VoiceConversionOptions,
)
from .inputs import MAX_INPUT_PEAK, AudioInput, as_waveform, check_peak, peak_normalise
from .jobs import ConversionJob, Result, SpeechJob, SuperResolutionJob
from .prompts import MIN_PROMPT_SECONDS, F0Extractor, Prompt
from .scheduler import PEAK, seeded
from .super_resolution import SR_CHUNKS, SuperResolution
from .text_to_speech import PITCH_FLOOR_HZ, TextToSpeech
from .voice_conversion import VC_CHUNKS, VoiceConversion, transfer_log_f0

__all__ = [
    "DEFAULT_NOISE_SCALE",
    "MAX_INPUT_PEAK",
    "MIN_PROMPT_SECONDS",
    "OFFICIAL_DENOISE_RATIO",
    "PEAK",
    "PITCH_FLOOR_HZ",
    "SR_CHUNKS",
    "VC_CHUNKS",
    "AudioInput",
    "ConversionJob",
    "F0Extractor",
    "Prompt",
    "Result",
    "ScaleNorm",
    "SpeechJob",
    "SuperResolution",
    "SuperResolutionJob",
    "SuperResolutionOptions",
    "TextToSpeech",
    "TextToSpeechOptions",
    "VoiceConversion",
    "VoiceConversionOptions",
    "as_waveform",
    "check_peak",
    "peak_normalise",
    "seeded",
    "transfer_log_f0",
]
