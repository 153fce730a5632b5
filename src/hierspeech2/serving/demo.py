"""The web demo: a Gradio app (text-to-speech, voice conversion, super-resolution) mounted at ``/ui``.

It runs its work through the server's own engine queue, voice library and pipelines, so the demo
and the API share one model copy, one queue and one set of limits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..constants import MODEL_SAMPLE_RATE
from ..errors import HierSpeechError
from .app import super_resolution_work
from .codec import decode_upload
from .engine import Busy, Work

__all__ = ["UI_PATH", "build_demo", "mount_demo"]

UI_PATH = "/ui"


def _int16(wav: torch.Tensor) -> np.ndarray:
    return (wav.detach().float().cpu().clamp(-1, 1) * 32767).round().to(torch.int16).numpy()


def build_demo(app: Any, examples: list[Path] | None = None) -> Any:
    """The Gradio Blocks of the server ``app`` (a :func:`~hierspeech2.serving.create_app` result)."""
    import gradio as gr

    engine, voices, models, options = app.state.engine, app.state.voices, app.state.models, app.state.options

    def run(function: Any, inputs: Any = None) -> Any:
        try:
            future = engine.submit(Work(function, inputs)) if inputs is not None else engine.call(function)
            result = future.result(timeout=options.request_timeout)
        except Busy as error:
            raise gr.Error(str(error)) from None
        except (HierSpeechError, ValueError) as error:
            raise gr.Error(str(error)) from None
        return result[0] if inputs is not None else result

    def read(path: str | None, what: str) -> tuple[torch.Tensor, int]:
        if not path:
            raise gr.Error(f"give {what}")
        try:
            return decode_upload(Path(path).read_bytes(), what, options.max_audio_seconds)
        except HierSpeechError as error:
            raise gr.Error(str(error)) from None

    def voice_of(choice: str | None, upload: str | None) -> str:
        if upload:
            wav, rate = read(upload, "the voice prompt")
            return voices.add(wav, rate, Path(upload).stem)["id"]
        if not choice:
            raise gr.Error("choose a voice or upload a prompt")
        return choice

    def super_resolve(path: str | None, rate: str) -> tuple[int, np.ndarray]:
        wav, input_rate = read(path, "audio to super-resolve")
        pipeline = models.super_resolution[int(rate)]

        future = engine.submit(super_resolution_work(pipeline, wav, input_rate, int(rate)))
        try:
            out = future.result(timeout=options.request_timeout)
        except (HierSpeechError, ValueError) as error:
            raise gr.Error(str(error)) from None
        return int(rate), _int16(out)

    def speak(text: str, choice: str | None, upload: str | None, speed: float) -> tuple[int, np.ndarray]:
        tts = models.tts
        if not text.strip():
            raise gr.Error("type some text to speak")
        if len(text) > options.max_text_chars:
            raise gr.Error(f"the text is longer than {options.max_text_chars} characters")
        voice = voice_of(choice, upload)

        def synthesize() -> torch.Tensor:
            prompt = voices.encoded(voice, "tts", lambda wav: tts.encode_prompt(wav, MODEL_SAMPLE_RATE))
            audio, _ = tts(text, prompt, length_scale=1.0 / speed)
            return audio

        return tts.output_rate, _int16(run(synthesize))

    def convert(path: str | None, choice: str | None, upload: str | None) -> tuple[int, np.ndarray]:
        vc = models.vc
        source, rate = read(path, "the source speech")
        voice = voice_of(choice, upload)

        def conversion() -> torch.Tensor:
            prompt = voices.encoded(voice, "vc", lambda wav: vc.encode_prompt(wav, MODEL_SAMPLE_RATE))
            audio, _ = vc(source, prompt, source_rate=rate)
            return audio

        return vc.output_rate, _int16(run(conversion))

    voice_ids = [voice["id"] for voice in voices.list()]
    example_files = [str(path) for path in examples or []]
    with gr.Blocks(title="hierspeech2") as demo:
        gr.Markdown(
            "# hierspeech2\nZero-shot speech synthesis, voice conversion and speech super-resolution "
            "(HierSpeech++). The same models answer the HTTP API at `/v1`."
        )
        if models.tts is not None:
            with gr.Tab("Text to speech"):
                text = gr.Textbox(label="Text", lines=3, value="Hello! This voice was never heard before.")
                with gr.Row():
                    voice = gr.Dropdown(voice_ids, value=voice_ids[0] if voice_ids else None, label="Voice")
                    prompt = gr.Audio(type="filepath", label="…or upload a voice prompt (3–10 s)")
                speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speed")
                button = gr.Button("Speak", variant="primary")
                output = gr.Audio(label="Speech", type="numpy")
                button.click(speak, [text, voice, prompt, speed], output, api_name="speak")
        if models.vc is not None:
            with gr.Tab("Voice conversion"):
                source = gr.Audio(type="filepath", label="Source speech")
                with gr.Row():
                    voice = gr.Dropdown(voice_ids, value=voice_ids[0] if voice_ids else None, label="Voice")
                    prompt = gr.Audio(type="filepath", label="…or upload a voice prompt")
                button = gr.Button("Convert", variant="primary")
                output = gr.Audio(label="Converted", type="numpy")
                button.click(convert, [source, voice, prompt], output, api_name="convert")
        with gr.Tab("Super-resolution"):
            audio = gr.Audio(type="filepath", label="Speech (any rate)", elem_id="sr-input")
            rate = gr.Radio(
                [str(r) for r in sorted(models.super_resolution)], value="48000", label="Output rate (Hz)"
            )
            button = gr.Button("Super-resolve", variant="primary", elem_id="sr-run")
            output = gr.Audio(label="Super-resolved", type="numpy", elem_id="sr-output")
            button.click(super_resolve, [audio, rate], output, api_name="super_resolve")
            if example_files:
                gr.Examples([[path, "48000"] for path in example_files], [audio, rate])
    return demo


def mount_demo(app: Any, examples: list[Path] | None = None) -> Any:
    """Mount the demo on ``app`` at :data:`UI_PATH`; returns the app."""
    import gradio as gr

    return gr.mount_gradio_app(app, build_demo(app, examples), path=UI_PATH)
