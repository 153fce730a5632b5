"""The ``hierspeech2`` command: super-resolution, voice conversion, text-to-speech and checkpoint management."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from . import __version__
from .errors import HierSpeechError

log = logging.getLogger("hierspeech2")

DEFAULT_VC_MODEL = "hierspeech2-vc"
DEFAULT_TTS_MODEL = "hierspeech2-tts"
DEFAULT_SR_RATE = 48000
DTYPES = ("float32", "float16", "bfloat16")
# libsndfile >= 1.1 (bundled with soundfile >= 0.12) writes MP3 and reads it back sample-exact (gapless)
OUTPUT_FORMATS = ("wav", "flac", "ogg", "mp3")
# registry.MODEL_FAMILIES + PIPELINES, repeated so that `models --family` is checked without the registry
FAMILIES = ("backbone", "ttv", "speechsr", "mms", "denoiser", "tts", "vc")
# hierspeech2.pitch.F0_METHODS, repeated so that `--help` needs no torch import (a test keeps them equal).
F0_METHOD_CHOICES = ("yaapt", "swift", "praat")
EXIT_FAILED = 1
EXIT_USAGE = 2

EPILOG_SR = """examples:
  hierspeech2 sr speech_16k.wav -o speech_48k.wav                  # packaged weights, no network
  hierspeech2 sr speech.flac -o speech_24k.flac --output-rate 24000
  hierspeech2 sr recording_2h.wav -o recording_48k.wav             # any length, memory stays flat
  hierspeech2 sr recordings/ -o recordings_48k/ --format flac      # a whole folder (recursively)
  hierspeech2 sr speech.wav -o speech_48k.wav --model speechsr-48k  # registry download, sha256-verified
"""
EPILOG_VC = """examples:
  hierspeech2 vc source.wav voice.wav -o converted.wav                # hierspeech2-vc from the Hub
  hierspeech2 vc lecture_1h.wav voice.wav -o lecture.flac --seed 0    # any length, in overlapping windows
  hierspeech2 vc --batch pairs.tsv --batch-size 4                     # rows: source<TAB>target<TAB>output
  hierspeech2 vc source.wav voice.wav -o converted.wav --denoise-ratio 0   # no prompt denoising
  hierspeech2 vc source.wav voice.wav -o converted.wav --backbone hierspeechpp_v2_ckpt.pth --mms facebook/mms-300m

Batch files: tab-separated, one job per line, an optional header line, '#' comments; relative
paths are relative to the batch file. A failing row is reported and skipped; the exit code is 1
if any row failed.
"""
EPILOG_TTS = """examples:
  hierspeech2 tts "Hello there." --prompt voice.wav -o hello.wav        # hierspeech2-tts from the Hub
  hierspeech2 tts --text-file chapter1.txt --prompt voice.wav -o chapter1.flac   # any length
  hierspeech2 tts --batch jobs.tsv --batch-size 8                       # rows: text<TAB>prompt<TAB>output
  hierspeech2 tts "Hello there." --prompt voice.wav -o hello.wav \\
      --ttv ttv_lt960_ckpt.pth --backbone hierspeechpp_v1.1_ckpt.pth

Long text is split at sentence and clause boundaries into pieces of at most --max-chars
characters, spoken with one prompt encoding and joined with short pauses.
Batch files: tab-separated, one job per line, an optional header line, '#' comments; relative
paths are relative to the batch file. A failing row is reported and skipped; the exit code is 1
if any row failed.
"""
EPILOG_MODELS = """The registry is the checkpoints.yaml packaged with hierspeech2, or the file named by
$HIERSPEECH2_REGISTRY. Downloads go to the Hugging Face cache ($HF_HOME); set HF_HUB_OFFLINE=1
to use only what is cached, HF_ENDPOINT to use a mirror.

examples:
  hierspeech2 models
  hierspeech2 models --family speechsr
"""
EPILOG_DOWNLOAD = """examples:
  hierspeech2 download hierspeech2-tts hierspeech2-vc   # then copy $HF_HOME to an offline cluster
