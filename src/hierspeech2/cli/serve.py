"""``hierspeech2 serve``: the HTTP API (OpenAI's speech endpoint, voices, conversion, super-resolution)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from ..options import ServerOptions
from . import common, synthesis

__all__ = ["SUMMARY", "add_parser", "build_models", "run"]

log = logging.getLogger("hierspeech2")

SUMMARY = "HTTP API: OpenAI-compatible speech, voices, conversion, super-resolution"
EPILOG = """examples:
  hierspeech2 serve                                   # super-resolution only (packaged weights, offline)
  hierspeech2 serve --tts --vc --port 8000            # + hierspeech2-tts and hierspeech2-vc from the Hub
  hierspeech2 serve --tts --ttv ./ttv --backbone ./backbone --voices ./voices   # local models
  HIERSPEECH2_API_KEY=secret hierspeech2 serve --host 0.0.0.0 --tts

then: curl -s localhost:8000/v1/audio/speech -H 'content-type: application/json' \\
        -d '{"input": "Hello there.", "voice": "narrator", "response_format": "wav"}' -o hello.wav
See README "Serving" for the endpoints, voices, limits and deployment.
"""


LIMITS = {
    "max_text_chars": "longest text of a speech request",
    "max_upload_bytes": "largest uploaded file",
    "max_audio_seconds": "longest uploaded audio",
    "max_prompt_seconds": "voice prompts are cut to this length",
    "queue_size": "requests waiting at once; more get 429 + Retry-After",
    "request_timeout": "seconds before a request is answered 503",
    "voice_cache_size": "encoded voice prompts kept",
    "max_voices": "uploaded voices kept",
    "first_piece_chars": "streaming TTS cuts its first piece to about this many characters",
    "first_block_seconds": "streaming TTS renders this much audio in its first backbone call",
    "sr_batch_size": "super-resolution requests run together",
}
"""Help of the :class:`~hierspeech2.options.ServerOptions` flags (a test keeps it complete)."""


def add_parser(commands: Any, name: str) -> None:
    """Add the ``serve`` parser to ``commands`` (argparse's subparsers)."""
    serve = common.add_command(commands, name, SUMMARY, EPILOG)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument(
        "--api-key",
        default=os.environ.get("HIERSPEECH2_API_KEY"),
        help="require 'Authorization: Bearer KEY' on /v1 (default: $HIERSPEECH2_API_KEY; none)",
    )
    serve.add_argument("--tts", action="store_true", help="serve text-to-speech (POST /v1/audio/speech)")
    serve.add_argument("--vc", action="store_true", help="serve voice conversion (POST /v1/audio/conversion)")
    serve.add_argument(
        "--tts-model",
        default=synthesis.DEFAULT_TTS_MODEL,
        help="registry TTS pipeline (default: %(default)s)",
    )
    serve.add_argument(
        "--vc-model", default=synthesis.DEFAULT_VC_MODEL, help="registry VC pipeline (default: %(default)s)"
    )
    serve.add_argument("--ttv", default=None, help="TextToVec instead of the TTS pipeline's")
    serve.add_argument("--backbone", default=None, help="HierSpeech2 backbone instead of the pipelines'")
    serve.add_argument("--mms", default=None, help="semantic encoder (MMS) instead of the VC pipeline's")
    serve.add_argument("--denoiser", default=None, help="prompt denoiser instead of the pipelines'")
    serve.add_argument("--denoise-ratio", type=float, default=None, help="0 skips prompt denoising")
    serve.add_argument(
        "--output-rate",
        type=int,
        choices=(16_000, 24_000, 48_000),
        default=48_000,
        help="rate of TTS and VC audio",
    )
    serve.add_argument("--ui", action="store_true", help="also serve the web demo (Gradio) at /ui")
    serve.add_argument(
        "--voices", type=Path, default=None, help="folder of built-in voice prompts (id = file name)"
    )
    serve.add_argument(
        "--voice-store", type=Path, default=None, help="keep uploaded voices here across restarts"
    )
    serve.add_argument(
        "--device", default="auto", help="torch device (default: cuda when available, else cpu)"
    )
    serve.add_argument("--dtype", choices=common.DTYPES, default="float32", help="weights precision")
    serve.add_argument(
        "--int8", action="store_true", help="CPU only: int8 dense layers of MMS and the backbone"
    )
    for field, what in LIMITS.items():
        default = ServerOptions.default(field)
        serve.add_argument(
            "--" + field.replace("_", "-"),
            type=type(default),
            default=default,
            help=f"{what} (default: {default})",
        )
    common.add_quiet_and_threads(serve)


def build_models(args: argparse.Namespace) -> Any:
    """The pipelines ``args`` ask for, loaded: SpeechSR always, TTS with ``--tts``, VC with ``--vc``."""
    from ..models import SpeechSR
    from ..pipelines import SuperResolution, TextToSpeech, VoiceConversion
    from ..serving import ServedModels
    from .vc import _semantic_encoder

    runtime = common.resolve_runtime(args)
    served = ServedModels(
        super_resolution={
            rate: SuperResolution(SpeechSR.from_packaged(rate).to(runtime.device))
            for rate in (24_000, 48_000)
        },
        names={
            "speechsr-24k": "SpeechSR 16 → 24 kHz (packaged)",
            "speechsr-48k": "SpeechSR 16 → 48 kHz (packaged)",
        },
    )
    for enabled, family, model in ((args.tts, "tts", args.tts_model), (args.vc, "vc", args.vc_model)):
        if not enabled:
            continue
        parts = synthesis.components(model, family)
        call = argparse.Namespace(**{**vars(args), "model": model})
        synthesis.require_registry_parts(
            model,
            [args.backbone or parts["backbone"], synthesis.denoiser_spec(call, parts)]
            + ([args.ttv or parts["ttv"]] if family == "tts" else [args.mms or parts["semantic_encoder"]]),
        )
        loaded = synthesis.synthesis_parts(call, parts, runtime)
        if family == "tts":
            ttv = synthesis.load_as(args.ttv or parts["ttv"], "TextToVec", "--ttv", runtime)
            synthesis.maybe_int8(args, runtime, loaded["backbone"])
            served.tts = TextToSpeech(ttv, **loaded, output_rate=args.output_rate)
            served.names[model] = "zero-shot text-to-speech (POST /v1/audio/speech)"
        else:
            encoder = _semantic_encoder(args.mms or parts["semantic_encoder"], runtime)
            synthesis.maybe_int8(args, runtime, encoder, loaded["backbone"])
            served.vc = VoiceConversion(semantic_encoder=encoder, **loaded, output_rate=args.output_rate)
            served.names[model] = "zero-shot voice conversion (POST /v1/audio/conversion)"
    return served


def run(args: argparse.Namespace) -> None:
    """Run ``hierspeech2 serve`` from parsed arguments (until Ctrl-C)."""
    from ..errors import SettingError

    try:
        options = ServerOptions(
            api_key=args.api_key,
            **{f: getattr(args, f) for f in ServerOptions.field_names() if f != "api_key"},
        )
    except SettingError as error:
        raise common.UsageError(str(error)) from None
    if args.denoise_ratio is not None and not 0 <= args.denoise_ratio <= 1:
        raise common.UsageError(f"--denoise-ratio must be between 0 and 1, got {args.denoise_ratio}")
    if args.host not in ("127.0.0.1", "localhost", "::1") and options.api_key is None:
        log.warning("serving on %s without an API key: anyone who reaches this port can use it", args.host)
    import uvicorn

    from ..serving import VoiceLibrary, create_app

    voices = VoiceLibrary(
        args.voices,
        args.voice_store,
        max_voices=options.max_voices,
        cache_size=options.voice_cache_size,
        max_prompt_seconds=options.max_prompt_seconds,
    )
    app = create_app(build_models(args), options, voices)
    if args.ui:
        from ..serving.demo import mount_demo

        examples = sorted(args.voices.iterdir())[:3] if args.voices else []
        app = mount_demo(app, [path for path in examples if path.suffix.lower() in (".wav", ".flac")])
    log.info("serving on http://%s:%d (docs: /docs)", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
