"""hierspeech2.fast_yaapt against AMFM_decompy's own pYAAPT, run here on the same input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from hierspeech2.audio import load_audio
from hierspeech2.fast_yaapt import YAAPT_DEFAULTS, _shc_peaks, yaapt_parameters, yaapt_track
from hierspeech2.pitch import F0_MAX_HZ, yaapt_settings

pyaapt = pytest.importorskip("amfm_decompy.pYAAPT")
basic = pytest.importorskip("amfm_decompy.basic_tools")

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"
RATE = 16_000


def official_track(signal: np.ndarray, **settings: float) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return pyaapt.yaapt(basic.SignalObj(signal.copy(), RATE), **settings).samp_values


def ours(signal: np.ndarray, **settings: float) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return yaapt_track(signal.copy(), RATE, **settings)


def speech(index: int) -> np.ndarray:
    path = sorted(SHARED_AUDIO.glob("*.wav"))[index]
    return load_audio(path, RATE).double().numpy()


HARD_SIGNALS = [
    "noise",
    "tone in noise",
    "glide with harmonics",
    "speech between digital silence",
    "quiet speech",
    "half a second",
]


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(2 * RATE) / RATE
    glide = np.sin(2 * np.pi * np.cumsum(np.linspace(90, 330, t.size)) / RATE)
    return {
        "noise": 0.1 * rng.standard_normal(2 * RATE),
        "tone in noise": 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(t.size),
        "glide with harmonics": glide + 0.4 * glide**3 + 0.01 * rng.standard_normal(t.size),
        "speech between digital silence": np.concatenate([np.zeros(5_003), speech(1), np.zeros(9_001)]),
        "quiet speech": 1e-4 * speech(2),
        "half a second": speech(3)[: RATE // 2],
    }


@pytest.mark.parametrize("variant", sorted(F0_MAX_HZ))
@pytest.mark.parametrize("index", range(4))
def test_equals_pyaapt_bit_for_bit_on_speech(index, variant):
    signal = np.pad(speech(index), (160, 160))
    settings = yaapt_settings(F0_MAX_HZ[variant])
    expected = official_track(signal, **settings)
    got = ours(signal, **settings)
    assert (expected > 0).mean() > 0.3  # speech: the comparison is not between two silences
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("variant", sorted(F0_MAX_HZ))
@pytest.mark.parametrize("name", HARD_SIGNALS)
def test_equals_pyaapt_bit_for_bit_on_hard_signals(name, variant):
    signal = np.pad(signals()[name], (160, 160))
    settings = yaapt_settings(F0_MAX_HZ[variant])
    np.testing.assert_array_equal(ours(signal, **settings), official_track(signal, **settings))


def test_equals_pyaapt_with_its_own_defaults():
    signal = speech(0)
    np.testing.assert_array_equal(ours(signal), official_track(signal))


def test_shc_peak_picking_equals_pyaapt_row_by_row():
    # Rows with no, one to three, and four or more peaks, flat rows and all-zero rows.
    rng = np.random.default_rng(3)
    delta = RATE / 8192
    rows = np.abs(rng.standard_normal((300, 614))) ** rng.uniform(1, 12, (300, 1))
    rows[:40] = 1.0  # flat
    rows[40:50] = 0.0
    bins = np.arange(rows.shape[1])
    for row in rows[50:250]:  # one to five smooth bumps on a low floor: 0 to 5 candidates
        row[:] = 1e-3 * (1 + bins / bins.size)
        for centre in rng.uniform(40, 590, rng.integers(1, 6)):
            row += rng.uniform(0.2, 1.0) * np.exp(-0.5 * ((bins - centre) / rng.uniform(2, 8)) ** 2)
    params = yaapt_parameters(**yaapt_settings(1100.0))
    pitch, merit = _shc_peaks(rows, delta, params)
    for i, row in enumerate(rows):
        expected_pitch, expected_merit = pyaapt.peaks(row, delta, params["shc_maxpeaks"], params)
        np.testing.assert_array_equal(pitch[:, i], expected_pitch, err_msg=f"row {i}")
        np.testing.assert_array_equal(merit[:, i], expected_merit, err_msg=f"row {i}")
    assert len({tuple(m) for m in merit.T}) > 50  # the rows exercised many different answers


def test_parameters_are_checked_by_name():
    assert yaapt_parameters()["f0_max"] == YAAPT_DEFAULTS["f0_max"] == 400.0
    assert yaapt_parameters(f0_max=1100.0)["f0_max"] == 1100.0
    with pytest.raises(TypeError, match="unknown YAAPT setting.*'f0_maximum'"):
        yaapt_parameters(f0_maximum=1100.0)


def test_low_sample_rate_reads_zeros_past_the_spectrum():
    # At 8 kHz with f0_max 1100 the fourth harmonic's SHC rows reach past the FFT's bins.
    t = np.arange(8_000) / 8_000
    tone = 0.3 * sum(np.sin(2 * np.pi * k * 150 * t) / k for k in (1, 2, 3))
    with np.errstate(all="ignore"):
        f0 = yaapt_track(np.pad(tone, (80, 80)), 8_000, **yaapt_settings(1100.0))
    voiced = f0[f0 > 0]
    assert voiced.size >= 0.9 * f0.size
    assert abs(np.median(voiced) - 150.0) < 3.0  # 8000 / 54 = 148.1: one lag's resolution
