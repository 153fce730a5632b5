"""Fuzzing the HTTP API: any JSON body, form field or uploaded bytes get a 2xx or a 4xx with a
message, never a 500 or a traceback."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import strategies as st

pytest.importorskip("fastapi")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from fastapi.testclient import TestClient
from test_api import served_models

from hierspeech2.options import ServerOptions
from hierspeech2.serving import VoiceLibrary, create_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
SPEECH_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "model": JSON_VALUES,
        "input": st.one_of(st.text(max_size=60), JSON_VALUES),
        "voice": st.one_of(st.sampled_from(["narrator", "../../etc/passwd", "", "voice_0"]), JSON_VALUES),
        "response_format": st.one_of(st.sampled_from(["wav", "pcm", "mp3", "aac", ""]), JSON_VALUES),
        "speed": st.one_of(st.floats(allow_nan=True), st.integers(), JSON_VALUES),
    },
)


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV")
    return buffer.getvalue()


UPLOADS = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda head, tail: head + tail,
        st.sampled_from([b"RIFF", b"fLaC", b"OggS", b"ID3"]),
        st.binary(max_size=200),
    ),
    st.builds(
        lambda n, rate, value: _wav_bytes(np.full(n, value, dtype="float32"), rate),
        st.integers(0, 4000),
        st.sampled_from([8_000, 16_000, 44_100, 1]),
        st.sampled_from([0.0, 0.5, 1.0, 10.0]),
    ),
)


@pytest.fixture(scope="module")
def client(shared_dir, tmp_path_factory):
    from hierspeech2.audio import load_audio

    voices = tmp_path_factory.mktemp("voices")
    sf.write(voices / "narrator.wav", load_audio(shared_dir / "audio" / "reference_2.wav").numpy(), 16_000)
    options = ServerOptions(max_text_chars=80, max_upload_bytes=100_000, max_audio_seconds=2.0)
    app = create_app(served_models(), options, VoiceLibrary(voices))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _check(answer) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        message = answer.json()["error"]["message"]
        assert message.strip() and "Traceback" not in message


def test_speech_requests(client, fuzz) -> None:
    def body(fields, raw) -> None:
        if raw is not None:
            _check(client.post("/v1/audio/speech", content=raw, headers={"content-type": "application/json"}))
        else:
            # json.dumps writes NaN/Infinity as bare words, which are not JSON: the server must refuse them
            payload = json.dumps(fields).encode()
            _check(
                client.post("/v1/audio/speech", content=payload, headers={"content-type": "application/json"})
            )

    fuzz.run(
        "POST /v1/audio/speech",
        body,
        default=40,
        long=2000,
        fields=SPEECH_FIELDS,
        raw=st.none() | st.binary(max_size=80),
    )


def test_uploads(client, fuzz) -> None:
    def body(path, data, form) -> None:
        _check(client.post(path, files={"file": ("upload", data)}, data=form))

    forms = st.dictionaries(
        st.sampled_from(["rate", "voice", "response_format", "name"]), st.text(max_size=12), max_size=3
    )
    paths = st.sampled_from(["/v1/audio/super-resolution", "/v1/voices", "/v1/audio/conversion"])
    fuzz.run("uploads", body, default=40, long=400, path=paths, data=UPLOADS, form=forms)
