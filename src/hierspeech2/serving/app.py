"""The HTTP API: OpenAI's ``POST /v1/audio/speech``, voices, conversion, super-resolution, health.

Every error is a JSON body in OpenAI's shape, ``{"error": {"message", "type", "code"}}``, with a 4xx
status for anything a request can get wrong; a 500 means a bug (logged, never a traceback in the
answer).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import secrets
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..constants import MODEL_SAMPLE_RATE
from ..errors import HierSpeechError
from ..options import RESPONSE_FORMATS, ServerOptions
from ..pipelines.jobs import SuperResolutionJob
from .codec import MEDIA_TYPES, decode_upload, encode_audio, pcm16, streaming_wav_header
from .engine import Busy, Engine, Work
from .voices import VoiceLibrary, VoiceNotFound, VoiceStoreFull

__all__ = ["ServedModels", "create_app"]

log = logging.getLogger("hierspeech2.serving")

UPLOAD_CHUNK = 1 << 16


@dataclass
class ServedModels:
    """The pipelines a server runs: SpeechSR by output rate (always), TTS and VC when loaded."""

    super_resolution: dict[int, Any]
    tts: Any = None
    vc: Any = None
    names: dict[str, str] = field(default_factory=dict)
    """Model id → what it is, for ``GET /v1/models``."""


class SpeechRequest(BaseModel):
    """OpenAI's speech request; fields this server does not use (``instructions``…) are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field("hierspeech2-tts", max_length=200)
    input: str
    voice: str = Field(max_length=200)
    response_format: Literal["wav", "flac", "pcm", "mp3", "opus"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio"] | None = None


class _ClientGone(Exception):
    pass


ERROR_STATUS: dict[type[Exception], int] = {
    VoiceNotFound: 404,
    VoiceStoreFull: 409,
    PermissionError: 403,  # deleting a built-in voice
    HierSpeechError: 400,  # bad audio, text, settings
}
"""The status of each error a request can cause (besides validation, 413 and 429)."""


def super_resolution_work(pipeline: Any, wav: torch.Tensor, input_rate: int, output_rate: int) -> Work:
    """Queued super-resolution of one upload; waiting items of one output rate run as one batch."""

    def run(inputs: Sequence[Any]) -> list[Any]:
        jobs = [SuperResolutionJob(audio, None, audio_rate) for audio, audio_rate in inputs]
        return [result.audio if result.ok else result.error for result in pipeline.process_many(jobs)]

    return Work(run, (wav, input_rate), batch_key=("sr", output_rate))


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(
    models: ServedModels,
    options: ServerOptions | None = None,
    voices: VoiceLibrary | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """The FastAPI application of ``hierspeech2 serve`` (run it with uvicorn or any ASGI server)."""
    options = options or ServerOptions()
    voices = voices or VoiceLibrary(
        max_voices=options.max_voices,
        cache_size=options.voice_cache_size,
        max_prompt_seconds=options.max_prompt_seconds,
    )
    engine = engine or Engine(options.queue_size, options.sr_batch_size)
    app = FastAPI(title="hierspeech2", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.engine, app.state.voices, app.state.models, app.state.options = engine, voices, models, options

    # ------------------------------------------------------------------------------------- errors

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(
            error.status_code, str(error.detail), "invalid_request_error", getattr(error, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"msg": "invalid request", "loc": ()}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        return _error(400, message, "invalid_request_error")

    @app.exception_handler(Busy)
    async def busy(request: Request, error: Busy) -> JSONResponse:
        return _error(429, str(error), "rate_limit_error", {"Retry-After": str(error.retry_after)})

    def answer_with(status: int) -> Any:
        async def handler(request: Request, error: Exception) -> JSONResponse:
            return _error(status, str(error), "invalid_request_error")

        return handler

    for error_type, status in ERROR_STATUS.items():
        app.add_exception_handler(error_type, answer_with(status))

    @app.exception_handler(_ClientGone)
    async def client_gone(request: Request, error: _ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it: the client closed the connection

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal server error (logged on the server)", "server_error")

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (
            not length.isdigit() or int(length) > options.max_upload_bytes + UPLOAD_CHUNK
        ):
            return _error(
                413, f"the request is larger than {options.max_upload_bytes} bytes", "invalid_request_error"
            )
        return await call_next(request)

    def authorized(request: Request) -> None:
        if options.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), options.api_key):
            raise HTTPException(
                401, "a valid API key is needed: Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"}
            )

    api = [Depends(authorized)]

    # ------------------------------------------------------------------------------------ helpers

    async def wait_for(future: Future, request: Request) -> Any:
        """The future's result; cancelled if the client goes away; 503 after the request timeout."""
        wrapped = asyncio.wrap_future(future)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + options.request_timeout
        while True:
            done, _ = await asyncio.wait({wrapped}, timeout=0.2)
            if done:
                return wrapped.result()
            if await request.is_disconnected():
                future.cancel()
                raise _ClientGone
            if loop.time() > deadline:
                future.cancel()
                raise HTTPException(
                    503, f"the request took longer than {options.request_timeout:g} s", {"Retry-After": "5"}
                )

    async def read_upload(upload: UploadFile, what: str, max_seconds: float) -> tuple[torch.Tensor, int]:
        chunks, size = [], 0
        while chunk := await upload.read(UPLOAD_CHUNK):
            size += len(chunk)
            if size > options.max_upload_bytes:
                raise HTTPException(413, f"{what} is larger than {options.max_upload_bytes} bytes")
            chunks.append(chunk)
        return decode_upload(b"".join(chunks), what, max_seconds)

    def audio_response(wav: torch.Tensor, rate: int, response_format: str) -> Response:
        data, _ = encode_audio(wav, rate, response_format)
        return Response(data, media_type=MEDIA_TYPES[response_format])

    def require(pipeline: Any, what: str, flag: str) -> Any:
        if pipeline is None:
            raise HTTPException(501, f"{what} is not loaded on this server (start it with {flag})")
        return pipeline

    # ---------------------------------------------------------------------------------- endpoints

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        state = {"waiting": engine.waiting, "running": engine.running, "queue_size": engine.queue_size}
        if engine.waiting >= engine.queue_size:
            return JSONResponse({"status": "busy", **state}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready", **state})

    @app.get("/v1/models", dependencies=api)
    async def list_models() -> dict[str, Any]:
        data = [
            {"id": key, "object": "model", "owned_by": "hierspeech2", "description": what}
            for key, what in models.names.items()
        ]
        return {"object": "list", "data": data}

    @app.get("/v1/voices", dependencies=api)
    async def list_voices() -> dict[str, Any]:
        return {"object": "list", "data": voices.list()}

    @app.post("/v1/voices", dependencies=api, status_code=201)
    async def add_voice(
        file: Annotated[UploadFile, File()], name: Annotated[str | None, Form(max_length=100)] = None
    ) -> dict[str, Any]:
        wav, rate = await read_upload(file, "the voice prompt", options.max_audio_seconds)
        if wav.numel() / rate < 0.5:
            raise HTTPException(400, "the voice prompt is shorter than 0.5 s; 3–10 s of speech works best")
        return voices.add(wav, rate, name)

    @app.delete("/v1/voices/{voice_id}", dependencies=api)
    async def delete_voice(voice_id: str) -> dict[str, Any]:
        voices.remove(voice_id)
        return {"id": voice_id, "deleted": True}

    @app.post("/v1/audio/speech", dependencies=api)
    async def speech(body: SpeechRequest, request: Request) -> Response:
        tts = require(models.tts, "text-to-speech", "--tts")
        text = body.input
        if not text.strip():
            raise HTTPException(400, "input is empty: give the text to speak")
        if len(text) > options.max_text_chars:
            raise HTTPException(
                400, f"input is {len(text)} characters; this server takes at most {options.max_text_chars}"
            )
        voice = body.voice
        voices.waveform(voice)  # 404 now, not after queueing
        settings = {"length_scale": 1.0 / body.speed}

        def blocks() -> Any:
            prompt = voices.encoded(voice, "tts", lambda wav: tts.encode_prompt(wav, MODEL_SAMPLE_RATE))
            yield from tts.stream(
                text,
                prompt,
                first_piece_chars=options.first_piece_chars,
                first_block_seconds=options.first_block_seconds,
                **settings,
            )

        if body.response_format in ("wav", "pcm"):
            return await stream_speech(blocks, tts.output_rate, body.response_format, request)

        def whole() -> torch.Tensor:
            return torch.cat(list(blocks()))

        wav = await wait_for(engine.call(whole), request)
        return audio_response(wav, tts.output_rate, body.response_format)

    async def stream_speech(blocks: Any, rate: int, response_format: str, request: Request) -> Response:
        cancelled = threading.Event()
        out = engine.stream(blocks, cancelled)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + options.request_timeout

        async def next_block() -> Any:
            while True:
                try:
                    return await asyncio.to_thread(out.get, True, 0.25)
                except queue.Empty:  # check the client and the clock, then wait again
                    if await request.is_disconnected():
                        cancelled.set()
                        raise _ClientGone from None
                    if loop.time() > deadline:
                        cancelled.set()
                        raise HTTPException(503, "the request timed out", {"Retry-After": "5"}) from None

        first = await next_block()  # errors of the text or the voice still get their 4xx
        if isinstance(first, BaseException):
            cancelled.set()
            raise first

        async def body() -> AsyncIterator[bytes]:
            try:
                if response_format == "wav":
                    yield streaming_wav_header(rate)
                item = first
                while not Engine.is_end(item):
                    if isinstance(item, BaseException):
                        log.warning("stream ended early: %s", item)
                        return
                    yield pcm16(item)
                    item = await next_block()
            finally:
                cancelled.set()

        return StreamingResponse(
            body(), media_type=MEDIA_TYPES[response_format], headers={"X-Sample-Rate": str(rate)}
        )

    @app.post("/v1/audio/conversion", dependencies=api)
    async def conversion(
        request: Request,
        file: Annotated[UploadFile, File()],
        voice: Annotated[str, Form(max_length=200)],
        response_format: Annotated[Literal["wav", "flac", "pcm", "mp3", "opus"], Form()] = "wav",
    ) -> Response:
        vc = require(models.vc, "voice conversion", "--vc")
        voices.waveform(voice)
        source, rate = await read_upload(file, "the source audio", options.max_audio_seconds)

        def convert() -> torch.Tensor:
            prompt = voices.encoded(voice, "vc", lambda wav: vc.encode_prompt(wav, MODEL_SAMPLE_RATE))
            audio, _ = vc(source, prompt, source_rate=rate)
            return audio

        wav = await wait_for(engine.call(convert), request)
        return audio_response(wav, vc.output_rate, response_format)

    @app.post("/v1/audio/super-resolution", dependencies=api)
    async def super_resolution(
        request: Request,
        file: Annotated[UploadFile, File()],
        rate: Annotated[int, Form()] = 48_000,
        response_format: Annotated[Literal["wav", "flac", "pcm", "mp3", "opus"], Form()] = "wav",
    ) -> Response:
        if rate not in models.super_resolution:
            raise HTTPException(400, f"rate must be one of {sorted(models.super_resolution)}, got {rate}")
        wav, input_rate = await read_upload(file, "the audio", options.max_audio_seconds)
        pipeline = models.super_resolution[rate]

        future = engine.submit(super_resolution_work(pipeline, wav, input_rate, rate))
        out = await wait_for(future, request)
        return audio_response(out, rate, response_format)

    app.state.response_formats = RESPONSE_FORMATS
    return app
