"""``hierspeech2 convert``: an official .pth (or a registry name) → a native model folder."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import HierSpeechError
from .common import add_command, add_quiet_and_threads

__all__ = ["CONVERTIBLE_FAMILIES", "SUMMARY", "add_parser", "run"]

log = logging.getLogger("hierspeech2")

CONVERTIBLE_FAMILIES = ("backbone", "ttv", "speechsr", "denoiser")
"""Families released as official checkpoints (``registry.family_class`` builds them)."""
SUMMARY = "official .pth → native folder (config.json + model.safetensors)"
EPILOG = """examples:
  hierspeech2 convert hierspeechpp_v1.1_ckpt.pth hierspeech2-v1.1/   # → config.json + model.safetensors
  hierspeech2 convert speechsr-48k speechsr-48k/                      # a registry name works too
"""


def add_parser(commands: Any, name: str) -> None:
    """Add the ``convert`` parser to ``commands`` (argparse's subparsers)."""
    parser = add_command(commands, name, SUMMARY, EPILOG)
    parser.add_argument("checkpoint", help="official .pth file, or a registry name")
    parser.add_argument("out_dir", type=Path, help="folder to write (created; existing files replaced)")
    parser.add_argument(
        "--family",
        choices=CONVERTIBLE_FAMILIES,
        default=None,
        help="model family (default: recognised from the checkpoint's keys)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="constructor arguments as JSON, for non-released configurations, "
        "e.g. '{\"upsample_ratio\": 1.5}'",
    )
    add_quiet_and_threads(parser)


def _config(text: str | None) -> dict | None:
    """``--config``: a JSON object, or ``None``."""
    if text is None:
        return None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise HierSpeechError(f"--config is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise HierSpeechError("--config must be a JSON object of constructor arguments")
    return config


def run(args: argparse.Namespace) -> None:
    """Run ``hierspeech2 convert`` from parsed arguments."""
    from ..checkpoint import load_official_file, official_card_source
    from ..registry import default_registry, download, family_class, official_family

    config = _config(args.config)
    registry = default_registry()
    family = args.family
    if args.checkpoint in registry and not Path(args.checkpoint).exists():
        entry = registry[args.checkpoint]
        if entry.format != "official":
            raise HierSpeechError(
                f"{args.checkpoint} is not an official checkpoint ({entry.format}); nothing to convert"
            )
        (path,) = download(args.checkpoint, registry=registry)
        family = family or entry.family
        config = config or dict(entry.config) or None
    else:
        path = Path(args.checkpoint)
    state = load_official_file(path)
    family = family or official_family(state, str(path))
    model = family_class(family).from_official(state, config=config)
    model.save_pretrained(args.out_dir, model_card_kwargs={"source": official_card_source(path)})
    log.info("wrote %s (%s: config.json + model.safetensors)", args.out_dir, type(model).__name__)
