"""``hierspeech2 evaluate``: score a job list (WER/CER, speaker similarity, MOS, LSD, F0), optionally
after running TTS, VC or super-resolution on it; and ``hierspeech2 testset``, which writes job lists.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from ..options import EVALUATION_METRICS, OFFLINE_EVALUATION_MODELS, TEXT_NORMALIZATIONS, EvaluationOptions
from .common import BatchFailed, UsageError, add_command, add_quiet_and_threads

__all__ = ["SUMMARY", "add_parser", "run"]

log = logging.getLogger("hierspeech2")

SUMMARY = "score a job list: WER/CER, speaker similarity, predicted MOS, LSD, F0"
RUNNABLE = ("tts", "vc", "sr")
EPILOG = f"""examples:
  hierspeech2 testset libritts-test-clean /data/LibriTTS -o lt/jobs.tsv
  hierspeech2 evaluate lt/jobs.tsv --run tts -o lt/results.csv              # TTS, then score it
  hierspeech2 evaluate lt/jobs.tsv --run tts --run-args "--model my-tts --seed 0" -o lt/results.csv
  hierspeech2 evaluate jobs.tsv -o results.csv --device cuda                # audio column already filled
  hierspeech2 evaluate jobs.tsv -o results.csv --offline --metrics wer,sim  # no download at all

Job lists are TSV with a header: id, audio, text, prompt, source, reference (only id is required);
each metric is computed for the jobs whose columns allow it: wer (text), sim (prompt), mos,
lsd (reference), f0 (source or reference). Results go to the CSV after each batch; running the
same command again scores only what is missing. The summary (mean and 95% interval per metric) is
printed and written next to the CSV as .summary.json.

