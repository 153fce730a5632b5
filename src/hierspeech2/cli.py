"""The ``hierspeech2`` command: super-resolution, voice conversion, text-to-speech and checkpoint management."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import HierSpeechError

log = logging.getLogger("hierspeech2")

DEFAULT_VC_MODEL = "hierspeech2-vc"
DEFAULT_TTS_MODEL = "hierspeech2-tts"
DEFAULT_SR_RATE = 48000

EPILOG_SR = """examples:
  hierspeech2 sr speech_16k.wav -o speech_48k.wav                  # packaged weights, no network
  hierspeech2 sr speech.flac -o speech_24k.wav --rate 24000
  hierspeech2 sr speech.wav -o speech_48k.wav --model speechsr-48k  # registry download, sha256-verified
"""
EPILOG_VC = """examples:
  hierspeech2 vc source.wav voice.wav -o converted.wav                # hierspeech2-vc from the Hub
  hierspeech2 vc source.wav voice.wav -o converted.wav --backbone hierspeechpp_v2_ckpt.pth --mms facebook/mms-300m
"""
EPILOG_TTS = """examples:
  hierspeech2 tts "Hello there." --prompt voice.wav -o hello.wav        # hierspeech2-tts from the Hub
  hierspeech2 tts "Hello there." --prompt voice.wav -o hello.wav \\
      --ttv ttv_lt960_ckpt.pth --backbone hierspeechpp_v1.1_ckpt.pth
"""
EPILOG_MODELS = """The registry is the checkpoints.yaml packaged with hierspeech2, or the file named by
$HIERSPEECH2_REGISTRY. Downloads go to the Hugging Face cache ($HF_HOME); set HF_HUB_OFFLINE=1
to use only what is cached, HF_ENDPOINT to use a mirror."""
EPILOG_DOWNLOAD = """examples:
  hierspeech2 download hierspeech2-tts hierspeech2-vc   # then copy $HF_HOME to an offline cluster
"""
EPILOG_CONVERT = """examples:
  hierspeech2 convert hierspeechpp_v1.1_ckpt.pth hierspeech2-v1.1/   # → config.json + model.safetensors
  hierspeech2 convert speechsr-48k speechsr-48k/                      # a registry name works too