"""
EPILOG_CONVERT = """examples:
  hierspeech2 convert hierspeechpp_v1.1_ckpt.pth hierspeech2-v1.1/   # → config.json + model.safetensors
  hierspeech2 convert speechsr-48k speechsr-48k/                      # a registry name works too
"""


class UsageError(HierSpeechError):
    """A command line that cannot work (exit code 2)."""


def _thread_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads, at least 1, got {text!r}")
    return count


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads for the run (applied by :func:`torch_threads`)."""
    parser.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        metavar="N",
        help="torch CPU threads for this run (default: torch's, which follows OMP_NUM_THREADS); "
        "when other jobs share the cores, 1 is often several times faster",
    )


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads (``None``: leave torch's), restored after: main may run in-process."""
    if threads is None:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


# ------------------------------------------------------------------------------------------ parser


def _add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (cuda when available), cpu, cuda, cuda:1 …"
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="weights and compute precision (default: float32; tts keeps TextToVec in float32)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help="items (windows, text pieces) per model call",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors (no progress bar)")
    add_threads_option(parser)


def _add_output(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("-o", "--output", type=Path, default=None, help=f"{what} (.wav, .flac, .ogg, .mp3)")


def _add_synthesis(parser: argparse.ArgumentParser, default_model: str) -> None:
    parser.add_argument(
        "--model",
        default=default_model,
        help=f"registry pipeline whose checkpoints are used (default: {default_model}; see `hierspeech2 models`)",
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
        help="weight of the denoised prompt's style, 0–1 (default: 0.8 as the official scripts when a denoiser "
        "is configured; 0 skips denoising)",
    )
    parser.add_argument(
        "--output-rate",
        type=int,
        choices=(16000, 24000, 48000),
        default=48000,
        help="16000 skips super-resolution; 24000/48000 run the packaged SpeechSR (default: 48000)",
    )
    parser.add_argument("--noise-scale", type=float, default=0.333, help="prior noise of the backbone")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="CPU only: run the dense layers of MMS and the backbone in dynamic int8 "
        "(faster on CPU, output within the sampling noise; see README 'Speed')",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``hierspeech2`` parser; given the ``command`` being run, the others' torch-importing parsers are stubs."""
    parser = argparse.ArgumentParser(prog="hierspeech2", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hierspeech2 {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add, _) in COMMANDS.items():
        if name in HEAVY_PARSERS and command not in (None, name):
            commands.add_parser(name, help=HEAVY_PARSERS[name], add_help=False)
        else:
            add(commands, name)
    for name, summary in TRAINING_COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def _formatter() -> type[argparse.HelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


def _add_sr_parser(commands, name: str) -> None:
    sr = commands.add_parser(
        name, help="speech super-resolution to 24/48 kHz", epilog=EPILOG_SR, formatter_class=_formatter()
    )
    sr.add_argument(
        "input", type=Path, help="input audio file or folder (any sample rate; resampled to 16 kHz first)"
    )
    _add_output(sr, "output audio file, or output folder when the input is a folder")
    sr.add_argument(
        "--output-rate",
        "--rate",
        dest="rate",
        type=int,
        choices=(24000, 48000),
        default=None,
        help=f"output sample rate (default: the model's, else {DEFAULT_SR_RATE})",
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
    _add_runtime(sr)


def _add_vc_parser(commands, name: str) -> None:
    vc = commands.add_parser(
        name, help="zero-shot voice conversion", epilog=EPILOG_VC, formatter_class=_formatter()
    )
    vc.add_argument(
        "source", type=Path, nargs="?", help="speech whose words and melody are kept (any length)"
    )
    vc.add_argument("target", type=Path, nargs="?", help="voice prompt (3–10 s of the target speaker)")
    vc.add_argument("--batch", type=Path, default=None, help="TSV of jobs: source, target, output")
    _add_output(vc, "output audio file")
    _add_synthesis(vc, DEFAULT_VC_MODEL)
    vc.add_argument(
        "--mms",
        default=None,
        help="semantic encoder instead of the model's: registry name, Hub id (facebook/mms-300m) "
        "or local transformers folder",
    )
    vc.add_argument(
        "--f0",
        choices=F0_METHOD_CHOICES,
        default="yaapt",
        help="F0 extractor for source and prompt: yaapt (official, default), swift (about 10x faster, MIT) "
        "or praat (as fast; GPL-3, needs `pip install hierspeech2[praat]`)",
    )
    _add_runtime(vc)


def _add_tts_parser(commands, name: str) -> None:
    tts = commands.add_parser(
        name, help="zero-shot text-to-speech", epilog=EPILOG_TTS, formatter_class=_formatter()
    )
    tts.add_argument("text", nargs="?", help="text to speak (English, any length)")
    tts.add_argument("--text-file", type=Path, default=None, help="UTF-8 text file to speak instead of TEXT")
    tts.add_argument("--batch", type=Path, default=None, help="TSV of jobs: text, prompt, output")
    tts.add_argument("--prompt", type=Path, default=None, help="voice/prosody prompt audio")
    _add_output(tts, "output audio file")
    tts.add_argument(
        "--ttv",
        default=None,
        help="TextToVec checkpoint instead of the model's: registry name, official .pth, native folder "
        "or hf://owner/repo",
    )
    tts.add_argument(
        "--noise-scale-ttv", type=float, default=0.333, help="prior noise of the text-to-vec model"
    )
    tts.add_argument("--noise-scale-w", type=float, default=1.0, help="duration noise")
    tts.add_argument("--length-scale", type=float, default=1.0, help=">1 speaks slower")
    tts.add_argument(
        "--max-chars", type=int, default=None, help="longest piece of text spoken in one go (default: 200)"
    )
    _add_synthesis(tts, DEFAULT_TTS_MODEL)
    _add_runtime(tts)


def _add_models_parser(commands, name: str) -> None:
    models = commands.add_parser(
        name,
        help="list the registry: name, family, size, cached",
        epilog=EPILOG_MODELS,
        formatter_class=_formatter(),
    )
    models.add_argument("--family", default=None, help=f"only this family ({', '.join(FAMILIES)})")
    models.add_argument("--quiet", action="store_true", help="print nothing but errors")
    add_threads_option(models)


def _add_download_parser(commands, name: str) -> None:
    download = commands.add_parser(
        name,
        help="pre-fetch and verify checkpoints for offline use",
        epilog=EPILOG_DOWNLOAD,
        formatter_class=_formatter(),
    )
    download.add_argument("names", nargs="+", metavar="NAME", help="registry names (`hierspeech2 models`)")
    download.add_argument("--revision", default=None, help="branch, tag or commit instead of the registry's")
    download.add_argument("--quiet", action="store_true", help="print nothing but errors")
    add_threads_option(download)


def _add_convert_parser(commands, name: str) -> None:
    convert = commands.add_parser(
        name,
        help="official .pth → native folder (config.json + model.safetensors)",
        epilog=EPILOG_CONVERT,
        formatter_class=_formatter(),
    )
    convert.add_argument("checkpoint", help="official .pth file, or a registry name")
    convert.add_argument("out_dir", type=Path, help="folder to write (created; existing files replaced)")
    convert.add_argument(
        "--family",
        choices=("backbone", "ttv", "speechsr", "denoiser"),
        default=None,
        help="model family (default: recognised from the checkpoint's keys)",
    )
    convert.add_argument(
        "--config",
        default=None,
        help="constructor arguments as JSON, for non-released configurations, e.g. '{\"upsample_ratio\": 1.5}'",
    )
    convert.add_argument("--quiet", action="store_true", help="print nothing but errors")
    add_threads_option(convert)


# ------------------------------------------------------------------------------------- shared parts


@dataclass(frozen=True)
class _Runtime:
    device: str
    dtype: object  # torch.dtype (torch is imported lazily)


def _runtime(args: argparse.Namespace) -> _Runtime:
    import torch

    spec = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    spec = "cpu" if spec == "auto" else spec
    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise UsageError(
            f"--device {args.device!r} is not a torch device ({error}); use cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HierSpeechError(
            f"--device {args.device}: CUDA is not available on this machine; use --device cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise HierSpeechError(
            f"--device {args.device}: MPS is not available on this machine; use --device cpu"
        )
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu" and dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        log.warning(
            "this CPU has no native bfloat16 (AVX-512 BF16 or AMX): --dtype bfloat16 runs emulated, several "
            "times slower than float32; on CPU prefer float32 or --int8"
        )
    return _Runtime(str(device), dtype)


_FORMAT_ALIASES = {"AIF": "AIFF", "OGA": "OGG", "OPUS": "OGG"}  # as hierspeech2.audio.save_audio reads them


def _check_output(path: Path) -> None:
    """An output extension soundfile cannot write fails now, not after the models have run."""
    import soundfile as sf

    extension = path.suffix.lstrip(".").upper()
    if _FORMAT_ALIASES.get(extension, extension) not in sf.available_formats():
        usable = [f".{name}" for name in OUTPUT_FORMATS if name.upper() in sf.available_formats()]
        raise HierSpeechError(
            f"cannot tell the audio format from the extension of {path}; use {', '.join(usable[:-1])} or {usable[-1]}"
        )


def _require_audio(path: Path, what: str) -> None:
    """Fail before any model is loaded when an input file is missing or not audio."""
    import soundfile as sf

    if not path.exists():
        raise HierSpeechError(f"{what} not found: {path}")
    if path.is_dir():
        raise HierSpeechError(f"{what} {path} is a folder, not an audio file")
    try:
        sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        raise HierSpeechError(f"cannot read {what} {path} as audio ({_one_line(error)})") from None


def _speechsr(rate: int | None, checkpoint: Path | None, runtime: _Runtime):
    """The packaged SpeechSR for ``rate`` (default 48 kHz), or an official checkpoint at its own rate."""
    from .models import SpeechSR

    if checkpoint is None:
        model = SpeechSR.from_packaged(rate or DEFAULT_SR_RATE)
    else:
        model = SpeechSR.from_official(checkpoint)
    if rate is not None and model.output_rate != rate:
        raise HierSpeechError(
            f"{checkpoint} is a {model.output_rate} Hz SpeechSR, but --output-rate {rate} was asked; "
            f"drop --output-rate to run it at {model.output_rate} Hz"
        )
    return model.to(runtime.device, runtime.dtype)


def _load(spec: str, expected: str, option: str, runtime: _Runtime):
    """``load_model(spec)``, checked to be a ``expected`` (class name) model."""
    from .registry import load_model

    model = load_model(spec, device=runtime.device, dtype=runtime.dtype)
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


def _is_hub_id(spec: str) -> bool:
    """A transformers Hub id (``facebook/mms-300m``): not a registry name, hf:// URI or local path."""
    from .registry import default_registry

    return spec not in default_registry() and not spec.startswith("hf://") and not Path(spec).exists()


def _semantic_encoder(spec: str, runtime: _Runtime):
    from .ssl import SemanticEncoder

    encoder = (
        SemanticEncoder.from_pretrained(spec)
        if _is_hub_id(spec)
        else _load(spec, "SemanticEncoder", "--mms", runtime)
    )
    return encoder.to(runtime.device, runtime.dtype)


def _require_registry_parts(pipeline: str, specs: Sequence[str | None]) -> None:
    """Fail in seconds, naming every missing part and what to download, before any model is loaded."""
    from .registry import default_registry, ensure_available

    registry = default_registry()
    names = [spec for spec in specs if spec is not None and spec in registry and not Path(spec).exists()]
    ensure_available(names, registry=registry, pipeline=pipeline)


def _denoiser_spec(args: argparse.Namespace, components: dict[str, str]) -> str | None:
    """The prompt denoiser this run loads, if any (``--denoise-ratio 0`` loads none)."""
    spec = args.denoiser or components.get("denoiser")
    if args.denoise_ratio and not spec:
        raise UsageError(
            f"--denoise-ratio {args.denoise_ratio} needs a prompt denoiser, and --model {args.model} has none; "
            "pass --denoiser denoiser (the registry's MP-SENet) or --denoise-ratio 0"
        )
    return spec if spec and args.denoise_ratio != 0 else None


def _check_synthesis_usage(args: argparse.Namespace) -> None:
    _check_int8_usage(args)
    if args.denoise_ratio is not None and not 0.0 <= args.denoise_ratio <= 1.0:
        raise UsageError(f"--denoise-ratio must be between 0 and 1, got {args.denoise_ratio}")


def _synthesis_parts(args: argparse.Namespace, components: dict[str, str], runtime: _Runtime) -> dict:
    denoiser_spec = _denoiser_spec(args, components)
    backbone = _load(args.backbone or components["backbone"], "HierSpeech2", "--backbone", runtime)
    speechsr = None if args.output_rate == 16000 else _speechsr(args.output_rate, None, runtime)
    denoiser = None if denoiser_spec is None else _load(denoiser_spec, "MPSENet", "--denoiser", runtime)
    return {"backbone": backbone, "speechsr": speechsr, "denoiser": denoiser}


def _check_int8_usage(args: argparse.Namespace) -> None:
    if getattr(args, "int8", False) and args.dtype != "float32":
        raise UsageError(f"--int8 quantises float32 models; drop --dtype {args.dtype}")


def _maybe_int8(args: argparse.Namespace, runtime: _Runtime, *models) -> None:
    """With ``--int8``, quantise ``models`` in place (they were loaded for this run only)."""
    if not args.int8:
        return
    if runtime.device != "cpu":
        raise UsageError(
            f"--int8 runs on CPU only, not --device {runtime.device}; on a GPU use --dtype bfloat16"
        )
    from .nn.quantization import int8_inference

    int8_inference(*models)


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


@dataclass(frozen=True)
class _Row:
    line: int
    cells: tuple[str, ...]


def _read_batch(path: Path, columns: tuple[str, ...]) -> list[_Row | HierSpeechError]:
    """Rows of a tab-separated batch file; a malformed row becomes an error for that row only."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HierSpeechError(f"batch file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise HierSpeechError(f"cannot read batch file {path}: {error}") from None
    rows: list[_Row | HierSpeechError] = []
    lines = [
        (n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")
    ]
    for number, cells in (
        (n, next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))) for n, line in lines
    ):
        cells = [cell.strip() for cell in cells]
        if not rows and [c.lower() for c in cells] == list(columns):
            continue  # header
        if len(cells) != len(columns) or not all(cells):
            rows.append(
                HierSpeechError(
                    f"{path.name} line {number}: expected {len(columns)} non-empty tab-separated columns "
                    f"({', '.join(columns)}), got {len(cells)}"
                )
            )
            continue
        rows.append(_Row(number, tuple(cells)))
    if not rows:
        raise HierSpeechError(f"batch file {path} has no jobs (expected rows of: {', '.join(columns)})")
    return rows


def _relative_to(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _report(command: str, labels: list[str], results: Sequence, early: dict[int, BaseException]) -> None:
    """One line per failed item, a summary, and :class:`_BatchFailed` if anything failed.

    ``results`` are those of the items not in ``early`` (failed before the run), in order.
    """
    failed = 0
    remaining = iter(results)
    for index, label in enumerate(labels):
        error = early.get(index)
        if error is None:
            result = next(remaining)
            if result.ok:
                log.info("wrote %s", result.path)
                continue
            error = result.error
        failed += 1
        print(f"hierspeech2 {command}: {label}: error: {_one_line(error)}", file=sys.stderr)
    if failed:
        raise _BatchFailed(
            f"{failed} of {len(labels)} items failed (reported above); the others were written"
        )
    log.info("all %d items written", len(labels))


class _BatchFailed(HierSpeechError):
    """Some items of a batch failed (each already reported)."""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ------------------------------------------------------------------------------------------ commands


def _run_sr(args: argparse.Namespace) -> None:
    if args.output is None:
        raise UsageError("sr needs -o/--output (a file, or a folder when the input is a folder)")
    is_folder = args.input.is_dir()
    if not is_folder:
        _require_audio(args.input, "input audio")
        _check_output(args.output)
    elif args.output.exists() and not args.output.is_dir():
        raise UsageError(f"the input is a folder, so -o must be a folder too, but {args.output} is a file")
    elif not args.output.exists() and _is_audio_name(args.output):
        raise UsageError(
            f"the input is a folder, so -o must be a folder too, not the audio file name {args.output}; "
            f"write -o {args.output.with_suffix('')}/ (and --format {args.output.suffix.lstrip('.').lower()})"
        )
    if args.model is not None:
        from .registry import default_registry, ensure_available

        if args.model in default_registry() and not Path(args.model).exists():
            ensure_available([args.model])  # before torch: fail in seconds without the Hub
    runtime = _runtime(args)
    from .pipelines import SuperResolution  # after the checks that need no torch

    if args.model is not None:
        model = _load(args.model, "SpeechSR", "--model", runtime)
        if args.rate is not None and args.rate != model.output_rate:
            raise HierSpeechError(
                f"--model {args.model} outputs {model.output_rate} Hz, but --rate {args.rate} was asked"
            )
    else:
        model = _speechsr(args.rate, args.checkpoint, runtime)
    pipeline = SuperResolution(model, batch_size=args.batch_size or 1)
    if not is_folder:
        path = pipeline.process_file(args.input, args.output, progress=_progress(args))
        log.info("wrote %s (%d Hz)", path, pipeline.output_rate)
        return
    inputs = _audio_files(args.input)
    outputs = [args.output / path.relative_to(args.input).with_suffix(f".{args.format}") for path in inputs]
    results = pipeline.process_many(list(zip(inputs, outputs)), progress=_progress(args))
    _report("sr", [str(path) for path in inputs], results, {})


def _is_audio_name(path: Path) -> bool:
    import soundfile as sf

    extension = path.suffix.lstrip(".").upper()
    return _FORMAT_ALIASES.get(extension, extension) in sf.available_formats()


def _audio_files(folder: Path) -> list[Path]:
    import soundfile as sf

    extensions = {f".{name.lower()}" for name in sf.available_formats()} | {".oga", ".opus"}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise HierSpeechError(
            f"no audio files in {folder} (looked for {', '.join(sorted(extensions)[:8])} …)"
        )
    return files


def _run_vc(args: argparse.Namespace) -> None:
    if args.batch is None and (args.source is None or args.target is None or args.output is None):
        raise UsageError("vc needs SOURCE TARGET -o OUTPUT, or --batch pairs.tsv")
    if args.batch is not None and (args.source is not None or args.output is not None):
        raise UsageError(
            "--batch takes its sources, targets and outputs from the file; drop SOURCE/TARGET/-o"
        )
    _check_synthesis_usage(args)
    rows = _read_batch(args.batch, ("source", "target", "output")) if args.batch else None
    if rows is None:
        _require_audio(args.source, "source audio")
        _require_audio(args.target, "target (voice prompt) audio")
        _check_output(args.output)
    components = _components(args.model, "vc")
    mms = args.mms or components["semantic_encoder"]
    _require_registry_parts(
        args.model, [args.backbone or components["backbone"], mms, _denoiser_spec(args, components)]
    )
    if _is_hub_id(mms):
        from .ssl import ensure_downloadable

        ensure_downloadable(mms)  # --mms facebook/mms-300m: cached, or the Hub answers, before any loading
    runtime = _runtime(args)
    from .pipelines import VoiceConversion  # after the checks that need no torch

    parts = _synthesis_parts(args, components, runtime)
    encoder = _semantic_encoder(mms, runtime)
    _maybe_int8(args, runtime, encoder, parts["backbone"])
    pipeline = VoiceConversion(
        semantic_encoder=encoder,
        output_rate=args.output_rate,
        noise_scale=args.noise_scale,
        denoise_ratio=args.denoise_ratio,
        f0_extractor=args.f0,
        batch_size=args.batch_size or (4 if rows else 1),
        **parts,
    )
    if rows is None:
        path = pipeline.convert_file(
            args.source, args.target, args.output, seed=args.seed, progress=_progress(args)
        )
        log.info("wrote %s (%d Hz)", path, pipeline.output_rate)
        return
    jobs, labels, early = _batch_jobs(args.batch, rows, path_columns=(0, 1, 2))
    results = pipeline.convert_many(jobs, seed=args.seed, progress=_progress(args))
    _report("vc", labels, results, early)


def _batch_jobs(
    batch: Path, rows: list, path_columns: tuple[int, ...]
) -> tuple[list[tuple], list[str], dict[int, HierSpeechError]]:
    """Jobs from a batch file's rows (``path_columns`` resolved against its folder), their labels, early errors."""
    jobs, labels, early = [], [], {}
    for index, row in enumerate(rows):
        labels.append(f"{batch.name} line {row.line}" if isinstance(row, _Row) else f"{batch.name}")
        if isinstance(row, HierSpeechError):
            early[index] = row
            continue
        jobs.append(
            tuple(
                _relative_to(batch.parent, cell) if column in path_columns else cell
                for column, cell in enumerate(row.cells)
            )
        )
    return jobs, labels, early


def _run_tts(args: argparse.Namespace) -> None:
    given = [
        name
        for name, value in (("TEXT", args.text), ("--text-file", args.text_file), ("--batch", args.batch))
        if value is not None
    ]
    if len(given) != 1:
        raise UsageError(
            f"tts needs exactly one of TEXT, --text-file or --batch (got {', '.join(given) or 'none'})"
        )
    if args.batch is None and (args.prompt is None or args.output is None):
        raise UsageError("tts needs --prompt and -o/--output (or --batch jobs.tsv)")
    if args.batch is not None and (args.prompt is not None or args.output is not None):
        raise UsageError("--batch takes its prompts and outputs from the file; drop --prompt/-o")
    _check_synthesis_usage(args)
    text = args.text
    if args.text_file is not None:
        text = _read_text(args.text_file)
    if text is not None and not text.strip():
        raise HierSpeechError("the text is empty; give at least one word to speak")
    rows = _read_batch(args.batch, ("text", "prompt", "output")) if args.batch else None
    if rows is None:
        _require_audio(args.prompt, "voice prompt")
        _check_output(args.output)
    components = _components(args.model, "tts")
    _require_registry_parts(
        args.model, [args.ttv or components["ttv"], args.backbone or components["backbone"],
                     _denoiser_spec(args, components)]
    )  # fmt: skip
    runtime = _runtime(args)
    import torch

    from .pipelines import TextToSpeech  # after the checks that need no torch

    parts = _synthesis_parts(args, components, runtime)
    # TextToVec stays float32 under --dtype/--int8: in lower precision its durations round
    # differently, which moves the output about as far as another sampler seed (README "Speed").
    ttv = _load(args.ttv or components["ttv"], "TextToVec", "--ttv", replace(runtime, dtype=torch.float32))
    _maybe_int8(args, runtime, parts["backbone"])
    options = {} if args.max_chars is None else {"max_piece_chars": args.max_chars}
    pipeline = TextToSpeech(
        ttv,
        output_rate=args.output_rate,
        noise_scale_ttv=args.noise_scale_ttv,
        noise_scale_vc=args.noise_scale,
        noise_scale_w=args.noise_scale_w,
        length_scale=args.length_scale,
        denoise_ratio=args.denoise_ratio,
        batch_size=args.batch_size or 8,
        **options,
        **parts,
    )
    if rows is None:
        path = pipeline.synthesize_to_file(
            text, args.prompt, args.output, seed=args.seed, progress=_progress(args)
        )
        log.info("wrote %s (%d Hz)", path, pipeline.output_rate)
        return
    jobs, labels, early = _batch_jobs(args.batch, rows, path_columns=(1, 2))
    results = pipeline.synthesize_many(jobs, seed=args.seed, progress=_progress(args))
    _report("tts", labels, results, early)


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
    from .registry import default_registry, download, ensure_available

    registry = default_registry()
    for name in args.names:
        registry[name]  # unknown names fail before anything is downloaded
    ensure_available(args.names, registry=registry, revision=args.revision)  # one message for all, in seconds
    for name in args.names:
        for path in download(name, revision=args.revision, registry=registry):
            log.info("%s: %s", name, path)


def _run_convert(args: argparse.Namespace) -> None:
    from .checkpoint import load_official_file, official_card_source
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
    model.save_pretrained(args.out_dir, model_card_kwargs={"source": official_card_source(path)})
    log.info("wrote %s (%s: config.json + model.safetensors)", args.out_dir, type(model).__name__)


Runner = Callable[[argparse.Namespace], None]
# name → (adds the sub-parser, runs it). Training commands (preprocess, fit, export) plug in here.
COMMANDS: dict[str, tuple[Callable[..., None], Runner]] = {
    "sr": (_add_sr_parser, _run_sr),
    "vc": (_add_vc_parser, _run_vc),
    "tts": (_add_tts_parser, _run_tts),
    "models": (_add_models_parser, _run_models),
    "download": (_add_download_parser, _run_download),
    "convert": (_add_convert_parser, _run_convert),
    "preprocess": (
        lambda commands, name: _add_preprocess_parser(commands),
        lambda args: _run_preprocess(args),
    ),
}
# Commands whose parser imports torch (seconds): built only when that command runs.
HEAVY_PARSERS = {"preprocess": "corpus → training feature cache (resumable, parallel)"}
# Commands with parsers of their own (LightningCLI, the exporter): everything after the name goes to them.
TRAINING_COMMANDS = {
    "fit": "train a model from a recipe: hierspeech2 fit -c recipes/ttv.yaml",
    "validate": "validate a model from a recipe and a checkpoint",
    "test": "test a model from a recipe and a checkpoint",
    "predict": "predict with a model from a recipe and a checkpoint",
    "export": "Lightning checkpoint → native model folder: hierspeech2 export CKPT OUT_DIR",
}


def _add_preprocess_parser(commands) -> None:
    from .data.preprocess import add_preprocess_parser

    add_preprocess_parser(commands)


def _run_preprocess(args: argparse.Namespace) -> None:
    from .data.preprocess import run_preprocess

    status = run_preprocess(args)
    if status:
        raise _BatchFailed(f"preprocessing finished with exit status {status}; see the messages above")


def _run_training_command(argv: list[str]) -> int:
    """Hand ``fit|validate|test|predict|export …`` to their own parsers; returns the exit code."""
    if argv[0] == "export":
        from .tasks.export import main as export_main

        export_main(argv[1:])
    else:
        from .training_cli import main as training_main

        training_main(argv)
    return 0


# Errors a user can cause or fix (bad files, text, names, devices, memory): one line, exit code 1.
USER_ERRORS = (HierSpeechError, FileNotFoundError, ValueError, OSError, RuntimeError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hierspeech2`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TRAINING_COMMANDS:
        return _run_training_command(argv)
    parser = build_parser(argv[0] if argv else "")
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(level=logging.ERROR if quiet else logging.INFO, format="%(message)s")
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    with _quiet_libraries(quiet), torch_threads(getattr(args, "threads", None)):
        return _dispatch(args)


@contextlib.contextmanager
def _quiet_libraries(quiet: bool) -> Iterator[None]:
    """Silence huggingface_hub / transformers progress bars under --quiet (restored after: main may run in-process)."""
    settings = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"} if quiet else {}
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update({name: value for name, value in settings.items() if saved[name] is None})
    # huggingface_hub logs through a handler of its own; propagating to ours too printed each line twice
    hub_logger = logging.getLogger("huggingface_hub")
    propagate, hub_logger.propagate = hub_logger.propagate, False
    try:
        yield
    finally:
        hub_logger.propagate = propagate
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        COMMANDS[args.command][1](args)
    except UsageError as error:
        print(f"hierspeech2 {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except _BatchFailed as error:
        print(f"hierspeech2 {args.command}: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    except USER_ERRORS as error:
        log.debug("traceback", exc_info=True)
        print(f"hierspeech2 {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"hierspeech2 {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
