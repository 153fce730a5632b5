"""Pipelines: the whole TTS chain against the official recording, and VC/SR behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hierspeech2.errors import AudioError
from hierspeech2.models import HierSpeech2, SpeechSR, TextToVec
from hierspeech2.pipelines import (
    PITCH_FLOOR_HZ,
    SuperResolution,
    TextToSpeech,
    as_waveform,
    peak_normalise,
    transfer_log_f0,
)


@pytest.fixture(scope="module")
def full_tts(shared_dir, official_state_dict) -> TextToSpeech:
    speechsr48k = shared_dir / "checkpoints" / "official" / "speechsr48k_G_100000.pth"
    ttv = TextToVec.from_official(official_state_dict("ttv"))
    backbone = HierSpeech2.from_official(official_state_dict("backbone"))
    return TextToSpeech(ttv, backbone, SpeechSR.from_official(speechsr48k), output_rate=48_000)


@pytest.mark.parametrize("case", ["a", "b"])
def test_tts_chain_matches_official(full_tts: TextToSpeech, parity_cases, parity_settings, case: str) -> None:
    settings = parity_settings[f"{case}.ttv"]
    assert parity_settings[f"{case}.tts"]["pitch_floor_hz"] == PITCH_FLOOR_HZ
    with torch.inference_mode():
        audio = full_tts.synthesize_from_tokens(
            parity_cases[f"{case}.ttv.tokens"],
            parity_cases[f"{case}.ttv.prompt_mel"],
            noise_scale_ttv=settings["noise_scale"],
            noise_scale_vc=settings["noise_scale"],
            noise_scale_w=settings["noise_scale_w"],
            length_scale=settings["length_scale"],
            denoise_ratio=settings["denoise_ratio"],
        )
    expected = parity_cases[f"{case}.tts.audio48k"]
    assert audio.shape == expected.shape
    assert audio.abs().max() == pytest.approx(0.999, abs=1e-6)
    assert (audio - expected).abs().max() <= 1e-3


def test_transfer_log_f0_moves_voiced_frames_to_prompt_statistics() -> None:
    source = np.array([0.0, 100.0, 200.0, 0.0, 300.0])
    prompt = np.array([0.0, 150.0, 250.0, 0.0])
    log_f0 = transfer_log_f0(source, prompt)
    f0 = torch.exp(log_f0.double()) - 1
    voiced = f0[[1, 2, 4]]
    assert f0[0] == 0 and f0[3] == 0
    assert voiced.mean().item() == pytest.approx(200.0, rel=1e-5)
    assert voiced.std(unbiased=False).item() == pytest.approx(50.0, rel=1e-5)


def test_transfer_log_f0_with_unvoiced_prompt_keeps_source_and_warns() -> None:
    source = np.array([0.0, 100.0, 200.0])
    with pytest.warns(UserWarning, match="no voiced frame"):
        log_f0 = transfer_log_f0(source, np.zeros(4))
    assert torch.allclose(log_f0, torch.log(torch.tensor([1.0, 101.0, 201.0])))


def test_as_waveform_mixes_down_and_resamples() -> None:
    stereo = torch.stack([torch.ones(48_000), -torch.ones(48_000) * 0.5])
    wav = as_waveform(stereo, 48_000, "x")
    assert wav.shape == (16_000,)
    assert wav[1000:-1000].mean().item() == pytest.approx(0.25, abs=1e-3)
    with pytest.raises(AudioError, match="sample rate"):
        as_waveform(np.zeros(100, dtype=np.float32), None, "x")
    with pytest.raises(AudioError):
        as_waveform(torch.full((100,), math.nan), 16_000, "x")


def test_peak_normalise_leaves_silence_alone() -> None:
    assert torch.equal(peak_normalise(torch.zeros(5), 0.999), torch.zeros(5))
    assert peak_normalise(torch.tensor([0.5, -2.0]), 0.999).abs().max() == pytest.approx(0.999)


def test_super_resolution_from_any_rate() -> None:
    sr = SuperResolution(SpeechSR.from_packaged(24_000))
    tone = torch.sin(torch.arange(22_050) / 22_050 * 2 * math.pi * 220)
    out, rate = sr(tone.numpy(), sample_rate=22_050)
    assert rate == 24_000
    assert out.shape == (24_000,)
    assert torch.isfinite(out).all() and out.abs().max() == pytest.approx(0.999, abs=1e-6)
