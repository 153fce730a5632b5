"""What the model-running commands share: synthesis options (``vc``, ``tts``) and loading checked models."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..constants import MODEL_SAMPLE_RATE, OUTPUT_RATES
from ..errors import HierSpeechError
from ..options import OFFICIAL_DENOISE_RATIO
from .common import DEFAULT_OUTPUT_RATE, SPEECHSR_RATES, Runtime, UsageError

__all__ = [
    "DEFAULT_TTS_MODEL",
    "DEFAULT_VC_MODEL",
    "add_engine_option",
    "add_synthesis_options",
    "check_synthesis_usage",
    "components",
    "load_as",
    "maybe_int8",
    "pipeline_options",
    "require_registry_parts",
    "speechsr",
    "synthesis_parts",
]

DEFAULT_VC_MODEL = "hierspeech2-vc"
DEFAULT_TTS_MODEL = "hierspeech2-tts"


ENGINES = ("torch", "onnxruntime")


def add_engine_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--engine``: torch, or onnxruntime on the ONNX export of ``what`` (made once and cached)."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="torch",
        help=f"what runs {what}: torch (default), or onnxruntime on the ONNX export, made once per "
        "weights and cached (CPU, float32; slower than torch on the CPUs measured, see README 'Speed')",
    )


def add_synthesis_options(parser: argparse.ArgumentParser, default_model: str, noise_scale: float) -> None:
    """The model, prompt-denoising, output-rate, noise and ``--int8`` options of ``vc`` and ``tts``."""
    parser.add_argument(
        "--model",
        default=default_model,
        help=f"registry pipeline whose checkpoints are used (default: {default_model}; "
        "see `hierspeech2 models`)",
    )
    parser.add_argument(
        "--backbone",
        default=None,
        help="HierSpeech2 checkpoint instead of the model's: registry name, official .pth, "
        "native folder or hf://owner/repo",
    )
    parser.add_argument(
        "--denoiser",
        default=None,
        help="MP-SENet prompt denoiser instead of the model's (registry name, official file such as g_best, "
        "native folder)",
    )
    parser.add_argument(
        "--denoise-ratio",
        type=float,
        default=None,
        help="weight of the denoised prompt's style, 0–1 "
        f"(default: {OFFICIAL_DENOISE_RATIO} as the official scripts when a denoiser "
        "is configured; 0 skips denoising)",
    )
    parser.add_argument(
        "--output-rate",
        type=int,
        choices=OUTPUT_RATES,
        default=DEFAULT_OUTPUT_RATE,
        help=f"{MODEL_SAMPLE_RATE} skips super-resolution; {'/'.join(map(str, SPEECHSR_RATES))} run the "
        f"packaged SpeechSR (default: {DEFAULT_OUTPUT_RATE})",
    )
    parser.add_argument(
        "--noise-scale",
        type=float,
        default=noise_scale,
        help=f"prior noise of the backbone (default: {noise_scale})",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="CPU only: run the dense layers of MMS and the backbone in dynamic int8 "
        "(faster on CPU, output within the sampling noise; see README 'Speed')",
    )
    add_engine_option(parser, "the text-to-vec model (tts), the backbone and SpeechSR")


def check_synthesis_usage(args: argparse.Namespace) -> None:
    """Option combinations of ``vc`` and ``tts`` that cannot work, before anything is loaded."""
    if args.int8 and args.dtype != "float32":
        raise UsageError(f"--int8 quantises float32 models; drop --dtype {args.dtype}")
    if args.engine == "onnxruntime":
        if args.int8 or args.dtype != "float32" or args.device not in ("auto", "cpu"):
            raise UsageError(
                "--engine onnxruntime runs float32 on the CPU: drop --int8, --dtype and --device"
            )
        args.device = "cpu"  # MMS, TTV and the denoiser then run beside it
    if args.denoise_ratio is not None and not 0.0 <= args.denoise_ratio <= 1.0:
        raise UsageError(f"--denoise-ratio must be between 0 and 1, got {args.denoise_ratio}")


def pipeline_options(
    options_class: type, args: argparse.Namespace, renamed: Mapping[str, str] | None = None, **values: Any
) -> dict[str, Any]:
    """The options of a run's pipeline, as the keywords its constructor takes.

    Each field of ``options_class`` takes the parsed argument of its name, or of the name ``renamed``
    maps it to, or else the value in ``values``; ``None`` (or no such argument) keeps the class's
    default. A value the options refuse is a usage error.
    """
    renamed = renamed or {}
    given = {field: getattr(args, renamed.get(field, field), None) for field in options_class.field_names()}
    try:
        options = options_class().updated(given, **values)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return {name: getattr(options, name) for name in options.field_names()}


def components(model: str, family: str) -> dict[str, str]:
    """The component specs (role → registry name) of registry pipeline ``model``, a ``family`` pipeline."""
    from ..registry import default_registry

    entry = default_registry()[model]
    if entry.family != family:
        raise HierSpeechError(
            f"--model {model} is a {entry.family} entry; pass a {family} pipeline such as "
            f"{DEFAULT_VC_MODEL if family == 'vc' else DEFAULT_TTS_MODEL}"
        )
    return dict(entry.components)


def require_registry_parts(pipeline: str, specs: Sequence[str | None]) -> None:
    """Fail in seconds, naming every missing part and what to download, before any model is loaded."""
    from ..registry import default_registry, ensure_available

    registry = default_registry()
    names = [spec for spec in specs if spec is not None and spec in registry and not Path(spec).exists()]
    ensure_available(names, registry=registry, pipeline=pipeline)


def denoiser_spec(args: argparse.Namespace, parts: dict[str, str]) -> str | None:
    """The prompt denoiser this run loads, if any (``--denoise-ratio 0`` loads none)."""
    spec = args.denoiser or parts.get("denoiser")
    if args.denoise_ratio and not spec:
        raise UsageError(
            f"--denoise-ratio {args.denoise_ratio} needs a prompt denoiser, "
            f"and --model {args.model} has none; "
            "pass --denoiser denoiser (the registry's MP-SENet) or --denoise-ratio 0"
        )
    return spec if spec and args.denoise_ratio != 0 else None


def load_as(spec: str, expected: str, option: str, runtime: Runtime) -> Any:
    """``load_model(spec)`` on ``runtime``, checked to be an ``expected`` (class name) model."""
    from ..registry import load_model

    model = load_model(spec, device=runtime.device, dtype=runtime.dtype)
    if type(model).__name__ != expected:
        raise HierSpeechError(f"{option} {spec} is a {type(model).__name__}, not a {expected}")
    return model


def speechsr(rate: int | None, checkpoint: Path | None, runtime: Runtime) -> Any:
    """The packaged SpeechSR for ``rate`` (default :data:`DEFAULT_OUTPUT_RATE`), or an official
    checkpoint at its own rate."""
    from ..models import SpeechSR

    if checkpoint is None:
        model = SpeechSR.from_packaged(rate or DEFAULT_OUTPUT_RATE)
    else:
        model = SpeechSR.from_official(checkpoint)
    if rate is not None and model.output_rate != rate:
        raise HierSpeechError(
            f"{checkpoint} is a {model.output_rate} Hz SpeechSR, but --output-rate {rate} was asked; "
            f"drop --output-rate to run it at {model.output_rate} Hz"
        )
    return model.to(runtime.device, runtime.dtype)


def synthesis_parts(args: argparse.Namespace, parts: dict[str, str], runtime: Runtime) -> dict[str, Any]:
    """The backbone, SpeechSR and prompt denoiser of a ``vc`` or ``tts`` run, loaded."""
    denoiser = denoiser_spec(args, parts)
    models = {
        "backbone": load_as(args.backbone or parts["backbone"], "HierSpeech2", "--backbone", runtime),
        "speechsr": None
        if args.output_rate == MODEL_SAMPLE_RATE
        else speechsr(args.output_rate, None, runtime),
        "denoiser": None if denoiser is None else load_as(denoiser, "MPSENet", "--denoiser", runtime),
    }
    if getattr(args, "engine", "torch") == "onnxruntime":
        from ..onnx import onnx_backbone, onnx_speechsr

        models["backbone"] = onnx_backbone(models["backbone"])
        if models["speechsr"] is not None:
            models["speechsr"] = onnx_speechsr(models["speechsr"])
    return models


def maybe_int8(args: argparse.Namespace, runtime: Runtime, *models: Any) -> None:
    """With ``--int8``, quantise ``models`` in place (they were loaded for this run only)."""
    if not args.int8:
        return
    if runtime.device != "cpu":
        raise UsageError(
            f"--int8 runs on CPU only, not --device {runtime.device}; on a GPU use --dtype bfloat16"
        )
    from ..nn.quantization import int8_inference

    int8_inference(*models)
