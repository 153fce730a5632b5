"""What every ``hierspeech2`` command shares: exit codes, errors, common options and output checks.

Nothing here imports torch at import time (``--help`` stays fast); the functions that need it
import it when called.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..constants import MODEL_SAMPLE_RATE, OUTPUT_RATES
from ..errors import HierSpeechError

__all__ = [
    "DEFAULT_OUTPUT_RATE",
    "DTYPES",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "OUTPUT_FORMATS",
    "SPEECHSR_RATES",
    "BatchFailed",
    "Runtime",
    "UsageError",
    "add_command",
    "add_output_option",
    "add_quiet_and_threads",
    "add_runtime_options",
    "add_threads_option",
    "check_output",
    "is_audio_name",
    "log_written",
    "one_line",
    "require_audio",
    "resolve_runtime",
    "show_progress",
    "torch_threads",
]

log = logging.getLogger("hierspeech2")

EXIT_OK = 0
EXIT_FAILED = 1
"""A file, a text, a name or a device that does not work, or a batch with failed items."""
EXIT_USAGE = 2
"""A command line that cannot work (argparse uses the same code)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C, as shells report SIGINT."""

DEFAULT_OUTPUT_RATE = 48_000
"""The command's own choice of output rate for synthesis and super-resolution (the pipelines' default
is the SpeechSR's rate)."""
SPEECHSR_RATES = tuple(rate for rate in OUTPUT_RATES if rate != MODEL_SAMPLE_RATE)
"""Rates a SpeechSR writes."""
DTYPES = ("float32", "float16", "bfloat16")
OUTPUT_FORMATS = ("wav", "flac", "ogg", "mp3")
"""Formats offered for output; libsndfile >= 1.1 (bundled with soundfile >= 0.12) writes MP3 and reads
it back sample-exact (gapless)."""
_FORMAT_ALIASES = {"AIF": "AIFF", "OGA": "OGG", "OPUS": "OGG"}  # as hierspeech2.audio.save_audio reads them


class UsageError(HierSpeechError):
    """A command line that cannot work (exit code :data:`EXIT_USAGE`)."""


class BatchFailed(HierSpeechError):
    """Some items of a batch failed, each already reported (exit code :data:`EXIT_FAILED`)."""


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (its type name when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


# ----------------------------------------------------------------------------------------- parsers


def add_command(commands: Any, name: str, summary: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """A sub-parser ``name`` on ``commands`` (argparse's subparsers), its epilog printed as written."""
    return commands.add_parser(
        name, help=summary, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _thread_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads, at least 1, got {text!r}")
    return count


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads for the run (applied by :func:`torch_threads`)."""
    parser.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        metavar="N",
        help="torch CPU threads for this run (default: torch's, which follows OMP_NUM_THREADS); "
        "when other jobs share the cores, 1 is often several times faster",
    )


def add_quiet_and_threads(
    parser: argparse.ArgumentParser, quiet_help: str = "print nothing but errors"
) -> None:
    """``--quiet`` and ``--threads``, which every command has."""
    parser.add_argument("--quiet", action="store_true", help=quiet_help)
    add_threads_option(parser)


def add_runtime_options(parser: argparse.ArgumentParser, batch_size_default: object) -> None:
    """``--device --dtype --seed --batch-size --quiet --threads`` of the model-running commands."""
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (cuda when available), cpu, cuda, cuda:1 …"
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="weights and compute precision (default: float32; tts keeps TextToVec in float32)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help=f"items (windows, text pieces) per model call (default: {batch_size_default})",
    )
    add_quiet_and_threads(parser, "print nothing but errors (no progress bar)")


def add_output_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``-o/--output PATH``, described as ``what``."""
    parser.add_argument("-o", "--output", type=Path, default=None, help=f"{what} (.wav, .flac, .ogg, .mp3)")


# ----------------------------------------------------------------------------------------- runtime


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads (``None``: leave torch's), restored after.

    Restored because :func:`hierspeech2.cli.main` may run in-process.
    """
    if threads is None:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@dataclass(frozen=True)
class Runtime:
    """Where and in what precision the models of a run live."""

    device: str
    dtype: Any  # torch.dtype (torch is imported lazily)


def resolve_runtime(args: argparse.Namespace) -> Runtime:
    """The :class:`Runtime` of ``--device`` and ``--dtype``, checked against this machine."""
    import torch

    spec = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    spec = "cpu" if spec == "auto" else spec
    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise UsageError(
            f"--device {args.device!r} is not a torch device ({error}); use cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HierSpeechError(
            f"--device {args.device}: CUDA is not available on this machine; use --device cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise HierSpeechError(
            f"--device {args.device}: MPS is not available on this machine; use --device cpu"
        )
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu" and dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        log.warning(
            "this CPU has no native bfloat16 (AVX-512 BF16 or AMX): --dtype bfloat16 runs emulated, several "
            "times slower than float32; on CPU prefer float32 or --int8"
        )
    return Runtime(str(device), dtype)


def log_written(path: Path, rate: int) -> None:
    """Say that ``path`` was written, at ``rate`` Hz."""
    log.info("wrote %s (%d Hz)", path, rate)


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not under ``--quiet``, and only on a terminal."""
    return not args.quiet and sys.stderr.isatty()


# ------------------------------------------------------------------------------------------- files


def is_audio_name(path: Path) -> bool:
    """Whether soundfile can write the format that ``path``'s extension names."""
    import soundfile as sf

    extension = path.suffix.lstrip(".").upper()
    return _FORMAT_ALIASES.get(extension, extension) in sf.available_formats()


def check_output(path: Path) -> None:
    """An output extension soundfile cannot write fails now, not after the models have run."""
    import soundfile as sf

    if not is_audio_name(path):
        usable = [f".{name}" for name in OUTPUT_FORMATS if name.upper() in sf.available_formats()]
        raise HierSpeechError(
            f"cannot tell the audio format from the extension of {path}; "
            f"use {', '.join(usable[:-1])} or {usable[-1]}"
        )


def require_audio(path: Path, what: str) -> None:
    """Fail before any model is loaded when an input file is missing or not audio."""
    import soundfile as sf

    if not path.exists():
        raise HierSpeechError(f"{what} not found: {path}")
    if path.is_dir():
        raise HierSpeechError(f"{what} {path} is a folder, not an audio file")
    try:
        sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        raise HierSpeechError(f"cannot read {what} {path} as audio ({one_line(error)})") from None
