"""ONNX export of SpeechSR, the backbone's conversion path and text-to-vec, run by onnxruntime,
checked against torch."""

from __future__ import annotations

import shutil

import pytest
import torch

from hierspeech2.audio import load_audio
from hierspeech2.cli import main
from hierspeech2.errors import AudioError, CheckpointError
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


@pytest.fixture(scope="module")
def tiny_backbone_export(tiny_onnx_exports):
    import tiny_models

    return tiny_models.backbone(), tiny_onnx_exports("backbone")


def test_backbone_conversion_path_matches_torch_at_any_batch_and_length(tiny_backbone_export) -> None:
    backbone, folder = tiny_backbone_export
    engine = onnx.OnnxBackbone(folder)
    channels = engine.semantic_channels
    generator = torch.Generator().manual_seed(0)
    # one item; two padded items with their own prompts; the shortest lengths; one prompt row per item
    for batch, frames, prompt_frames, rows in (
        (1, 48, 120, 2),
        (2, 77, 200, 2),
        (1, 2, 2, 2),
        (2, 30, 64, 1),
    ):
        semantic = torch.randn(batch, channels, frames, generator=generator)
        log_f0 = torch.rand(batch, 1, 4 * frames, generator=generator) + 4.0
        prompt = torch.randn(rows * batch, 80, prompt_frames, generator=generator)
        semantic_lengths = torch.tensor([frames, max(2, frames - 9)][:batch])
        prompt_lengths = torch.tensor([prompt_frames, max(2, prompt_frames - 5)] * 2)[: rows * batch]
        arguments = (semantic, semantic_lengths, prompt, prompt_lengths, log_f0)
        with torch.inference_mode():
            expected = backbone.voice_conversion(*arguments, noise_scale=0.0, denoise_ratio=0.3)
        got = engine.voice_conversion(*arguments, noise_scale=0.0, denoise_ratio=0.3)
        assert got.shape == expected.shape == (batch, 1, 320 * frames)
        assert (got - expected).abs().max() < BOUND, (batch, frames, prompt_frames, rows)
    with pytest.raises(CheckpointError, match="no exported HierSpeech2"):
        onnx.OnnxBackbone(folder.parent)
    with pytest.raises(CheckpointError, match="holds a 'HierSpeech2' export, not SpeechSR"):
        onnx.OnnxSpeechSR(folder)
    with pytest.raises(CheckpointError, match="takes a HierSpeech2 model"):
        onnx.export_backbone(SpeechSR.from_packaged(48_000), folder.parent / "wrong")


def test_voice_conversion_and_tts_run_on_the_exported_backbone(tiny_backbone_export, speech) -> None:
    import tiny_models

    from hierspeech2.pipelines import TextToSpeech, VoiceConversion

    backbone, folder = tiny_backbone_export
    engine = onnx.OnnxBackbone(folder)
    encoder = tiny_models.semantic_encoder()
    source, prompt = speech[0], speech[1]
    outputs = []
    for model in (backbone, engine):
        vc = VoiceConversion(model, encoder, output_rate=16_000, noise_scale=0.0)
        outputs.append(vc(source, prompt, source_rate=16_000, target_rate=16_000)[0])
    assert outputs[0].shape == outputs[1].shape and (outputs[0] - outputs[1]).abs().max() < BOUND
    spoken = []
    for model in (backbone, engine):
        tts = TextToSpeech(
            tiny_models.ttv(), model, output_rate=16_000, noise_scale_ttv=0.0, noise_scale_vc=0.0
        )
        spoken.append(tts("A short test.", prompt, prompt_rate=16_000, seed=0)[0])
    assert spoken[0].shape == spoken[1].shape and (spoken[0] - spoken[1]).abs().max() < BOUND


@pytest.fixture(scope="module")
def tiny_ttv_export(tiny_onnx_exports):
    import tiny_models

    return tiny_models.ttv(), tiny_onnx_exports("ttv")


