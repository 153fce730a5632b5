"""``hierspeech2 export CKPT OUT_DIR``: a Lightning training checkpoint → native model folder.

The task's ``on_save_checkpoint`` records the trained model's class and constructor config;
export rebuilds that model, loads its weights strictly and writes ``config.json`` +
``model.safetensors`` with ``save_pretrained``, which ``hierspeech2.load_model(OUT_DIR)``
reads, and a model card naming the checkpoint, its global step and epoch. Works on a finished
run and on any intermediate (``last.ckpt``) one.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint import _json_to_constructor
from ..errors import CheckpointError, HierSpeechError
from ..models import model_class
from .base import EXPORT_KEY

logger = logging.getLogger(__name__)


def _is_torch_file(path: Path) -> bool:
    """Whether ``path`` looks like a ``torch.save`` file: a zip archive, or a legacy pickle (protocol 2+)."""
    with open(path, "rb") as file:
        magic = file.read(4)
    return magic == b"PK\x03\x04" or magic[:1] == b"\x80"


def lightning_card_source(checkpoint_path: Path, checkpoint: dict) -> str:
    """The model card's provenance line: the Lightning checkpoint and how far its run had got."""
    # Lightning's global_step counts optimizer steps: two per batch for the GAN tasks (Lightning #17958)
    step, epoch = checkpoint.get("global_step", "unknown"), checkpoint.get("epoch", "unknown")
    return (
        f"Exported with `hierspeech2 export` from the Lightning checkpoint `{checkpoint_path}` "
        f"(global step {step}, epoch {epoch})."
    )


def export(checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the model trained in ``checkpoint_path`` (a Lightning ``.ckpt``) to ``out_dir`` in the
    native format."""
    checkpoint_path, out_dir = Path(checkpoint_path), Path(out_dir)
    if not checkpoint_path.is_file():
        raise CheckpointError(f"training checkpoint not found: {checkpoint_path}")
    if not _is_torch_file(checkpoint_path):
        raise CheckpointError(
            f"{checkpoint_path} is not a Lightning checkpoint (torch.save writes a zip archive); "
            "pass the .ckpt that `hierspeech2 fit` saved, e.g. lightning_logs/version_0/checkpoints/last.ckpt"
        )
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a foreign or corrupt file
        raise CheckpointError(f"cannot read {checkpoint_path} as a Lightning checkpoint: {error}") from error
    meta = checkpoint.get(EXPORT_KEY) if isinstance(checkpoint, dict) else None
    if meta is None:
        raise CheckpointError(
            f"{checkpoint_path} has no {EXPORT_KEY!r} record: it was not written by a hierspeech2 task "
            "(hierspeech2.tasks.TTVTask, SpeechSRTask, ...)"
        )
    cls = model_class(meta["model_class"], str(checkpoint_path))
    model = cls(**{key: _json_to_constructor(value) for key, value in meta["model_config"].items()})
    prefix = meta["state_prefix"]
    state = {
        key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)
    }
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"the weights in {checkpoint_path} do not fit {cls.__name__}: {error}"
        ) from error
    model.save_pretrained(
        out_dir, model_card_kwargs={"source": lightning_card_source(checkpoint_path, checkpoint)}
    )
    logger.info("exported %s to %s", cls.__name__, out_dir)
    return out_dir


def export_onnx(spec: str, out_dir: Path) -> Path:
    """A SpeechSR, HierSpeech2 or TextToVec (a Lightning checkpoint, anything ``load_model`` reads, or
    ``packaged-24k|48k``) → ONNX (:func:`hierspeech2.onnx.export_model`)."""
    from ..onnx import export_model

    if spec in ("packaged-24k", "packaged-48k"):
        from ..models import SpeechSR

        model = SpeechSR.from_packaged(24_000 if spec == "packaged-24k" else 48_000)
    elif Path(spec).suffix == ".ckpt":
        native = out_dir.with_name(out_dir.name + ".native")
        export(Path(spec), native)
        from ..registry import load_model

        model = load_model(native)
    else:
        from ..registry import load_model

        model = load_model(spec)
    path = export_model(model, out_dir)
    logger.info("exported %s to %s", type(model).__name__, path)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """``hierspeech2 export CKPT OUT_DIR``."""
    parser = argparse.ArgumentParser(
        prog="hierspeech2 export",
        description="Export a Lightning training checkpoint to a native model folder "
        "(config.json + model.safetensors).",
    )
    parser.add_argument(
        "checkpoint",
        help="Lightning checkpoint (.ckpt) written by `lightning fit`; with --format onnx also a SpeechSR, "
        "HierSpeech2 or TextToVec that load_model reads (registry name, official .pth, native folder) or "
        "packaged-24k/packaged-48k",
    )
    parser.add_argument(
        "out_dir", type=Path, help="folder to write; load it with hierspeech2.load_model(out_dir)"
    )
    parser.add_argument(
        "--format",
        choices=("native", "onnx"),
        default="native",
        help="native: config.json + model.safetensors; onnx: the ONNX graphs + config.json, which "
        "hierspeech2.onnx.OnnxSpeechSR / OnnxBackbone / OnnxTextToVec run with onnxruntime (SpeechSR: "
        "model.onnx; HierSpeech2: its conversion path, model.onnx; TextToVec: encoder.onnx + decoder.onnx)",
    )
    from ..cli import add_threads_option, torch_threads

    add_threads_option(parser)
    args = parser.parse_args(argv)
    try:
        with torch_threads(args.threads):
            if args.format == "onnx":
                export_onnx(args.checkpoint, args.out_dir)
            else:
                export(Path(args.checkpoint), args.out_dir)
    except HierSpeechError as error:  # unreadable checkpoint, or an output folder that cannot be written
        parser.exit(1, f"hierspeech2 export: error: {error}\n")


if __name__ == "__main__":
    main()