Default models are the field's (downloaded once): --asr {EvaluationOptions.default("asr_model")} \
(openai/whisper-large-v3), --speaker {EvaluationOptions.default("speaker_model")} \
(microsoft/wavlm-base-plus-sv), --mos {EvaluationOptions.default("mos_model")} (UTMOS22 strong).
--offline uses those that ship in installed wheels: {", ".join(OFFLINE_EVALUATION_MODELS.values())}.
"""


def _metrics(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in EVALUATION_METRICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(EVALUATION_METRICS)} (got {text!r})")
    return names


def add_parser(commands: Any, name: str) -> None:
    """Add the ``evaluate`` parser to ``commands`` (argparse's subparsers)."""
    evaluate = add_command(commands, name, SUMMARY, EPILOG)
    evaluate.add_argument("jobs", type=Path, help="job list (TSV with a header; see below)")
    evaluate.add_argument("-o", "--output", type=Path, required=True, help="per-utterance results (CSV)")
    evaluate.add_argument(
        "--run", choices=RUNNABLE, default=None, help="make each job's audio first with this command"
    )
    evaluate.add_argument(
        "--run-args", default="", help='arguments for the --run command, e.g. "--model my-tts --seed 0"'
    )
    evaluate.add_argument(
        "--audio-dir",
        type=Path,
        default=None,
        help="where --run writes audio (default: OUTPUT's name + _audio)",
    )
    evaluate.add_argument(
        "--metrics",
        type=_metrics,
        default=None,
        help=f"comma-separated subset of {','.join(EVALUATION_METRICS)}",
    )
    for flag, field in (("--asr", "asr_model"), ("--speaker", "speaker_model"), ("--mos", "mos_model")):
        default = EvaluationOptions.default(field)
        evaluate.add_argument(flag, default=None, help=f"model name, Hub id or folder (default: {default})")
    evaluate.add_argument("--offline", action="store_true", help="the models that need no download")
    evaluate.add_argument(
        "--language",
        default=EvaluationOptions.default("language"),
        help="language of the texts, for the ASR model ('auto': Whisper detects it; default: %(default)s)",
    )
    evaluate.add_argument(
        "--normalization",
        choices=TEXT_NORMALIZATIONS,
        default=EvaluationOptions.default("normalization"),
        help="text normalisation before WER/CER (default: %(default)s)",
    )
    evaluate.add_argument(
        "--f0", default=EvaluationOptions.default("f0_method"), help="F0 extractor (default: %(default)s)"
    )
    evaluate.add_argument("--device", default=EvaluationOptions.default("device"), help="cpu, cuda, cuda:1 …")
    evaluate.add_argument(
        "--batch-size", type=int, default=EvaluationOptions.default("batch_size"), help="jobs scored together"
    )
    add_quiet_and_threads(evaluate)


def options_from(args: argparse.Namespace) -> EvaluationOptions:
    """The :class:`EvaluationOptions` of parsed ``evaluate`` arguments."""
    options = EvaluationOptions(
        metrics=args.metrics,
        language=None if args.language == "auto" else args.language,
        normalization=args.normalization,
        f0_method=args.f0,
        device=args.device,
        batch_size=args.batch_size,
    )
    if args.offline:
        options = options.offline()
    return options.updated(asr_model=args.asr, speaker_model=args.speaker, mos_model=args.mos)


def run(args: argparse.Namespace) -> None:
    """Run ``hierspeech2 evaluate`` from parsed arguments."""
    from ..errors import SettingError

    try:
        options = options_from(args)
    except SettingError as error:
        raise UsageError(str(error)) from None
    from ..evaluation import evaluate_jobs, read_jobs

    if not args.jobs.is_file():
        raise UsageError(f"job list not found: {args.jobs}")
    jobs = read_jobs(args.jobs)
    if not jobs:
        raise UsageError(f"{args.jobs} has no jobs")
    if args.run is not None:
        audio_dir = args.audio_dir or args.output.with_name(args.output.stem + "_audio")
        jobs = make_audio(jobs, args.run, shlex.split(args.run_args), audio_dir, args.quiet)
    summary = evaluate_jobs(jobs, args.output, options, progress=not args.quiet and sys.stderr.isatty())
    if not args.quiet:
        print(format_summary(summary))
    log.info("wrote %s and %s", args.output, args.output.with_suffix(".summary.json"))
    if summary.failed:
        raise BatchFailed(
            f"{summary.failed} of {summary.jobs} jobs failed; see the error column of {args.output}"
        )


def make_audio(jobs: list, command: str, run_args: list[str], audio_dir: Path, quiet: bool) -> list:
    """Run ``command`` (tts, vc, sr) for the jobs whose audio does not exist yet; jobs with their audio paths.

    A job's audio goes where its ``audio`` column says, else to ``audio_dir/<id>.wav``. Jobs whose
    audio exists are not run again, so an interrupted run resumes.
    """
    from . import main

    needs = {"tts": ("text", "prompt"), "vc": ("source", "prompt"), "sr": ("source",)}[command]
    placed = [job if job.audio is not None else job.with_audio(audio_dir / f"{job.id}.wav") for job in jobs]
    todo = [job for job in placed if not job.audio.exists() and all(getattr(job, name) for name in needs)]
    if not todo:
        return placed
    audio_dir.mkdir(parents=True, exist_ok=True)
    extra = ["--quiet"] if quiet and "--quiet" not in run_args else []
    if command == "sr":
        for job in todo:
            main(["sr", str(job.source), "-o", str(job.audio), *run_args, *extra])
        return placed
    batch = audio_dir / f"{command}_batch.tsv"
    with open(batch, "w", encoding="utf-8") as handle:
        for job in todo:
            first = job.text if command == "tts" else str(job.source)
            handle.write(f"{first}\t{job.prompt}\t{job.audio}\n")
    status = main([command, "--batch", str(batch), *run_args, *extra])
    if status:
        log.warning(
            "hierspeech2 %s exited with %d: the jobs it could not make are scored as failed", command, status
        )
    return placed


def format_summary(summary: Any) -> str:
    """The summary as a small table: metric, mean ± 95 % interval, count."""
    lines = [f"{summary.jobs} jobs, {summary.failed} failed"]
    for name, score in summary.scores.items():
        lines.append(f"  {name:<20} {score.mean:9.4f} ± {score.ci95:.4f}  (n={score.count})")
    for name, value in (("corpus WER", summary.corpus_wer), ("corpus CER", summary.corpus_cer)):
        if value is not None:
            lines.append(f"  {name:<20} {value:9.4f}")
    return "\n".join(lines)
