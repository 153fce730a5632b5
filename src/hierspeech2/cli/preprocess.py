"""``hierspeech2 preprocess``: a corpus → a training feature cache (see :mod:`hierspeech2.data.preprocess`).

Its parser imports torch, so ``hierspeech2`` builds it only when this command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import BatchFailed

__all__ = ["SUMMARY", "add_parser", "run"]

SUMMARY = "corpus → training feature cache (resumable, parallel)"


def add_parser(commands: Any, name: str) -> None:
    """Add the ``preprocess`` parser to ``commands`` (argparse's subparsers); imports torch."""
    from ..data.preprocess import add_preprocess_parser

    add_preprocess_parser(commands)


def run(args: argparse.Namespace) -> None:
    """Run ``hierspeech2 preprocess`` from parsed arguments."""
    from ..data.preprocess import run_preprocess

    status = run_preprocess(args)
    if status:
        raise BatchFailed(f"preprocessing finished with exit status {status}; see the messages above")
