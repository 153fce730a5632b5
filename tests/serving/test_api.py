"""The HTTP API in process (FastAPI's TestClient): packaged SpeechSR, tiny TTS and VC models."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tiny_models
import torch
from fastapi.testclient import TestClient

from hierspeech2.audio import load_audio
from hierspeech2.models import SpeechSR
from hierspeech2.options import ServerOptions
from hierspeech2.pipelines import SuperResolution, TextToSpeech, VoiceConversion
from hierspeech2.serving import ServedModels, VoiceLibrary, create_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RATE = 16_000


def served_models() -> ServedModels:
    backbone = tiny_models.backbone()
    return ServedModels(
        super_resolution={rate: SuperResolution(SpeechSR.from_packaged(rate)) for rate in (24_000, 48_000)},
        tts=TextToSpeech(tiny_models.ttv(), backbone, output_rate=RATE),
        vc=VoiceConversion(backbone, tiny_models.semantic_encoder(), output_rate=RATE, f0_extractor="swift"),
        names={"hierspeech2-tts": "tiny", "hierspeech2-vc": "tiny", "speechsr-48k": "packaged"},
    )


@pytest.fixture(scope="module")
def speech(shared_dir) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, load_audio(shared_dir / "audio" / "reference_1.wav").numpy(), RATE, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def voices_dir(shared_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("voices")
    sf.write(folder / "narrator.wav", load_audio(shared_dir / "audio" / "reference_2.wav").numpy(), RATE)
    return folder


@pytest.fixture(scope="module")
def client(voices_dir) -> TestClient:
    options = ServerOptions(max_text_chars=500, max_upload_bytes=2_000_000, max_audio_seconds=20.0)
    voices = VoiceLibrary(voices_dir, max_voices=3)
    with TestClient(create_app(served_models(), options, voices), raise_server_exceptions=False) as client:
        yield client


def test_health_ready_models(client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["status"] == "ready"
    ids = [model["id"] for model in client.get("/v1/models").json()["data"]]
    assert ids == ["hierspeech2-tts", "hierspeech2-vc", "speechsr-48k"]


def test_super_resolution_answers_a_48k_wav(client, speech) -> None:
    answer = client.post("/v1/audio/super-resolution", files={"file": ("a.wav", speech, "audio/wav")})
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(answer.content))
    assert rate == 48_000 and len(audio) == 3 * 3 * RATE
    direct, _ = SuperResolution(SpeechSR.from_packaged(48_000))(
        torch.from_numpy(sf.read(io.BytesIO(speech))[0]).float(), RATE
    )
    np.testing.assert_allclose(audio, direct.numpy(), atol=2 / 32768)  # 16-bit WAV
    flac = client.post(
        "/v1/audio/super-resolution",
        files={"file": ("a.wav", speech)},
        data={"rate": "24000", "response_format": "flac"},
    )
    assert flac.status_code == 200 and sf.info(io.BytesIO(flac.content)).samplerate == 24_000


def test_voices_upload_list_delete(client, speech) -> None:
    listed = client.get("/v1/voices").json()["data"]
    assert {"id": "narrator", "name": "narrator", "builtin": True} in listed
    added = client.post("/v1/voices", files={"file": ("me.wav", speech)}, data={"name": "me"})
    assert added.status_code == 201 and added.json()["name"] == "me"
    voice = added.json()["id"]
    again = client.post("/v1/voices", files={"file": ("me.wav", speech)}, data={"name": "me"})
    assert again.json()["id"] == voice  # the same audio is the same voice
    assert voice in [v["id"] for v in client.get("/v1/voices").json()["data"]]
    assert client.delete(f"/v1/voices/{voice}").json() == {"id": voice, "deleted": True}
    assert client.delete(f"/v1/voices/{voice}").status_code == 404
    assert client.delete("/v1/voices/narrator").status_code == 403


def test_speech_streams_wav_and_answers_other_formats(client) -> None:
    request = {
        "model": "tts-1",
        "input": "Hello there. How are you today?",
        "voice": "narrator",
        "response_format": "wav",
    }
    with client.stream("POST", "/v1/audio/speech", json=request) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"] == "audio/wav"
        body = b"".join(answer.iter_bytes())
    assert body[:4] == b"RIFF" and struct.unpack("<I", body[24:28])[0] == RATE
    samples = np.frombuffer(body[44:], dtype="<i2")
    assert samples.size > RATE // 4 and np.abs(samples).max() > 1000
    pcm = client.post("/v1/audio/speech", json={**request, "response_format": "pcm", "speed": 2.0})
    assert pcm.status_code == 200 and 0 < len(pcm.content) // 2 < samples.size  # faster speech is shorter
    for response_format in ("flac", "mp3", "opus"):
        answer = client.post("/v1/audio/speech", json={**request, "response_format": response_format})
        assert answer.status_code == 200, (response_format, answer.text)
        assert sf.info(io.BytesIO(answer.content)).frames > 0


def test_conversion(client, speech) -> None:
    answer = client.post(
        "/v1/audio/conversion", files={"file": ("s.wav", speech)}, data={"voice": "narrator"}
    )
    assert answer.status_code == 200, answer.text
    audio, rate = sf.read(io.BytesIO(answer.content))
    assert rate == RATE and abs(len(audio) - 3 * RATE) <= 1280


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "fragment"),
    [
        (
            "post",
            "/v1/audio/speech",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "JSON",
        ),
        ("post", "/v1/audio/speech", {"json": {"input": "Hi", "voice": 3}}, 400, "voice"),
        ("post", "/v1/audio/speech", {"json": {"input": "Hi"}}, 400, "voice"),
        (
            "post",
            "/v1/audio/speech",
            {"json": {"input": "Hi", "voice": "narrator", "speed": 9}},
            400,
            "speed",
        ),
        (
            "post",
            "/v1/audio/speech",
            {"json": {"input": "Hi", "voice": "narrator", "response_format": "aac"}},
            400,
            "response_format",
        ),
        ("post", "/v1/audio/speech", {"json": {"input": "x" * 501, "voice": "narrator"}}, 400, "at most 500"),
        ("post", "/v1/audio/speech", {"json": {"input": "   ", "voice": "narrator"}}, 400, "empty"),
        ("post", "/v1/audio/speech", {"json": {"input": "Hi", "voice": "../../etc/passwd"}}, 404, "no voice"),
        (
            "post",
            "/v1/audio/super-resolution",
            {"files": {"file": ("a.wav", b"RIFF junk")}},
            400,
            "not audio",
        ),
        ("post", "/v1/audio/super-resolution", {"files": {"file": ("a.wav", b"")}}, 400, "empty"),
        ("post", "/v1/audio/super-resolution", {}, 400, "file"),
        (
            "post",
            "/v1/audio/super-resolution",
            {"files": {"file": ("a.wav", b"x" * 2_100_000)}},
            413,
            "larger",
        ),
        ("post", "/v1/voices", {"files": {"file": ("a.txt", b"hello")}}, 400, "not audio"),
        ("get", "/v1/nothing", {}, 404, "Not Found"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(client, method, path, kwargs, status, fragment) -> None:
    answer = getattr(client, method)(path, **kwargs)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]["message"]
    assert fragment in message and "Traceback" not in message


def test_audio_limits(client) -> None:
    long = io.BytesIO()
    sf.write(long, np.zeros(21 * RATE, dtype="float32"), RATE, format="WAV")
    answer = client.post("/v1/audio/super-resolution", files={"file": ("l.wav", long.getvalue())})
    assert answer.status_code == 400 and "at most 20 s" in answer.json()["error"]["message"]
    rate = client.post(
        "/v1/audio/super-resolution", files={"file": ("l.wav", long.getvalue())}, data={"rate": "32000"}
    )
    assert rate.status_code == 400


def test_api_key(voices_dir, speech) -> None:
    app = create_app(served_models(), ServerOptions(api_key="s3cret"), VoiceLibrary(voices_dir))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200  # health needs no key
        denied = client.get("/v1/voices")
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/voices", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/voices", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_full_queue_answers_429_with_retry_after(voices_dir, speech) -> None:
    import threading

    from hierspeech2.serving import Engine
    from hierspeech2.serving.engine import Work

    engine = Engine(queue_size=1)
    gate = threading.Event()
    engine.submit(Work(lambda inputs: [gate.wait(30)]))  # the worker is busy
    app = create_app(served_models(), ServerOptions(queue_size=1), VoiceLibrary(voices_dir), engine=engine)
    try:
        with TestClient(app) as client:
            engine.submit(Work(lambda inputs: [None]))  # and the queue full
            answer = client.post("/v1/audio/super-resolution", files={"file": ("a.wav", speech)})
            assert answer.status_code == 429 and int(answer.headers["retry-after"]) >= 1
            assert client.get("/ready").status_code == 503
    finally:
        gate.set()
        engine.close()
