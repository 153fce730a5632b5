"""``hierspeech2 vc``: zero-shot voice conversion of one pair, or of a batch file of pairs."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from ..options import F0_METHOD_NAMES, VoiceConversionOptions
from . import common, synthesis
from .batch import BATCH_HELP, read_jobs, run_batch

__all__ = ["BATCH_FILE_BATCH_SIZE", "SUMMARY", "add_parser", "run"]

BATCH_FILE_BATCH_SIZE = 4
"""Windows per model call for ``--batch`` runs (many pairs): the command's choice, not the pipeline's."""
SUMMARY = "zero-shot voice conversion"
# "\" at the end of a line below continues it: the help prints one line
EPILOG = (
    """examples:
  hierspeech2 vc source.wav voice.wav -o converted.wav                # hierspeech2-vc from the Hub
  hierspeech2 vc lecture_1h.wav voice.wav -o lecture.flac --seed 0    # any length, in overlapping windows
  hierspeech2 vc --batch pairs.tsv --batch-size 4                     # rows: source<TAB>target<TAB>output
  hierspeech2 vc source.wav voice.wav -o converted.wav --denoise-ratio 0   # no prompt denoising
  hierspeech2 vc source.wav voice.wav -o converted.wav --backbone hierspeechpp_v2_ckpt.pth \
--mms facebook/mms-300m

"""
    + BATCH_HELP
)


def add_parser(commands: Any, name: str) -> None:
    """Add the ``vc`` parser to ``commands`` (argparse's subparsers)."""
    vc = common.add_command(commands, name, SUMMARY, EPILOG)
    vc.add_argument(
        "source", type=Path, nargs="?", help="speech whose words and melody are kept (any length)"
    )
    vc.add_argument("target", type=Path, nargs="?", help="voice prompt (3–10 s of the target speaker)")
    vc.add_argument("--batch", type=Path, default=None, help="TSV of jobs: source, target, output")
    common.add_output_option(vc, "output audio file")
    synthesis.add_synthesis_options(
        vc, synthesis.DEFAULT_VC_MODEL, VoiceConversionOptions.default("noise_scale")
    )
    vc.add_argument(
        "--mms",
        default=None,
        help="semantic encoder instead of the model's: registry name, Hub id (facebook/mms-300m) "
        "or local transformers folder",
    )
    vc.add_argument(
        "--f0",
        choices=F0_METHOD_NAMES,
        default=VoiceConversionOptions.default("f0_extractor"),
        help="F0 extractor for source and prompt: yaapt (official, default), swift (about 10x faster, MIT) "
        "or praat (as fast; GPL-3, needs `pip install hierspeech2[praat]`)",
    )
    common.add_runtime_options(
        vc, f"{VoiceConversionOptions.default('batch_size')}; {BATCH_FILE_BATCH_SIZE} with --batch"
    )


def _is_hub_id(spec: str) -> bool:
    """A transformers Hub id (``facebook/mms-300m``): not a registry name, hf:// URI or local path."""
    from ..registry import default_registry

    return spec not in default_registry() and not spec.startswith("hf://") and not Path(spec).exists()


def _semantic_encoder(spec: str, runtime: common.Runtime) -> Any:
    from ..ssl import SemanticEncoder

    encoder = (
        SemanticEncoder.from_pretrained(spec)
        if _is_hub_id(spec)
        else synthesis.load_as(spec, "SemanticEncoder", "--mms", runtime)
    )
    return encoder.to(runtime.device, runtime.dtype)


def _check_usage(args: argparse.Namespace) -> None:
    if args.batch is None and (args.source is None or args.target is None or args.output is None):
        raise common.UsageError("vc needs SOURCE TARGET -o OUTPUT, or --batch pairs.tsv")
    if args.batch is not None and (args.source is not None or args.output is not None):
        raise common.UsageError(
            "--batch takes its sources, targets and outputs from the file; drop SOURCE/TARGET/-o"
        )
    synthesis.check_synthesis_usage(args)


def run(args: argparse.Namespace) -> None:
    """Run ``hierspeech2 vc`` from parsed arguments."""
    _check_usage(args)
    inputs = [(args.source, "source audio"), (args.target, "target (voice prompt) audio")]
    rows = read_jobs(args.batch, ("source", "target", "output"), inputs, args.output)
    options = synthesis.pipeline_options(
        VoiceConversionOptions,
        args,
        {"f0_extractor": "f0"},
        batch_size=args.batch_size or (BATCH_FILE_BATCH_SIZE if rows else None),
    )
    parts = synthesis.components(args.model, "vc")
    mms = args.mms or parts["semantic_encoder"]
    synthesis.require_registry_parts(
        args.model, [args.backbone or parts["backbone"], mms, synthesis.denoiser_spec(args, parts)]
    )
    if _is_hub_id(mms):
        from ..ssl import ensure_downloadable

        ensure_downloadable(mms)  # --mms facebook/mms-300m: cached, or the Hub answers, before any loading
    runtime = common.resolve_runtime(args)
    from ..pipelines import VoiceConversion  # after the checks that need no torch

    models = synthesis.synthesis_parts(args, parts, runtime)
    encoder = _semantic_encoder(mms, runtime)
    synthesis.maybe_int8(args, runtime, encoder, models["backbone"])
    pipeline = VoiceConversion(semantic_encoder=encoder, **options, **models)
    progress = common.show_progress(args)
    if rows is None:
        path = pipeline.convert_file(args.source, args.target, args.output, seed=args.seed, progress=progress)
        common.log_written(path, pipeline.output_rate)
    else:
        run_batch(
            "vc",
            args.batch,
            rows,
            (0, 1, 2),
            partial(pipeline.convert_many, seed=args.seed, progress=progress),
        )
