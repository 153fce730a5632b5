"""NANSY-style perturbation: each transform changes what it should and keeps what it should."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchaudio.functional as AF

from hierspeech2.audio import load_audio
from hierspeech2.data.datasets import BackboneExamples
from hierspeech2.data.perturbation import (
    Perturbation,
    biquad_coefficients,
    biquad_response,
    parametric_eq,
    random_ratio,
    shift_formants_and_pitch,
)
from hierspeech2.pitch import yaapt

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mini-libritts" / "LibriTTS"
SR = 16_000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """Two seconds of a male and of a female voice of the shared mini corpus, [2, 32 000]."""
    paths = [
        CORPUS / "train-clean-100/1003/5001/1003_5001_000000_000000.wav",
        CORPUS / "dev-clean/1004/5001/1004_5001_000000_000000.wav",
    ]
    if not all(path.is_file() for path in paths):
        pytest.skip(f"shared mini corpus not found under {CORPUS}")
    return torch.stack([load_audio(path)[: 2 * SR] for path in paths])


@pytest.fixture(scope="module")
def clean_f0(speech) -> torch.Tensor:
    return yaapt(speech, "inference")[:, 0]


def frame_ratios(clean_f0: torch.Tensor, wav: torch.Tensor) -> list[torch.Tensor]:
    """Per row: F0(wav) / F0(clean) on the frames YAAPT finds voiced in both."""
    shifted = yaapt(wav, "inference")[:, 0]
    return [s[(c > 0) & (s > 0)] / c[(c > 0) & (s > 0)] for c, s in zip(clean_f0, shifted)]


def test_unit_ratios_give_the_input_back(speech) -> None:
    out = shift_formants_and_pitch(speech, 1.0, 1.0, 1.0)
    assert out.shape == speech.shape
    assert (out - speech).abs().max() < 2e-3 * speech.abs().max()


def test_pitch_shift_moves_yaapt_f0_by_the_ratio(speech, clean_f0) -> None:
    ratios = torch.tensor([1.4, 0.7])  # the male voice up, the female one down
    out = shift_formants_and_pitch(speech, 1.0, ratios)
    for measured, expected in zip(frame_ratios(clean_f0, out), ratios):
        assert measured.numel() > 100
        assert measured.median() == pytest.approx(float(expected), rel=0.05)


def test_formant_shift_keeps_f0_and_moves_the_envelope(speech, clean_f0) -> None:
    ratios = torch.tensor([1.3, 1 / 1.3])
    out = shift_formants_and_pitch(speech, ratios, 1.0)
    for measured in frame_ratios(clean_f0, out):
        assert measured.median() == pytest.approx(1.0, abs=0.03)
    # the long-term log spectrum on a log-frequency axis slides by log(ratio)
    for row, ratio in enumerate(ratios):
        assert _envelope_shift(speech[row], out[row]) == pytest.approx(math.log(float(ratio)), abs=0.06)


def _envelope_shift(clean: torch.Tensor, shifted: torch.Tensor) -> float:
    """log-frequency shift that best aligns the average spectral envelopes (300 Hz - 5 kHz).

    Envelopes here are plain cepstral smoothing of 2048-point frames (20 coefficients), not the
    transform's own 1024-point true envelope, and averaged over the loud frames.
    """
    grid = torch.linspace(math.log(300.0), math.log(5000.0), 400)
    window = torch.hann_window(2048)

    def profile(wav: torch.Tensor) -> torch.Tensor:
        log_spec = torch.stft(wav, 2048, 256, window=window, return_complex=True).abs().clamp_min(1e-7).log()
        cepstrum = torch.fft.irfft(log_spec.T, n=2048)
        cepstrum[:, 20:-19] = 0
        envelope = torch.fft.rfft(cepstrum).real  # [T, 1025]
        loud = log_spec.exp().pow(2).sum(0) > 1e-3 * log_spec.exp().pow(2).sum(0).max()
        average = envelope[loud].mean(0)
        bins = grid.exp() / (SR / 2048)
        low = bins.floor().long()
        return torch.lerp(average[low], average[low + 1], bins - low)

    a, b = profile(clean), profile(shifted)
    step = float(grid[1] - grid[0])
    lags = range(-60, 61)
    scores = [torch.corrcoef(torch.stack([_window(a, -lag), _window(b, lag)]))[0, 1] for lag in lags]
    return step * 2 * list(lags)[int(torch.stack(scores).argmax())]


def _window(x: torch.Tensor, lag: int) -> torch.Tensor:
    return x[60 + lag : len(x) - 60 + lag]


def test_pitch_range_scales_the_contour_around_the_median(speech, clean_f0) -> None:
    female = speech[1:].expand(2, -1)  # the livelier contour
    out = shift_formants_and_pitch(female, 1.0, 1.0, torch.tensor([1.5, 1 / 1.5]))
    shifted = yaapt(out, "inference")[:, 0]
    clean = clean_f0[1]
    slopes = []
    for row in shifted:
        both = (clean > 0) & (row > 0)
        x, y = clean[both].log(), row[both].log()
        x, y = x - x.mean(), y - y.mean()
        slopes.append(float((x * y).sum() / (x * x).sum()))
    # log-F0 deviations grow by the range ratio (less where the clamp and smoothing act), or shrink
    assert 1.1 < slopes[0] < 1.6
    assert 0.55 < slopes[1] < 0.85


def test_parametric_eq_is_the_cookbook_biquads_of_torchaudio() -> None:
    generator = torch.Generator().manual_seed(0)
    noise = 0.05 * torch.randn(2, 8000, generator=generator)
    frequency = torch.tensor([[100.0, 1000.0, 6000.0], [200.0, 3000.0, 7000.0]])
    gain = torch.tensor([[6.0, -9.0, 12.0], [-12.0, 4.0, -3.0]])
    q = torch.tensor([[0.707, 3.0, 0.707], [1.0, 2.0, 0.5]])
    out = parametric_eq(noise, frequency, gain, q, ("lowshelf", "peaking", "highshelf"), SR)
    assert out.shape == noise.shape
    for row in range(2):
        f, g, qq = frequency[row].tolist(), gain[row].tolist(), q[row].tolist()
        ref = AF.bass_biquad(noise[row], SR, g[0], f[0], qq[0])
        ref = AF.equalizer_biquad(ref, SR, f[1], g[1], qq[1])
        ref = AF.treble_biquad(ref, SR, g[2], f[2], qq[2])
        assert torch.allclose(out[row], ref, atol=2e-5), (out[row] - ref).abs().max()


def test_eq_changes_the_spectrum_within_its_gain_bounds() -> None:
    perturb = Perturbation(seed=0)
    params = perturb.sample_parameters(16)
    assert params["gain_db"].abs().max() <= 12 and params["gain_db"].std() > 4
    assert params["q"].min() >= 2 and params["q"].max() <= 5
    assert params["frequency"][0, 0] == pytest.approx(60.0) and params["frequency"].max() <= 0.9 * SR / 2
    assert len(perturb.eq_kinds) == params["gain_db"].shape[1] == 10
    # one filter reaches exactly its gain at its centre and never exceeds it
    for kind, gain in (("peaking", 12.0), ("peaking", -12.0)):
        b, a = biquad_coefficients(kind, torch.tensor(1000.0), torch.tensor(gain), torch.tensor(2.0), SR)
        response_db = 20 * biquad_response(b, a, 1600).abs().log10()
        assert response_db[100] == pytest.approx(gain, abs=1e-3)  # bin 100 = 1 kHz
        assert response_db.abs().max() <= 12.0 + 1e-4
    # random cascades: white noise changes by the predicted response, bounded by the summed gains
    noise = 0.02 * torch.randn(4, 4 * SR, generator=torch.Generator().manual_seed(1))
    args = (params["frequency"][:4], params["gain_db"][:4], params["q"][:4], perturb.eq_kinds, SR)
    out = parametric_eq(noise, *args)
    assert out.shape == noise.shape
    measured = 10 * (_welch(out) / _welch(noise)).log10()  # [4, 1025]
    predicted = torch.zeros_like(measured)
    for index, kind in enumerate(perturb.eq_kinds):
        b, a = biquad_coefficients(kind, *(p[:4, index] for p in args[:3]), SR)
        predicted += 20 * biquad_response(b, a, 2048).abs().log10()
    band = slice(16, 960)  # 125 Hz - 7.5 kHz
    assert (measured[:, band] - predicted[:, band]).abs().max() < 1.0
    bound = params["gain_db"][:4].abs().sum(dim=1, keepdim=True)
    assert (predicted.abs() <= bound + 1e-3).all()
    assert predicted.abs().amax(dim=1).min() > 3  # every row is audibly equalised


def _welch(wav: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(wav, 2048, 512, window=torch.hann_window(2048), return_complex=True)
    return spec.abs().pow(2).mean(-1)


def test_random_ratios_cover_both_directions_within_bounds() -> None:
    ratios = random_ratio(2.0, (4000,), 0.5, generator=torch.Generator().manual_seed(0))
    assert ratios.min() >= 0.5 and ratios.max() <= 2.0
    assert (ratios < 1).float().mean() == pytest.approx(0.5, abs=0.03)
    never = random_ratio(1.4, (100,), 0.0, generator=torch.Generator().manual_seed(0))
    assert (never >= 1).all()
    with pytest.raises(ValueError, match="max_ratio"):
        random_ratio(0.5, (3,))
    with pytest.raises(ValueError, match="formant_shift"):
        Perturbation(formant_shift=0.8)


def test_perturbation_keeps_shape_and_peak_and_is_seeded(speech) -> None:
    perturb = Perturbation(seed=3)
    single = perturb(speech[0])
    assert single.shape == speech[0].shape and single.dtype == speech[0].dtype
    assert single.abs().max() == pytest.approx(float(speech[0].abs().max()), rel=1e-5)
    assert torch.isfinite(single).all() and not torch.allclose(single, speech[0], atol=1e-2)
    batch = Perturbation(seed=3)(speech)
    assert batch.shape == speech.shape
    again = Perturbation(seed=3)(speech)
    assert torch.equal(batch, again)
    assert torch.allclose(batch.abs().amax(dim=1), speech.abs().amax(dim=1), rtol=1e-5)
    fixed = Perturbation(seed=3, peak=0.5)(speech)
    assert torch.allclose(fixed.abs().amax(dim=1), torch.full((2,), 0.5))
    silence = Perturbation(seed=0)(torch.zeros(2, 8000))
    assert torch.equal(silence, torch.zeros(2, 8000))


def test_perturbation_runs_in_the_backbone_examples(speech) -> None:
    examples = BackboneExamples(segment_samples=320 * 40, perturb=Perturbation(seed=0))
    raw = {"audio": speech[0], "semantic": torch.randn(8, 100), "f0": torch.rand(400) * 200}
    example = examples(raw)
    assert example["perturbed_audio"].shape == example["audio"].shape == (320 * 40,)
    assert not torch.allclose(example["perturbed_audio"], example["audio"], atol=1e-3)
