"""``hierspeech2 fit|validate|test|predict|export``: commands with parsers of their own.

Everything after the command's name goes to LightningCLI (:mod:`hierspeech2.training_cli`) or to
the exporter (:mod:`hierspeech2.tasks.export`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .common import EXIT_OK

__all__ = ["TRAINING_COMMANDS", "run_training_command"]

TRAINING_COMMANDS = {
    "fit": "train a model from a recipe: hierspeech2 fit -c recipes/ttv.yaml",
    "validate": "validate a model from a recipe and a checkpoint",
    "test": "test a model from a recipe and a checkpoint",
    "predict": "predict with a model from a recipe and a checkpoint",
    "export": "Lightning checkpoint → native model folder: hierspeech2 export CKPT OUT_DIR",
}
"""Name → summary for ``hierspeech2 --help``."""


def run_training_command(argv: Sequence[str]) -> int:
    """Hand ``fit|validate|test|predict|export …`` to their own parsers; returns the exit code."""
    argv = list(argv)
    if argv[0] == "export":
        from ..tasks.export import main as export_main

        export_main(argv[1:])
    else:
        from ..training_cli import main as training_main

        training_main(argv)
    return EXIT_OK
