"""``hierspeech2 models``: list the registry (name, family, size, whether cached, description)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import UsageError, add_command, add_quiet_and_threads

__all__ = ["FAMILIES", "SUMMARY", "add_parser", "human_size", "run"]

FAMILIES = ("backbone", "ttv", "speechsr", "mms", "denoiser", "tts", "vc")
"""``registry.MODEL_FAMILIES`` and ``registry.PIPELINES``, restated so that ``--help`` needs no registry
import (a test keeps them equal)."""
SUMMARY = "list the registry: name, family, size, cached"
EPILOG = """The registry is the checkpoints.yaml packaged with hierspeech2, or the file named by
$HIERSPEECH2_REGISTRY. Downloads go to the Hugging Face cache ($HF_HOME); set HF_HUB_OFFLINE=1
to use only what is cached, HF_ENDPOINT to use a mirror.

examples:
  hierspeech2 models
  hierspeech2 models --family speechsr
"""


def add_parser(commands: Any, name: str) -> None:
    """Add the ``models`` parser to ``commands`` (argparse's subparsers)."""
    parser = add_command(commands, name, SUMMARY, EPILOG)
    parser.add_argument("--family", default=None, help=f"only this family ({', '.join(FAMILIES)})")
    add_quiet_and_threads(parser)


def human_size(size: float | None) -> str:
    """``size`` bytes in B, kB, MB or GB (powers of 1000); ``"?"`` when unknown."""
    if size is None:
        return "?"
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def run(args: argparse.Namespace) -> None:
    """Run ``hierspeech2 models`` from parsed arguments: print the registry as a table."""
    from ..registry import default_registry, is_cached

    if args.family is not None and args.family not in FAMILIES:
        raise UsageError(
            f"--family {args.family} is not a model family; known families: {', '.join(FAMILIES)}"
        )
    registry = default_registry()
    rows = [("NAME", "FAMILY", "SIZE", "CACHED", "DESCRIPTION")]
    for name in registry.names(args.family):
        entry = registry[name]
        parts = [registry[part] for part in entry.components.values()] if entry.is_pipeline else [entry]
        sizes = [part.size for part in parts]
        size = None if None in sizes else sum(sizes)
        cached = "yes" if is_cached(name, registry) else "no"
        rows.append((name, entry.family, human_size(size), cached, entry.description))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4])
