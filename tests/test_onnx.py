"""SpeechSR through ONNX: exported with dynamic lengths, run by onnxruntime, within 1e-4 of torch."""

from __future__ import annotations

import pytest
import torch

from hierspeech2.audio import load_audio
from hierspeech2.cli import main
from hierspeech2.errors import CheckpointError
from hierspeech2.models import SpeechSR
from hierspeech2.pipelines import SuperResolution

pytest.importorskip("onnxscript")
onnx = pytest.importorskip("hierspeech2.onnx")
BOUND = 1e-4  # the waveform parity bound of the shared fixtures

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx") / "speechsr-48k"
    return onnx.export_speechsr(SpeechSR.from_packaged(48_000), folder)


@pytest.fixture(scope="module")
def speech(shared_dir) -> torch.Tensor:
    return torch.stack([load_audio(shared_dir / "audio" / f"reference_{i}.wav") for i in (1, 2)])


def test_onnxruntime_matches_torch_at_any_length(exported, speech) -> None:
    engine, model = onnx.OnnxSpeechSR(exported), SpeechSR.from_packaged(48_000).eval()
    assert (engine.input_rate, engine.output_rate) == (16_000, 48_000)
    for length in (speech.shape[-1], 23_041, 800, 3):  # the clip, odd lengths, a few samples
        wav = speech[..., :length].unsqueeze(1)
        with torch.inference_mode():
            expected = model(wav)
        got = engine(wav)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() < BOUND, length


def test_the_pipeline_runs_on_onnxruntime(exported, speech, tmp_path) -> None:
    model = SpeechSR.from_packaged(48_000)
    torch_audio, rate = SuperResolution(model)(speech[0], 16_000)  # switches model to the fast paths
    onnx.export_speechsr(model, tmp_path / "again")  # which the export turns back to the reference ones
    onnx_audio, onnx_rate = SuperResolution(onnx.OnnxSpeechSR(exported))(speech[0], 16_000)
    assert rate == onnx_rate == 48_000 and (onnx_audio - torch_audio).abs().max() < BOUND


def test_cached_export_and_cli(exported, speech, shared_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HIERSPEECH2_CACHE", str(tmp_path / "cache"))
    model = SpeechSR.from_packaged(24_000)
    first = onnx.onnx_speechsr(model)
    folder = next((tmp_path / "cache" / "onnx").iterdir())
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    onnx.onnx_speechsr(model)  # from the cache: not exported again
    assert (folder / "model.onnx").stat().st_mtime_ns == stamp and first.output_rate == 24_000
    out = tmp_path / "out.wav"
    clip = shared_dir / "audio" / "reference_3.wav"
    assert (
        main(["sr", str(clip), "-o", str(out), "--rate", "24000", "--engine", "onnxruntime", "--quiet"]) == 0
    )
    reference = tmp_path / "torch.wav"
    assert main(["sr", str(clip), "-o", str(reference), "--rate", "24000", "--quiet"]) == 0
    a, b = load_audio(out, 24_000), load_audio(reference, 24_000)
    assert (a - b).abs().max() <= 2 / 32768 + BOUND  # both written as 16-bit WAV
    with pytest.raises(CheckpointError, match="no exported SpeechSR"):
        onnx.OnnxSpeechSR(tmp_path)
