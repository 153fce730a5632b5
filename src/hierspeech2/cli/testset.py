"""``hierspeech2 testset``: write the job list of a test set the field reports on, from a local corpus."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from .common import UsageError, add_command, add_quiet_and_threads

__all__ = ["SUMMARY", "add_parser", "run"]

log = logging.getLogger("hierspeech2")

SUMMARY = "write an evaluation job list from a local copy of LibriTTS, LibriSpeech(-PC) or VCTK"
TESTSETS = {
    "libritts-test-clean": "zero-shot TTS, LibriTTS test-clean, as HierSpeech++ reports it",
    "librispeech-pc": "zero-shot TTS, LibriSpeech-PC test-clean cross-sentence, as F5-TTS reports it",
    "vctk": "voice conversion between VCTK speakers",
}
EPILOG = (
    "test sets:\n"
    + "".join(f"  {name:<21} {what}\n" for name, what in TESTSETS.items())
    + (
        """
examples:
  hierspeech2 testset libritts-test-clean /data/LibriTTS -o lt/jobs.tsv
  hierspeech2 testset librispeech-pc /data/LibriSpeech --pairs librispeech_pc_test_clean_cross_sentence.lst \\
      -o ls/jobs.tsv
  hierspeech2 testset vctk /data/VCTK-Corpus-0.92 -o vctk/jobs.tsv
then: hierspeech2 evaluate lt/jobs.tsv --run tts -o lt/results.csv
"""
    )
)


def add_parser(commands: Any, name: str) -> None:
    """Add the ``testset`` parser to ``commands`` (argparse's subparsers)."""
    parser = add_command(commands, name, SUMMARY, EPILOG)
    parser.add_argument("name", choices=tuple(TESTSETS), help="which test set")
    parser.add_argument("corpus", type=Path, help="the corpus folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="job list to write (TSV)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompt draws (default: 0)")
    parser.add_argument("--min-seconds", type=float, default=4.0, help="shortest target (TTS; default: 4)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="longest target (TTS; default: 10)")
    parser.add_argument("--pairs", type=Path, default=None, help="librispeech-pc: F5-TTS's pair list (.lst)")
    parser.add_argument(
        "--per-speaker", type=int, default=None, help="libritts: at most N targets per speaker"
    )
    parser.add_argument("--subset", default="test-clean", help="libritts: the subset (default: test-clean)")
    add_quiet_and_threads(parser)


def run(args: argparse.Namespace) -> None:
    """Run ``hierspeech2 testset`` from parsed arguments."""
    from ..evaluation import librispeech_pc_cross_sentence, libritts_test_clean, vctk_conversion, write_jobs

    window = {"min_seconds": args.min_seconds, "max_seconds": args.max_seconds, "seed": args.seed}
    if args.pairs is not None and args.name != "librispeech-pc":
        raise UsageError("--pairs is for librispeech-pc")
    if args.name == "libritts-test-clean":
        jobs = libritts_test_clean(args.corpus, per_speaker=args.per_speaker, subset=args.subset, **window)
    elif args.name == "librispeech-pc":
        jobs = librispeech_pc_cross_sentence(args.corpus, pairs=args.pairs, **window)
    else:
        jobs = vctk_conversion(args.corpus, seed=args.seed)
    write_jobs(jobs, args.output)
    log.info("wrote %d jobs to %s", len(jobs), args.output)
