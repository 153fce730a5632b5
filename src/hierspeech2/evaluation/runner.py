"""Score a job list: per-utterance results in a CSV, appended as they come, and a summary.

:func:`evaluate_jobs` is what ``hierspeech2 evaluate`` runs. Which metrics apply to a job follows
from its columns (see :mod:`.jobs`); :class:`EvaluationOptions` holds every choice and default.
A run that stops (Ctrl-C, a crash) loses at most the batch in flight: the CSV is appended to after
each batch, and a second run with the same output scores only the jobs not in it yet.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..audio import read_audio, resample
from ..constants import MODEL_SAMPLE_RATE
from ..options import EVALUATION_METRICS, EvaluationOptions
from .asr import transcribe
from .error_rates import character_error_rate, normalize_text, word_error_rate
from .jobs import EvaluationJob
from .mos import predicted_mos
from .pitch import f0_metrics
from .speaker import speaker_similarity
from .spectral import log_spectral_distance

__all__ = ["EvaluationSummary", "MetricSummary", "applicable_metrics", "evaluate_jobs", "summarize"]

METRICS = EVALUATION_METRICS
NEEDS = {"wer": "text", "sim": "prompt", "mos": None, "lsd": "reference", "f0": None}
COLUMNS = {
    "wer": ("wer", "cer", "reference_words", "reference_chars", "hypothesis"),
    "sim": ("speaker_similarity",),
    "mos": ("mos",),
    "lsd": ("lsd", "lsd_high"),
    "f0": ("f0_rmse_cents", "f0_pearson", "vuv_f1"),
}
SCORES = (
    "wer",
    "cer",
    "speaker_similarity",
    "mos",
    "lsd",
    "lsd_high",
    "f0_rmse_cents",
    "f0_pearson",
    "vuv_f1",
)
"""Columns summarised (mean and 95 % interval)."""

SAME_TIMING = 0.05
"""LSD and F0 compare audio frame by frame: skipped when the lengths differ by more than 5 %
(a TTS output against a ground-truth recording has its own timing)."""


def applicable_metrics(jobs: Sequence[EvaluationJob], options: EvaluationOptions) -> tuple[str, ...]:
    """The metric groups to compute for ``jobs``: those asked for, or all that some job allows."""
    if options.metrics is not None:
        return tuple(name for name in METRICS if name in options.metrics)
    return tuple(name for name in METRICS if any(_allows(job, name) for job in jobs))


def _allows(job: EvaluationJob, metric: str) -> bool:
    if metric == "f0":
        return job.source is not None or job.reference is not None
    column = NEEDS[metric]
    return column is None or getattr(job, column) is not None


@dataclass(frozen=True)
class MetricSummary:
    """Mean of a per-utterance score with the half-width of its 95 % confidence interval (Student's t)."""

    mean: float
    ci95: float
    count: int


@dataclass(frozen=True)
class EvaluationSummary:
    """What :func:`evaluate_jobs` measured over all rows of its CSV.

    Attributes:
        scores: per-utterance metric → summary.
        corpus_wer, corpus_cer: errors summed over all utterances over reference words/characters.
        jobs: rows in the CSV; failed: rows with an error (listed in its ``error`` column).
    """

    scores: dict[str, MetricSummary]
    corpus_wer: float | None
    corpus_cer: float | None
    jobs: int
    failed: int

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_jobs(
    jobs: Sequence[EvaluationJob],
    output: str | os.PathLike[str],
    options: EvaluationOptions | None = None,
    *,
    progress: bool = False,
) -> EvaluationSummary:
    """Score ``jobs`` into the CSV ``output`` and write its summary to ``<output>.summary.json``.

    Jobs already in ``output`` (same id, no error) are not scored again; rows with an error are.
    A job without ``audio``, or whose files cannot be read, gets a row with the error.
    """
    output = Path(output)
    options = options or EvaluationOptions()
    metrics = applicable_metrics(jobs, options)
    columns = ["id", "audio", *(column for name in metrics for column in COLUMNS[name]), "error"]
    done = _resume(output, columns)
    todo = [job for job in jobs if job.id not in done]
    bar = _progress(len(jobs), len(jobs) - len(todo), progress)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        if handle.tell() == 0:
            writer.writeheader()
        for start in range(0, len(todo), options.batch_size):
            batch = todo[start : start + options.batch_size]
            for row in _score_batch(batch, metrics, options):
                writer.writerow({name: _cell(row.get(name)) for name in columns})
            handle.flush()
            bar(len(batch))
    bar(None)
    summary = summarize(output)
    output.with_suffix(".summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _resume(output: Path, columns: list[str]) -> set[str]:
    """Ids already scored in ``output``; rows that failed are dropped so they run again."""
    if not output.exists() or output.stat().st_size == 0:
        return set()
    with open(output, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != columns:
            raise ValueError(
                f"{output} holds results with columns {reader.fieldnames}, not {columns}: give another "
                "output, or delete it to start over"
            )
        rows = list(reader)
    kept = [row for row in rows if not row["error"]]
    if len(kept) != len(rows):
        with open(output, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(kept)
    return {row["id"] for row in kept}


def _progress(total: int, done: int, enabled: bool) -> Callable[[int | None], None]:
    if not enabled:
        return lambda step: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done, unit="utt", desc="evaluate")
    return lambda step: bar.close() if step is None else bar.update(step)


def _load(path: Path | None, what: str) -> tuple[Tensor, int]:
    if path is None:
        raise ValueError(f"no {what} given")
    wav, rate = read_audio(path)
    return wav.mean(dim=0) if wav.dim() == 2 else wav, rate


def _score_batch(
    batch: Sequence[EvaluationJob], metrics: Iterable[str], options: EvaluationOptions
) -> list[dict]:
    rows: list[dict] = []
    loaded: list[tuple[EvaluationJob, Tensor, dict]] = []
    for job in batch:
        row: dict = {"id": job.id, "audio": job.audio}
        rows.append(row)
        try:
            wav, rate = _load(job.audio, "audio to score")
        except (OSError, ValueError, RuntimeError) as error:
            row["error"] = f"audio: {error}"
            continue
        loaded.append(
            (job, resample(wav, rate, MODEL_SAMPLE_RATE) if rate != MODEL_SAMPLE_RATE else wav, row)
        )
        row["_native"] = (wav, rate)
    for metric in metrics:
        scored = [(job, wav, row) for job, wav, row in loaded if _allows(job, metric) and "error" not in row]
        if scored:
            try:
                SCORERS[metric](scored, options)
            except (OSError, ValueError, RuntimeError) as error:
                for _, _, row in scored:
                    row.setdefault("error", f"{metric}: {error}")
    for row in rows:
        row.pop("_native", None)
    return rows


def _score_wer(items: list, options: EvaluationOptions) -> None:
    hypotheses = transcribe(
        [wav for _, wav, _ in items],
        MODEL_SAMPLE_RATE,
        options.asr_model,
        language=options.language,
        device=options.device,
        batch_size=options.batch_size,
    )
    for (job, _, row), hypothesis in zip(items, hypotheses):
        reference = normalize_text(job.text, options.normalization)
        row.update(
            hypothesis=hypothesis,
            wer=word_error_rate(hypothesis, job.text, options.normalization),
            cer=character_error_rate(hypothesis, job.text, options.normalization),
            reference_words=len(reference.split()),
            reference_chars=len(reference),
        )


def _score_similarity(items: list, options: EvaluationOptions) -> None:
    prompts = []
    for job, _, row in items:
        prompt, rate = _load(job.prompt, "prompt")
        prompts.append(resample(prompt, rate, MODEL_SAMPLE_RATE) if rate != MODEL_SAMPLE_RATE else prompt)
    scores = speaker_similarity(
        [wav for _, wav, _ in items],
        prompts,
        MODEL_SAMPLE_RATE,
        options.speaker_model,
        device=options.device,
        batch_size=options.batch_size,
    )
    for (_, _, row), score in zip(items, scores.tolist()):
        row["speaker_similarity"] = score


def _score_mos(items: list, options: EvaluationOptions) -> None:
    scores = predicted_mos(
        [wav for _, wav, _ in items], MODEL_SAMPLE_RATE, options.mos_model, device=options.device
    )
    for (_, _, row), score in zip(items, scores.tolist()):
        row["mos"] = score


def _same_timing(a: int, b: int) -> bool:
    return abs(a - b) <= SAME_TIMING * max(a, b)


def _score_lsd(items: list, options: EvaluationOptions) -> None:
    for job, _, row in items:
        wav, rate = row["_native"]
        reference, reference_rate = _load(job.reference, "reference")
        if rate != reference_rate:
            wav = resample(wav, rate, reference_rate)
        if _same_timing(wav.numel(), reference.numel()):
            distance = log_spectral_distance(wav, reference, reference_rate)
            row.update(lsd=distance.full, lsd_high=distance.high)


def _score_f0(items: list, options: EvaluationOptions) -> None:
    from ..pitch import extract_f0

    for job, wav, row in items:
        original, rate = _load(job.source or job.reference, "source")
        if rate != MODEL_SAMPLE_RATE:
            original = resample(original, rate, MODEL_SAMPLE_RATE)
        if not _same_timing(wav.numel(), original.numel()):
            continue
        length = min(wav.numel(), original.numel())
        estimate = extract_f0(wav[:length], options.f0_method).reshape(-1)
        reference = extract_f0(original[:length], options.f0_method).reshape(-1)
        metrics = f0_metrics(estimate, reference)
        row.update(f0_rmse_cents=metrics.rmse_cents, f0_pearson=metrics.pearson, vuv_f1=metrics.vuv_f1)


SCORERS: dict[str, Callable[[list, EvaluationOptions], None]] = {
    "wer": _score_wer,
    "sim": _score_similarity,
    "mos": _score_mos,
    "lsd": _score_lsd,
    "f0": _score_f0,
}


def summarize(results: str | os.PathLike[str]) -> EvaluationSummary:
    """Summarise a results CSV written by :func:`evaluate_jobs` (NaN and empty cells are left out)."""
    with open(results, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    scores: dict[str, MetricSummary] = {}
    for column in SCORES:
        values = [float(row[column]) for row in rows if row.get(column) not in (None, "", "nan")]
        if values:
            scores[column] = _mean_ci(values)
    corpus = {}
    for rate, count in (("wer", "reference_words"), ("cer", "reference_chars")):
        pairs = [(float(row[rate]), int(row[count])) for row in rows if row.get(rate) not in (None, "")]
        total = sum(count for _, count in pairs)
        corpus[rate] = sum(value * count for value, count in pairs) / total if total else None
    failed = sum(1 for row in rows if row.get("error"))
    return EvaluationSummary(scores, corpus["wer"], corpus["cer"], len(rows), failed)


def _mean_ci(values: list[float]) -> MetricSummary:
    values_t = torch.tensor(values, dtype=torch.float64)
    mean = float(values_t.mean())
    if len(values) < 2:
        return MetricSummary(mean, math.nan, len(values))
    from scipy.stats import t

    half_width = float(t.ppf(0.975, len(values) - 1) * values_t.std(unbiased=True) / math.sqrt(len(values)))
    return MetricSummary(mean, half_width, len(values))