"""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", required=True, type=Path, help="output audio file (.wav, .flac, .ogg)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _add_synthesis(parser: argparse.ArgumentParser, default_model: str) -> None:
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
        "--output-rate",
        type=int,
        choices=(16000, 24000, 48000),
        default=48000,
        help="16000 skips super-resolution; 24000/48000 run the packaged SpeechSR",
    )
    parser.add_argument("--noise-scale", type=float, default=0.333, help="prior noise of the backbone")


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hierspeech2", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hierspeech2 {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    sr = commands.add_parser(
        "sr", help="speech super-resolution to 24/48 kHz", epilog=EPILOG_SR, formatter_class=raw
    )
    sr.add_argument("input", type=Path, help="input audio file (any sample rate; resampled to 16 kHz first)")
    sr.add_argument(
        "--rate",
        type=int,
        choices=(24000, 48000),
        default=None,
        help=f"output sample rate (default: the model's, else {DEFAULT_SR_RATE})",
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
    _add_common(sr)

    vc = commands.add_parser("vc", help="zero-shot voice conversion", epilog=EPILOG_VC, formatter_class=raw)
    vc.add_argument("source", type=Path, help="speech whose words and melody are kept")
    vc.add_argument("target", type=Path, help="voice prompt (3–10 s of the target speaker)")
    _add_synthesis(vc, DEFAULT_VC_MODEL)
    vc.add_argument(
        "--mms",
        default=None,
        help="semantic encoder instead of the model's: registry name, Hub id (facebook/mms-300m) "
        "or local transformers folder",
    )
    _add_common(vc)

    tts = commands.add_parser("tts", help="zero-shot text-to-speech", epilog=EPILOG_TTS, formatter_class=raw)
    tts.add_argument("text", help="text to speak (English)")
    tts.add_argument("--prompt", required=True, type=Path, help="voice/prosody prompt audio")
    tts.add_argument(
        "--ttv",
        default=None,
        help="TextToVec checkpoint instead of the model's: registry name, official .pth, native folder "
        "or hf://owner/repo",
    )
    tts.add_argument("--noise-scale-ttv", type=float, default=0.333)
    tts.add_argument("--noise-scale-w", type=float, default=1.0, help="duration noise")
    tts.add_argument("--length-scale", type=float, default=1.0, help=">1 speaks slower")
    _add_synthesis(tts, DEFAULT_TTS_MODEL)
    _add_common(tts)

    models = commands.add_parser(
        "models",
        help="list the registry: name, family, size, cached",
        epilog=EPILOG_MODELS,
        formatter_class=raw,
    )
    models.add_argument(
        "--family", default=None, help="only this family (backbone, ttv, speechsr, mms, tts, vc)"
    )
    _add_quiet(models)

    download = commands.add_parser(
        "download",
        help="pre-fetch and verify checkpoints for offline use",
        epilog=EPILOG_DOWNLOAD,
        formatter_class=raw,
    )
    download.add_argument("names", nargs="+", metavar="NAME", help="registry names (`hierspeech2 models`)")
    download.add_argument("--revision", default=None, help="branch, tag or commit instead of the registry's")
    _add_quiet(download)

    convert = commands.add_parser(
        "convert",
        help="official .pth → native folder (config.json + model.safetensors)",
        epilog=EPILOG_CONVERT,
        formatter_class=raw,
    )
    convert.add_argument("checkpoint", help="official .pth file, or a registry name")
    convert.add_argument("out_dir", type=Path, help="folder to write (created; existing files replaced)")
    convert.add_argument(
        "--family",
        choices=("backbone", "ttv", "speechsr"),
        default=None,
        help="model family (default: recognised from the checkpoint's keys)",
    )
    convert.add_argument(
        "--config",
        default=None,
        help="constructor arguments as JSON, for non-released configurations, "
        "e.g. '{\"upsample_ratio\": 1.5}'",
    )
    _add_quiet(convert)
    return parser


def _speechsr(rate: int, checkpoint: Path | None, device: str):
    from .models import SpeechSR

    model = SpeechSR.from_packaged(rate) if checkpoint is None else SpeechSR.from_official(checkpoint)
    if model.output_rate != rate:
        raise HierSpeechError(
            f"{checkpoint} is a {model.output_rate} Hz SpeechSR, but --rate {rate} was asked"
        )
    return model.to(device)


def _load(spec: str, expected: str, option: str, device: str):
    """``load_model(spec)``, checked to be a ``expected`` (class name) model."""
    from .registry import load_model

    model = load_model(spec, device=device)
    if type(model).__name__ != expected:
        raise HierSpeechError(f"{option} {spec} is a {type(model).__name__}, not a {expected}")
    return model


def _components(model: str, family: str) -> dict[str, str]:
    from .registry import default_registry

    entry = default_registry()[model]
    if entry.family != family:
        raise HierSpeechError(
            f"--model {model} is a {entry.family} entry; pass a {family} pipeline such as "
            f"{DEFAULT_VC_MODEL if family == 'vc' else DEFAULT_TTS_MODEL}"
        )
    return dict(entry.components)


def _semantic_encoder(spec: str, device: str):
    from .registry import default_registry
    from .ssl import SemanticEncoder

    is_hub_id = spec not in default_registry() and not spec.startswith("hf://") and not Path(spec).exists()
    encoder = (
        SemanticEncoder.from_pretrained(spec)
        if is_hub_id
        else _load(spec, "SemanticEncoder", "--mms", device)
    )
    return encoder.to(device)


def _run_sr(args: argparse.Namespace) -> None:
    from .audio import save_audio
    from .pipelines import SuperResolution

    if args.model is not None:
        model = _load(args.model, "SpeechSR", "--model", args.device)
        if args.rate is not None and args.rate != model.output_rate:
            raise HierSpeechError(
                f"--model {args.model} outputs {model.output_rate} Hz, but --rate {args.rate} was asked"
            )
    else:
        model = _speechsr(args.rate or DEFAULT_SR_RATE, args.checkpoint, args.device)
    wav, rate = SuperResolution(model)(args.input)
    save_audio(args.output, wav, rate)
    log.info("wrote %s (%.2f s at %d Hz)", args.output, wav.numel() / rate, rate)


def _backbone_and_speechsr(args: argparse.Namespace, components: dict[str, str]):
    backbone = _load(args.backbone or components["backbone"], "HierSpeech2", "--backbone", args.device)
    speechsr = None if args.output_rate == 16000 else _speechsr(args.output_rate, None, args.device)
    return backbone, speechsr


def _run_vc(args: argparse.Namespace) -> None:
    from .audio import save_audio
    from .pipelines import VoiceConversion

    components = _components(args.model, "vc")
    backbone, speechsr = _backbone_and_speechsr(args, components)
    encoder = _semantic_encoder(args.mms or components["semantic_encoder"], args.device)
    pipeline = VoiceConversion(
        backbone, encoder, speechsr, output_rate=args.output_rate, noise_scale=args.noise_scale
    )
    wav, rate = pipeline(args.source, args.target, seed=args.seed)
    save_audio(args.output, wav, rate)
    log.info("wrote %s (%.2f s at %d Hz)", args.output, wav.numel() / rate, rate)


def _run_tts(args: argparse.Namespace) -> None:
    from .audio import save_audio
    from .pipelines import TextToSpeech

    components = _components(args.model, "tts")
    backbone, speechsr = _backbone_and_speechsr(args, components)
    ttv = _load(args.ttv or components["ttv"], "TextToVec", "--ttv", args.device)
    pipeline = TextToSpeech(
        ttv,
        backbone,
        speechsr,
        output_rate=args.output_rate,
        noise_scale_ttv=args.noise_scale_ttv,
        noise_scale_vc=args.noise_scale,
        noise_scale_w=args.noise_scale_w,
        length_scale=args.length_scale,
    )
    wav, rate = pipeline(args.text, args.prompt, seed=args.seed)
    save_audio(args.output, wav, rate)
    log.info("wrote %s (%.2f s at %d Hz)", args.output, wav.numel() / rate, rate)


def _human_size(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "?"


def _run_models(args: argparse.Namespace) -> None:
    from .registry import default_registry, is_cached

    registry = default_registry()
    rows = [("NAME", "FAMILY", "SIZE", "CACHED", "DESCRIPTION")]
    for name in registry.names(args.family):
        entry = registry[name]
        parts = [registry[part] for part in entry.components.values()] if entry.is_pipeline else [entry]
        sizes = [part.size for part in parts]
        size = None if None in sizes else sum(sizes)
        rows.append(
            (
                name,
                entry.family,
                _human_size(size),
                "yes" if is_cached(name, registry) else "no",
                entry.description,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4])


def _run_download(args: argparse.Namespace) -> None:
    from .registry import default_registry, download

    registry = default_registry()
    for name in args.names:
        registry[name]  # unknown names fail before anything is downloaded
    for name in args.names:
        for path in download(name, revision=args.revision, registry=registry):
            log.info("%s: %s", name, path)


def _run_convert(args: argparse.Namespace) -> None:
    from .checkpoint import load_official_file
    from .registry import default_registry, download, family_class, official_family

    config = None
    if args.config is not None:
        try:
            config = json.loads(args.config)
        except ValueError as error:
            raise HierSpeechError(f"--config is not valid JSON: {error}") from None
        if not isinstance(config, dict):
            raise HierSpeechError("--config must be a JSON object of constructor arguments")
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
    model.save_pretrained(args.out_dir)
    log.info("wrote %s (%s: config.json + model.safetensors)", args.out_dir, type(model).__name__)


COMMANDS = {
    "sr": _run_sr,
    "vc": _run_vc,
    "tts": _run_tts,
    "models": _run_models,
    "download": _run_download,
    "convert": _run_convert,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hierspeech2`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(message)s")
    try:
        COMMANDS[args.command](args)
    except (HierSpeechError, FileNotFoundError, ValueError) as error:
        message = " ".join(str(error).split())  # one line, whatever the message holds
        print(f"hierspeech2 {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