def test_text_to_vec_matches_torch_at_any_batch_length_and_seed(tiny_ttv_export) -> None:
    ttv, folder = tiny_ttv_export
    engine = onnx.OnnxTextToVec(folder)
    assert (engine.semantic_channels, engine.pitch_frames_per_frame) == (ttv.semantic_channels, 4)
    assert (engine.symbols, engine.n_vocab) == (ttv.symbols, ttv.n_vocab)
    generator = torch.Generator().manual_seed(0)
    # one item; three padded items; the shortest text and prompt; one prompt row per item
    for batch, tokens, prompt_frames, rows in ((1, 15, 120, 2), (3, 31, 90, 2), (1, 2, 2, 2), (2, 9, 64, 1)):
        ids = torch.randint(1, ttv.n_vocab, (batch, tokens), generator=generator)
        lengths = torch.tensor([tokens, max(2, tokens - 6), max(2, tokens - 11)][:batch])
        ids = ids.masked_fill(torch.arange(tokens) >= lengths[:, None], 0)
        prompt = torch.randn(rows * batch, 80, prompt_frames, generator=generator)
        prompt_lengths = torch.tensor([prompt_frames, max(2, prompt_frames - 5)] * 3)[: rows * batch]
        for settings in (
            {"noise_scale": 0.0, "noise_scale_w": 0.0},
            {"length_scale": 1.3, "denoise_ratio": 0.4},
        ):
            results = []
            for model in (ttv, engine):  # the same seed: the same duration and prior draws
                torch.manual_seed(7)
                results.append(model.infer_with_lengths(ids, lengths, prompt, prompt_lengths, **settings))
            (semantic, log_f0, frames), (got_semantic, got_log_f0, got_frames) = results
            assert torch.equal(got_frames, frames) and got_semantic.shape == semantic.shape
            assert got_log_f0.shape == log_f0.shape == (batch, 1, 4 * semantic.shape[-1])
            assert (got_semantic - semantic).abs().max() < BOUND, (batch, tokens, settings)
            assert (got_log_f0 - log_f0).abs().max() < BOUND, (batch, tokens, settings)
    assert engine.infer(ids, lengths, prompt, prompt_lengths)[0].shape[0] == 2
    with pytest.raises(AudioError, match="at least 2 tokens"):
        engine.infer(torch.ones(1, 1, dtype=torch.long), torch.tensor([1]), prompt[:2], prompt_lengths[:2])
    with pytest.raises(CheckpointError, match="holds a 'TextToVec' export, not HierSpeech2"):
        onnx.OnnxBackbone(folder)
    with pytest.raises(CheckpointError, match="takes a TextToVec model"):
        onnx.export_ttv(SpeechSR.from_packaged(48_000), folder.parent / "wrong")


def test_tts_runs_on_the_exported_text_to_vec_and_backbone(
    tiny_ttv_export, tiny_backbone_export, speech, tmp_path, monkeypatch
) -> None:
    from hierspeech2.pipelines import TextToSpeech

    ttv, ttv_folder = tiny_ttv_export
    backbone, backbone_folder = tiny_backbone_export
    spoken = []
    for models in ((ttv, backbone), (onnx.OnnxTextToVec(ttv_folder), onnx.OnnxBackbone(backbone_folder))):
        tts = TextToSpeech(*models, output_rate=16_000, noise_scale_vc=0.0)  # the TTV's noise is seeded
        spoken.append(tts("A short test, and a second piece.", speech[1], prompt_rate=16_000, seed=3)[0])
    assert spoken[0].shape == spoken[1].shape and (spoken[0] - spoken[1]).abs().max() < BOUND
    # export picks the exporter by model kind, and the cache exports once per weights: with the
    # session's export of these weights in it, onnx_ttv finds it instead of exporting again
    monkeypatch.setenv("HIERSPEECH2_CACHE", str(tmp_path / "cache"))
    shutil.copytree(ttv_folder, tmp_path / "cache" / "onnx" / ttv_folder.name)
    ttv.save_pretrained(tmp_path / "native")
    assert main(["export", str(tmp_path / "native"), str(tmp_path / "exported"), "--format", "onnx"]) == 0
    assert onnx.OnnxTextToVec(tmp_path / "exported").semantic_channels == ttv.semantic_channels
    engine = onnx.onnx_ttv(ttv)
    assert isinstance(engine, onnx.OnnxTextToVec) and len(list((tmp_path / "cache" / "onnx").iterdir())) == 1
    with pytest.raises(CheckpointError, match="takes a SpeechSR, HierSpeech2 or TextToVec model"):
        onnx.export_model(torch.nn.Linear(2, 2), tmp_path / "linear")
