"""``hierspeech2 sr``: speech super-resolution of a file or a folder to 24/48 kHz."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import HierSpeechError
from ..options import SuperResolutionOptions
from .batch import report
from .common import (
    DEFAULT_OUTPUT_RATE,
    OUTPUT_FORMATS,
    SPEECHSR_RATES,
    UsageError,
    add_command,
    add_output_option,
    add_runtime_options,
    check_output,
    is_audio_name,
    log_written,
    require_audio,
    resolve_runtime,
    show_progress,
)
from .synthesis import add_engine_option, load_as, pipeline_options, speechsr

__all__ = ["SUMMARY", "add_parser", "run"]

SUMMARY = "speech super-resolution to 24/48 kHz"
EPILOG = """examples:
  hierspeech2 sr speech_16k.wav -o speech_48k.wav                  # packaged weights, no network
  hierspeech2 sr speech.flac -o speech_24k.flac --output-rate 24000
  hierspeech2 sr recording_2h.wav -o recording_48k.wav             # any length, memory stays flat
  hierspeech2 sr recordings/ -o recordings_48k/ --format flac      # a whole folder (recursively)
  hierspeech2 sr speech.wav -o speech_48k.wav --model speechsr-48k  # registry download, sha256-verified
"""


def add_parser(commands: Any, name: str) -> None:
    """Add the ``sr`` parser to ``commands`` (argparse's subparsers)."""
    sr = add_command(commands, name, SUMMARY, EPILOG)
    sr.add_argument(
        "input", type=Path, help="input audio file or folder (any sample rate; resampled to 16 kHz first)"
    )
    add_output_option(sr, "output audio file, or output folder when the input is a folder")
    sr.add_argument(
        "--output-rate",
        "--rate",
        dest="rate",
        type=int,
        choices=SPEECHSR_RATES,
        default=None,
        help=f"output sample rate (default: the model's, else {DEFAULT_OUTPUT_RATE})",
    )
    sr.add_argument(
        "--format", choices=OUTPUT_FORMATS, default="wav", help="output format for a folder (default: wav)"
    )
    source = sr.add_mutually_exclusive_group()
    source.add_argument(
        "--model",
        default=None,
        help="SpeechSR from the registry (speechsr-24k, speechsr-48k), a native folder or hf://",
    )
    source.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="official SpeechSR .pth (default: the weights packaged with hierspeech2)",
    )
    add_engine_option(sr, "SpeechSR")
    add_runtime_options(sr, SuperResolutionOptions.default("batch_size"))


def _check_paths(args: argparse.Namespace) -> bool:
    """Fail on inputs and outputs that cannot work, before anything is loaded.

    Returns whether the input is a folder.
    """
    if args.output is None:
        raise UsageError("sr needs -o/--output (a file, or a folder when the input is a folder)")
    is_folder = args.input.is_dir()
    if not is_folder:
        require_audio(args.input, "input audio")
        check_output(args.output)
    elif args.output.exists() and not args.output.is_dir():
        raise UsageError(f"the input is a folder, so -o must be a folder too, but {args.output} is a file")
    elif not args.output.exists() and is_audio_name(args.output):
        raise UsageError(
            f"the input is a folder, so -o must be a folder too, not the audio file name {args.output}; "
            f"write -o {args.output.with_suffix('')}/ (and --format {args.output.suffix.lstrip('.').lower()})"
        )
    return is_folder


def _audio_files(folder: Path) -> list[Path]:
    import soundfile as sf

    extensions = {f".{name.lower()}" for name in sf.available_formats()} | {".oga", ".opus"}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise HierSpeechError(
            f"no audio files in {folder} (looked for {', '.join(sorted(extensions)[:8])} …)"
        )
    return files


def run(args: argparse.Namespace) -> None:
    """Run ``hierspeech2 sr`` from parsed arguments."""
    is_folder = _check_paths(args)
    if args.model is not None:
        from ..registry import default_registry, ensure_available

        if args.model in default_registry() and not Path(args.model).exists():
            ensure_available([args.model])  # before torch: fail in seconds without the Hub
    runtime = resolve_runtime(args)
    import torch

    from ..pipelines import SuperResolution  # after the checks that need no torch

    if args.model is not None:
        model = load_as(args.model, "SpeechSR", "--model", runtime)
        if args.rate is not None and args.rate != model.output_rate:
            raise HierSpeechError(
                f"--model {args.model} outputs {model.output_rate} Hz, but --rate {args.rate} was asked"
            )
    else:
        model = speechsr(args.rate, args.checkpoint, runtime)
    if args.engine == "onnxruntime":
        if runtime.device != "cpu" or runtime.dtype != torch.float32:
            raise UsageError("--engine onnxruntime runs float32 on the CPU: drop --device/--dtype")
        from ..onnx import onnx_speechsr

        model = onnx_speechsr(model)
    pipeline = SuperResolution(model, **pipeline_options(SuperResolutionOptions, args))
    if not is_folder:
        path = pipeline.process_file(args.input, args.output, progress=show_progress(args))
        log_written(path, pipeline.output_rate)
        return
    inputs = _audio_files(args.input)
    outputs = [args.output / path.relative_to(args.input).with_suffix(f".{args.format}") for path in inputs]
    results = pipeline.process_many(list(zip(inputs, outputs)), progress=show_progress(args))
    report("sr", [str(path) for path in inputs], results, {})
