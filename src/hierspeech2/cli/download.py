"""``hierspeech2 download``: pre-fetch and verify checkpoints for offline use."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from .common import add_command, add_quiet_and_threads

__all__ = ["SUMMARY", "add_parser", "run"]

log = logging.getLogger("hierspeech2")

SUMMARY = "pre-fetch and verify checkpoints for offline use"
EPILOG = """examples:
  hierspeech2 download hierspeech2-tts hierspeech2-vc   # then copy $HF_HOME to an offline cluster
"""


def add_parser(commands: Any, name: str) -> None:
    """Add the ``download`` parser to ``commands`` (argparse's subparsers)."""
    parser = add_command(commands, name, SUMMARY, EPILOG)
    parser.add_argument("names", nargs="+", metavar="NAME", help="registry names (`hierspeech2 models`)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit instead of the registry's")
    add_quiet_and_threads(parser)


def run(args: argparse.Namespace) -> None:
    """Run ``hierspeech2 download`` from parsed arguments."""
    from ..registry import default_registry, download, ensure_available

    registry = default_registry()
    for name in args.names:
        registry[name]  # unknown names fail before anything is downloaded
    ensure_available(args.names, registry=registry, revision=args.revision)  # one message for all, in seconds
    for name in args.names:
        for path in download(name, revision=args.revision, registry=registry):
            log.info("%s: %s", name, path)
