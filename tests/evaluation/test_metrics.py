"""F0 and spectral metrics against hand-computed cases and real speech."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hierspeech2.evaluation import f0_metrics, log_spectral_distance

SHARED_AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "audio"


def test_f0_metrics_by_hand():
    reference = torch.tensor([0.0, 100.0, 200.0, 300.0, 0.0, 150.0])
    estimate = torch.tensor([0.0, 200.0, 400.0, 600.0, 120.0, 0.0])  # an octave up, one frame each way wrong
    metrics = f0_metrics(estimate, reference)
    assert metrics.rmse_cents == pytest.approx(1200.0)
    assert metrics.pearson == pytest.approx(1.0)  # a linear relation
    # voiced: reference 4 frames, estimate 4 frames, both 3 -> F1 = 2·3 / (4 + 4)
    assert metrics.vuv_f1 == pytest.approx(0.75)
    assert (metrics.voiced_frames, metrics.frames) == (3, 6)


def test_f0_metrics_of_identical_tracks_and_edge_cases():
    track = torch.tensor([0.0, 110.0, 120.0, 0.0, 130.0])
    same = f0_metrics(track, track)
    assert (same.rmse_cents, same.vuv_f1) == (0.0, 1.0) and same.pearson == pytest.approx(1.0)
    semitone = f0_metrics(track * 2 ** (1 / 12), track)
    assert semitone.rmse_cents == pytest.approx(100.0)
    silent = f0_metrics(torch.zeros(4), torch.zeros(5))  # cut to 4 frames; no voiced frame
    assert math.isnan(silent.rmse_cents) and silent.vuv_f1 == 1.0 and silent.frames == 4
    with pytest.raises(ValueError, match="not tracks of the same audio"):
        f0_metrics(torch.ones(10), torch.ones(20))
    with pytest.raises(ValueError, match="cannot be negative"):
        f0_metrics(torch.tensor([-1.0, 100.0]), torch.tensor([100.0, 100.0]))


def test_lsd_by_hand():
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(48_000, generator=generator, dtype=torch.float64)
    assert log_spectral_distance(noise, noise, 48_000).full == 0.0
    # ten times the amplitude is 100 times the power: log10 differs by exactly 2 in every bin
    louder = log_spectral_distance(10 * noise, noise, 48_000)
    assert louder.full == pytest.approx(2.0) and louder.high == pytest.approx(2.0)


def test_lsd_sees_a_missing_high_band():
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(48_000, generator=generator, dtype=torch.float64)
    spectrum = torch.fft.rfft(noise)
    spectrum[torch.fft.rfftfreq(48_000, 1 / 48_000) > 8_000] = 0  # what 16 kHz audio keeps
    lowpassed = torch.fft.irfft(spectrum, n=48_000)
    distance = log_spectral_distance(lowpassed, noise, 48_000)
    assert distance.high > 3.0  # bins above 8 kHz are near the floor
    assert distance.full < distance.high
    # the low band alone agrees: the full-band figure is the high band diluted by 1/3 of the bins
    assert distance.full == pytest.approx(math.sqrt(2 / 3) * distance.high, rel=0.1)


def test_lsd_on_real_speech_through_a_narrower_band():
    import soundfile as sf
    import torchaudio

    files = sorted(SHARED_AUDIO.glob("*.wav")) if SHARED_AUDIO.is_dir() else []
    if not files:
        pytest.skip(f"no shared audio at {SHARED_AUDIO}")
    data, rate = sf.read(files[0], dtype="float64")
    wav = torch.from_numpy(data).reshape(-1)
    # through 8 kHz and back: the band above 4 kHz is gone, as 16 kHz audio lacks the band above 8
    narrow = torchaudio.functional.resample(
        torchaudio.functional.resample(wav, rate, rate // 2), rate // 2, rate
    )
    distance = log_spectral_distance(narrow, wav, rate, n_fft=512, hop_length=128, high_band_hz=rate / 4)
    assert distance.high > 1.0
    assert distance.full < distance.high
    assert log_spectral_distance(wav, wav, rate, n_fft=512, hop_length=128, high_band_hz=rate / 4).full == 0.0
    with pytest.raises(ValueError, match="mono waveform"):
        log_spectral_distance(torch.zeros(2, 4096), torch.zeros(2, 4096), rate)
