"""The field's evaluation metrics, as plain functions over waveforms, text and F0 tracks.

* intelligibility: :func:`transcribe` (Whisper, HuBERT CTC, offline PocketSphinx) and
  :func:`word_error_rate` / :func:`character_error_rate` under the field's text normalisation;
* :func:`speaker_similarity`: cosine of speaker embeddings (WavLM x-vectors, offline Resemblyzer);
* :func:`predicted_mos`: DNSMOS (offline) or UTMOS22;
* :func:`f0_metrics` for conversion, :func:`log_spectral_distance` for super-resolution;
* job lists (:func:`read_jobs`, :func:`write_jobs`), builders of them for the field's test sets
  (:func:`libritts_test_clean`, :func:`librispeech_pc_cross_sentence`, :func:`vctk_conversion`),
  and :func:`evaluate_jobs`, which ``hierspeech2 evaluate`` runs.

Every model is imported and loaded on first use, so importing this package is cheap.
"""

from __future__ import annotations

from hierspeech2.evaluation.asr import ASR_MODELS, transcribe
from hierspeech2.evaluation.error_rates import character_error_rate, normalize_text, word_error_rate
from hierspeech2.evaluation.jobs import EvaluationJob, read_jobs, write_jobs
from hierspeech2.evaluation.mos import MOS_MODELS, predicted_mos
from hierspeech2.evaluation.pitch import F0Metrics, f0_metrics
from hierspeech2.evaluation.runner import EvaluationSummary, MetricSummary, evaluate_jobs, summarize
from hierspeech2.evaluation.speaker import SPEAKER_MODELS, speaker_embeddings, speaker_similarity
from hierspeech2.evaluation.spectral import SpectralDistance, log_spectral_distance
from hierspeech2.evaluation.testsets import (
    librispeech_pc_cross_sentence,
    libritts_test_clean,
    vctk_conversion,
)
from hierspeech2.options import EvaluationOptions

__all__ = [
    "ASR_MODELS",
    "MOS_MODELS",
    "SPEAKER_MODELS",
    "EvaluationJob",
    "EvaluationOptions",
    "EvaluationSummary",
    "F0Metrics",
    "MetricSummary",
    "SpectralDistance",
    "character_error_rate",
    "evaluate_jobs",
    "f0_metrics",
    "librispeech_pc_cross_sentence",
    "libritts_test_clean",
    "log_spectral_distance",
    "normalize_text",
    "predicted_mos",
    "read_jobs",
    "speaker_embeddings",
    "speaker_similarity",
    "summarize",
    "transcribe",
    "vctk_conversion",
    "word_error_rate",
    "write_jobs",
]
