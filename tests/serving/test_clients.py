"""The server on a loopback port: OpenAI's own client, and ``hierspeech2 serve`` started as users do."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import soundfile as sf
import tiny_models
from test_api import RATE, served_models

from hierspeech2.audio import load_audio
from hierspeech2.cli.serve import LIMITS
from hierspeech2.options import ServerOptions
from hierspeech2.serving import VoiceLibrary, create_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(shared_dir, tmp_path_factory):
    import uvicorn

    voices = tmp_path_factory.mktemp("voices")
    sf.write(voices / "narrator.wav", load_audio(shared_dir / "audio" / "reference_2.wav").numpy(), RATE)
    app = create_app(served_models(), ServerOptions(api_key="k"), VoiceLibrary(voices))
    port = free_port()
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    for _ in range(200):
        if running.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=10)


def test_openai_client_round_trip(server, tmp_path) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="k")
    answer = client.audio.speech.create(
        model="tts-1", voice="narrator", input="Hello from the server.", response_format="wav"
    )
    audio, rate = sf.read(io.BytesIO(answer.content))
    assert rate == RATE and len(audio) > RATE // 4
    out = tmp_path / "streamed.pcm"
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="narrator", input="First piece. And then a second one.", response_format="pcm"
    ) as streamed:
        assert streamed.headers["x-sample-rate"] == str(RATE)
        chunks = list(streamed.iter_bytes())
    out.write_bytes(b"".join(chunks))
    assert out.stat().st_size > RATE // 2 and out.stat().st_size % 2 == 0
    models = [model.id for model in client.models.list()]
    assert "hierspeech2-tts" in models
    from openai import AuthenticationError, NotFoundError

    with pytest.raises(NotFoundError, match="no voice"):
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{server}/v1", api_key="wrong").models.list()


def test_serve_command_starts_offline_with_local_models(shared_dir, tmp_path) -> None:
    models = tiny_models.save_all(tmp_path / "models")
    voices = tmp_path / "voices"
    voices.mkdir()
    sf.write(voices / "narrator.wav", load_audio(shared_dir / "audio" / "reference_2.wav").numpy(), RATE)
    port = free_port()
    command = [
        sys.executable, "-m", "hierspeech2.cli", "serve", "--port", str(port), "--tts",
        "--ttv", str(models["ttv"]), "--backbone", str(models["backbone"]), "--denoise-ratio", "0",
        "--output-rate", "16000", "--voices", str(voices), "--device", "cpu", "--quiet", "--ui",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            assert process.poll() is None, process.communicate()[1]
        answer = httpx.post(
            f"{base}/v1/audio/speech",
            json={"input": "Hi there.", "voice": "narrator", "response_format": "flac"},
            timeout=60,
        )
        assert answer.status_code == 200 and sf.info(io.BytesIO(answer.content)).samplerate == RATE
        assert httpx.get(f"{base}/ui/", timeout=30).status_code == 200  # the web demo, mounted by --ui
        speech = io.BytesIO()
        sf.write(speech, load_audio(shared_dir / "audio" / "reference_1.wav").numpy(), RATE, format="WAV")
        sr = httpx.post(
            f"{base}/v1/audio/super-resolution", files={"file": ("a.wav", speech.getvalue())}, timeout=60
        )
        assert sr.status_code == 200 and sf.info(io.BytesIO(sr.content)).samplerate == 48_000
        assert (
            httpx.post(
                f"{base}/v1/audio/conversion", files={"file": ("a.wav", b"x")}, data={"voice": "narrator"}
            ).status_code
            == 501
        )
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_every_limit_has_a_flag() -> None:
    assert set(LIMITS) == set(ServerOptions.field_names()) - {"api_key"}
