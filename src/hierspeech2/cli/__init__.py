"""The ``hierspeech2`` command: super-resolution, voice conversion, text-to-speech, evaluation and
checkpoint management.

One module per command (:mod:`.sr`, :mod:`.vc`, :mod:`.tts`, :mod:`.serve`, :mod:`.evaluate`, :mod:`.testset`,
:mod:`.models`, :mod:`.download`, :mod:`.convert`, :mod:`.preprocess`; :mod:`.training` hands
``fit … export`` on), each with an ``add_parser(commands, name)`` and a ``run(args)``;
:mod:`.common` and :mod:`.batch` hold what they share. No command module imports torch before
it runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence

from .. import __version__
from ..errors import HierSpeechError
from . import convert, download, evaluate, models, preprocess, serve, sr, testset, tts, vc
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    BatchFailed,
    UsageError,
    add_threads_option,
    one_line,
    torch_threads,
)
from .training import TRAINING_COMMANDS, run_training_command

__all__ = [
    "COMMANDS",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "HEAVY_PARSERS",
    "TRAINING_COMMANDS",
    "USER_ERRORS",
    "UsageError",
    "add_threads_option",
    "build_parser",
    "main",
    "torch_threads",
]

log = logging.getLogger("hierspeech2")

DESCRIPTION = (
    "The ``hierspeech2`` command: super-resolution, voice conversion, text-to-speech, evaluation and "
    "checkpoint management."
)

Runner = Callable[[argparse.Namespace], None]
COMMANDS: dict[str, tuple[Callable[..., None], Runner]] = {
    module.__name__.rsplit(".", 1)[1]: (module.add_parser, module.run)
    for module in (sr, vc, tts, serve, evaluate, testset, models, download, convert, preprocess)
}
"""Name → (adds the sub-parser, runs it)."""
HEAVY_PARSERS = {"preprocess": preprocess.SUMMARY}
"""Commands whose parser imports torch (seconds): built only when that command runs."""
USER_ERRORS = (HierSpeechError, FileNotFoundError, ValueError, OSError, RuntimeError)
"""Errors a user can cause or fix (bad files, text, names, devices, memory): one line, exit code 1."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``hierspeech2`` parser.

    Given the ``command`` being run, the other commands' torch-importing parsers are stubs.
    """
    parser = argparse.ArgumentParser(prog="hierspeech2", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"hierspeech2 {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add, _) in COMMANDS.items():
        if name in HEAVY_PARSERS and command not in (None, name):
            commands.add_parser(name, help=HEAVY_PARSERS[name], add_help=False)
        else:
            add(commands, name)
    for name, summary in TRAINING_COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hierspeech2`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TRAINING_COMMANDS:
        return run_training_command(argv)
    parser = build_parser(argv[0] if argv else "")
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(level=logging.ERROR if quiet else logging.INFO, format="%(message)s")
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    with _quiet_libraries(quiet), torch_threads(getattr(args, "threads", None)):
        return _dispatch(args)


@contextlib.contextmanager
def _quiet_libraries(quiet: bool) -> Iterator[None]:
    """Silence huggingface_hub / transformers progress bars under --quiet.

    Restored after: :func:`main` may run in-process.
    """
    settings = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"} if quiet else {}
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update({name: value for name, value in settings.items() if saved[name] is None})
    # huggingface_hub logs through a handler of its own; propagating to ours too printed each line twice
    hub_logger = logging.getLogger("huggingface_hub")
    propagate, hub_logger.propagate = hub_logger.propagate, False
    try:
        yield
    finally:
        hub_logger.propagate = propagate
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command; every error it raises becomes one line on stderr and an exit code."""
    try:
        COMMANDS[args.command][1](args)
    except UsageError as error:
        print(f"hierspeech2 {args.command}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except BatchFailed as error:
        print(f"hierspeech2 {args.command}: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    except USER_ERRORS as error:
        log.debug("traceback", exc_info=True)
        print(f"hierspeech2 {args.command}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"hierspeech2 {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK
