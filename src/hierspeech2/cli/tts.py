"""``hierspeech2 tts``: zero-shot text-to-speech of a text, a text file, or a batch file of jobs."""

from __future__ import annotations

import argparse
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import HierSpeechError
from ..options import TextToSpeechOptions
from . import common, synthesis
from .batch import BATCH_HELP, read_jobs, run_batch

__all__ = ["SUMMARY", "add_parser", "run"]

SUMMARY = "zero-shot text-to-speech"
EPILOG = (
    """examples:
  hierspeech2 tts "Hello there." --prompt voice.wav -o hello.wav        # hierspeech2-tts from the Hub
  hierspeech2 tts --text-file chapter1.txt --prompt voice.wav -o chapter1.flac   # any length
  hierspeech2 tts --batch jobs.tsv --batch-size 8                       # rows: text<TAB>prompt<TAB>output
  hierspeech2 tts "Hola, ¿qué tal?" --language es --prompt voice.wav -o hola.wav --ttv ./ttv-es
  hierspeech2 tts "Hello there." --prompt voice.wav -o hello.wav \\
      --ttv ttv_lt960_ckpt.pth --backbone hierspeechpp_v1.1_ckpt.pth

Long text is split at sentence and clause boundaries into pieces of at most --max-chars
characters, spoken with one prompt encoding and joined with short pauses.
"""
    + BATCH_HELP
)


def add_parser(commands: Any, name: str) -> None:
    """Add the ``tts`` parser to ``commands`` (argparse's subparsers)."""
    tts = common.add_command(commands, name, SUMMARY, EPILOG)
    tts.add_argument("text", nargs="?", help="text to speak (any length, in --language)")
    tts.add_argument("--text-file", type=Path, default=None, help="UTF-8 text file to speak instead of TEXT")
    tts.add_argument("--batch", type=Path, default=None, help="TSV of jobs: text, prompt, output")
    tts.add_argument("--prompt", type=Path, default=None, help="voice/prosody prompt audio")
    common.add_output_option(tts, "output audio file")
    tts.add_argument(
        "--ttv",
        default=None,
        help="TextToVec checkpoint instead of the model's: registry name, official .pth, native folder "
        "or hf://owner/repo",
    )
    for flag, field, what in (
        ("--noise-scale-ttv", "noise_scale_ttv", "prior noise of the text-to-vec model"),
        ("--noise-scale-w", "noise_scale_w", "duration noise"),
        ("--length-scale", "length_scale", ">1 speaks slower"),
    ):
        default = TextToSpeechOptions.default(field)
        tts.add_argument(flag, type=float, default=default, help=f"{what} (default: {default})")
    language = TextToSpeechOptions.default("language")
    tts.add_argument(
        "--language",
        default=language,
        help="language of the text: an ISO 639 or BCP-47 code espeak-ng speaks (es, fr-FR, pt-BR, ko); "
        f"the text-to-vec model's symbol table must write its phonemes (released model: English; "
        f"default: {language})",
    )
    max_chars = TextToSpeechOptions.default("max_piece_chars")
    tts.add_argument(
        "--max-chars",
        type=int,
        default=max_chars,
        help=f"longest piece of text spoken in one go (default: {max_chars})",
    )
    synthesis.add_synthesis_options(
        tts, synthesis.DEFAULT_TTS_MODEL, TextToSpeechOptions.default("noise_scale_vc")
    )
    common.add_runtime_options(tts, TextToSpeechOptions.default("batch_size"))


def _check_usage(args: argparse.Namespace) -> None:
    given = [
        name
        for name, value in (("TEXT", args.text), ("--text-file", args.text_file), ("--batch", args.batch))
        if value is not None
    ]
    if len(given) != 1:
        raise common.UsageError(
            f"tts needs exactly one of TEXT, --text-file or --batch (got {', '.join(given) or 'none'})"
        )
    if args.batch is None and (args.prompt is None or args.output is None):
        raise common.UsageError("tts needs --prompt and -o/--output (or --batch jobs.tsv)")
    if args.batch is not None and (args.prompt is not None or args.output is not None):
        raise common.UsageError("--batch takes its prompts and outputs from the file; drop --prompt/-o")
    synthesis.check_synthesis_usage(args)
    from ..errors import TextError
    from ..text.languages import espeak_voice

    try:
        espeak_voice(args.language)
    except TextError as error:
        raise common.UsageError(f"--language: {error}") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HierSpeechError(f"text file not found: {path}") from None
    except UnicodeDecodeError as error:
        raise HierSpeechError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); re-save it as UTF-8"
        ) from None
    except OSError as error:
        raise HierSpeechError(f"cannot read {path}: {error.strerror}") from None


def run(args: argparse.Namespace) -> None:
    """Run ``hierspeech2 tts`` from parsed arguments."""
    _check_usage(args)
    text = args.text if args.text_file is None else _read_text(args.text_file)
    if text is not None and not text.strip():
        raise HierSpeechError("the text is empty; give at least one word to speak")
    rows = read_jobs(args.batch, ("text", "prompt", "output"), [(args.prompt, "voice prompt")], args.output)
    options = synthesis.pipeline_options(
        TextToSpeechOptions, args, {"noise_scale_vc": "noise_scale", "max_piece_chars": "max_chars"}
    )
    parts = synthesis.components(args.model, "tts")
    ttv_spec = args.ttv or parts["ttv"]
    synthesis.require_registry_parts(
        args.model, [ttv_spec, args.backbone or parts["backbone"], synthesis.denoiser_spec(args, parts)]
    )
    runtime = common.resolve_runtime(args)
    import torch

    from ..pipelines import TextToSpeech  # after the checks that need no torch

    models = synthesis.synthesis_parts(args, parts, runtime)
    # TextToVec stays float32 under --dtype/--int8: in lower precision its durations round
    # differently, which moves the output about as far as another sampler seed (README "Speed").
    ttv = synthesis.load_as(ttv_spec, "TextToVec", "--ttv", replace(runtime, dtype=torch.float32))
    if args.engine == "onnxruntime":
        from ..onnx import onnx_ttv

        ttv = onnx_ttv(ttv)
    synthesis.maybe_int8(args, runtime, models["backbone"])
    pipeline = TextToSpeech(ttv, **options, **models)
    progress = common.show_progress(args)
    if rows is None:
        path = pipeline.synthesize_to_file(text, args.prompt, args.output, seed=args.seed, progress=progress)
        common.log_written(path, pipeline.output_rate)
    else:
        run_batch(
            "tts",
            args.batch,
            rows,
            (1, 2),
            partial(pipeline.synthesize_many, seed=args.seed, progress=progress),
        )
