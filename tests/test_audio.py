from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from hierspeech2.audio import (
    LinearSpectrogram,
    LogMelSpectrogram,
    MelConfig,
    linear_spectrogram,
    load_audio,
    log_mel,
    mel_filterbank,
    pad_to_multiple,
    read_audio,
    resample,
    save_audio,
    validate_waveform,
)
from hierspeech2.errors import AudioError, AudioFileNotFoundError, HierSpeechError


def _tone(freq: float, rate: int, seconds: float = 0.5, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wav: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(wav * torch.hann_window(wav.shape[-1]))
    return float(spectrum.abs().argmax()) * rate / wav.shape[-1]


# ------------------------------------------------------------------ log-mel parity


@pytest.mark.parametrize("case", ["a", "b"])
def test_log_mel_matches_official(parity_cases, parity_settings, case):
    settings = parity_settings[f"{case}.mel"]
    mel_fn = LogMelSpectrogram(
        n_fft=settings["n_fft"],
        win_length=settings["win"],
        hop_length=settings["hop"],
        n_mels=settings["n_mels"],
        f_min=settings["fmin"],
        f_max=settings["fmax"],
    )
    wav = parity_cases[f"{case}.mel.audio"]  # [1, N]
    expected = parity_cases[f"{case}.mel.out"]  # [1, 80, T]
    with torch.inference_mode():
        out = mel_fn(wav)
    assert out.shape == expected.shape == (1, 80, wav.shape[-1] // 320)
    assert (out - expected).abs().max().item() <= 1e-4


def test_log_mel_defaults_are_the_released_config(parity_cases):
    default = LogMelSpectrogram()
    from dataclasses import asdict

    from_config = LogMelSpectrogram(**asdict(MelConfig()))
    wav = parity_cases["a.mel.audio"]
    assert torch.equal(default(wav), from_config(wav))
    assert torch.equal(default(wav), log_mel(wav, default.mel_basis, default.window, 320))


def test_log_mel_batched_and_unbatched_agree(parity_cases):
    mel_fn = LogMelSpectrogram()
    batch = torch.cat([parity_cases["a.mel.audio"], parity_cases["b.mel.audio"]])  # [2, N]
    out = mel_fn(batch)
    assert out.shape == (2, 80, 150)
    torch.testing.assert_close(mel_fn(batch[1]), out[1], rtol=0, atol=1e-5)


def test_log_mel_buffers_are_not_in_state_dict():
    mel_fn = LogMelSpectrogram()
    assert dict(mel_fn.state_dict()) == {}
    assert {name for name, _ in mel_fn.named_buffers()} == {"mel_basis", "window"}
    assert mel_fn.mel_basis.shape == (80, 641)


def test_log_mel_follows_module_dtype_and_input_dtype(parity_cases):
    wav = parity_cases["a.mel.audio"]
    reference = LogMelSpectrogram()(wav)
    double = LogMelSpectrogram().double()(wav.double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), reference, rtol=0, atol=1e-4)
    half = LogMelSpectrogram()(wav.half())  # computed in float32, returned in the input dtype
    assert half.dtype == torch.float16
    assert torch.isfinite(half).all()


def test_mel_filterbank_is_htk_without_norm():
    basis = mel_filterbank()
    assert basis.shape == (80, 641)
    # Unnormalised triangles peak at 1 and never overlap more than two at a bin.
    assert basis.max().item() == pytest.approx(1.0, abs=0.02)
    assert (basis > 0).sum(0).max().item() <= 2
    assert basis[:, 0].abs().sum().item() == 0.0  # the 0 Hz bin sits on the first filter's edge


# ------------------------------------------------------------------ linear spectrogram


def test_linear_spectrogram_is_power_stft_without_last_frame():
    torch.manual_seed(0)
    wav = torch.randn(2, 16000) * 0.1
    spec = LinearSpectrogram()(wav)
    assert spec.shape == (2, 641, 50)

    # Independent |STFT|^2: explicit reflect pad, framing, Hann window, rFFT.
    padded = torch.nn.functional.pad(wav[:, None], (640, 640), mode="reflect")[:, 0]
    frames = padded.unfold(-1, 1280, 320)[:, :50]  # [B, T, 1280]
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(1280) / 1280)
    expected = torch.fft.rfft(frames * window, dim=-1).abs().pow(2).transpose(1, 2)
    torch.testing.assert_close(spec, expected, rtol=1e-4, atol=1e-4)


def test_linear_spectrogram_magnitude_option_and_tone_bin():
    wav = torch.from_numpy(_tone(1000.0, 16000, seconds=1.0))
    magnitude = LinearSpectrogram(power=1.0)(wav)
    power = LinearSpectrogram()(wav)
    torch.testing.assert_close(magnitude.pow(2), power, rtol=1e-4, atol=1e-3)
    # 1 kHz with 12.5 Hz bins → bin 80 in every full frame.
    assert (magnitude[:, 4:-4].argmax(0) == 80).all()
    assert LinearSpectrogram().n_freqs == 641
    assert dict(LinearSpectrogram().state_dict()) == {}


@pytest.mark.parametrize("n_samples", [0, 100, 640])
def test_spectrograms_reject_too_short_audio(n_samples):
    with pytest.raises(AudioError, match="too short"):
        LogMelSpectrogram()(torch.zeros(1, n_samples))
    with pytest.raises(AudioError, match="too short"):
        LinearSpectrogram()(torch.zeros(n_samples))


def test_spectrograms_reject_integer_audio():
    with pytest.raises(AudioError, match="floating-point"):
        linear_spectrogram(torch.zeros(2000, dtype=torch.int16), torch.hann_window(1280), 320, 1280)


# ------------------------------------------------------------------ file I/O


@pytest.mark.parametrize("extension", ["wav", "flac"])
def test_save_load_round_trip(tmp_path, extension):
    wav = torch.from_numpy(_tone(220.0, 16000))
    path = save_audio(tmp_path / f"tone.{extension}", wav, 16000)
    assert path.exists()
    assert sf.info(str(path)).format == extension.upper()
    loaded = load_audio(path, 16000)
    assert loaded.dtype == torch.float32 and loaded.shape == wav.shape
    assert (loaded - wav).abs().max().item() < 1 / 2**14  # 16-bit PCM quantisation
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_save_audio_float_subtype_is_exact_and_replaces_atomically(tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(b"old")
    wav = torch.rand(1, 1, 4000) - 0.5
    save_audio(path, wav, 16000, subtype="FLOAT")
    assert torch.equal(load_audio(path, 16000), wav.flatten())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


def test_save_audio_bad_extension_and_subtype(tmp_path):
    with pytest.raises(AudioError, match="extension"):
        save_audio(tmp_path / "x.xyz", torch.zeros(100), 16000)
    with pytest.raises(AudioError, match="subtype"):
        save_audio(tmp_path / "x.flac", torch.zeros(100), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "x.wav", torch.tensor([0.0, float("nan")]), 16000)
    assert not list(tmp_path.iterdir())


def test_stereo_is_mixed_down(tmp_path):
    left, right = _tone(300.0, 16000), _tone(500.0, 16000, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wav, rate = read_audio(path)
    assert rate == 16000 and wav.shape == (8000,)
    torch.testing.assert_close(wav, torch.from_numpy((left + right) / 2))


def test_many_channels_are_mixed_down(tmp_path):
    data = np.stack([np.full(1000, c / 10, dtype=np.float32) for c in range(6)], axis=1)
    path = tmp_path / "six.wav"
    sf.write(str(path), data, 16000, subtype="FLOAT")
    torch.testing.assert_close(load_audio(path), torch.full((1000,), 0.25))


@pytest.mark.parametrize("rate", [8000, 22050, 24000, 44100, 48000])
def test_load_audio_resamples_to_16k(tmp_path, rate):
    path = tmp_path / f"tone{rate}.wav"
    sf.write(str(path), _tone(440.0, rate, seconds=1.0), rate, subtype="FLOAT")
    wav = load_audio(path, 16000)
    assert wav.shape == (16000,)
    assert _peak_hz(wav, 16000) == pytest.approx(440.0, abs=2.0)
    assert wav.abs().max().item() == pytest.approx(0.5, abs=0.02)


def test_resample_uses_the_official_kaiser_filter():
    torch.manual_seed(0)
    wav = torch.randn(1, 4800)
    out = resample(wav, 48000, 16000)
    assert out.shape == (1, 1600)
    expected = AF.resample(wav, 48000, 16000, resampling_method="sinc_interp_kaiser")
    assert torch.equal(out, expected)
    assert not torch.allclose(out, AF.resample(wav, 48000, 16000), atol=1e-4)  # differs from Hann
    assert resample(wav, 16000, 16000) is wav


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16k", True])
def test_resample_rejects_bad_rates(rate):
    with pytest.raises(AudioError, match="Hz"):
        resample(torch.zeros(100), rate, 16000)


def test_missing_file(tmp_path):
    with pytest.raises(AudioFileNotFoundError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    # Also catchable as the built-in and the package error.
    with pytest.raises(FileNotFoundError):
        read_audio(tmp_path / "missing.wav")


@pytest.mark.parametrize("content", [b"", b"this is not audio", bytes(range(256)) * 8])
def test_unreadable_file(tmp_path, content):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="cannot read") as info:
        load_audio(path)
    assert not isinstance(info.value, AudioFileNotFoundError)


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_empty_audio(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_audio(tmp_path, bad):
    path = tmp_path / "nan.wav"
    sf.write(str(path), np.array([0.0, bad, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN/Inf"):
        load_audio(path)


def test_validate_waveform():
    array = np.zeros(10, dtype=np.float64)
    out = validate_waveform(array)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == (10,)
    tensor = torch.zeros(2, 10)
    assert validate_waveform(tensor) is tensor
    with pytest.raises(AudioError, match="prompt.*dtype int16"):
        validate_waveform(np.zeros(10, dtype=np.int16), "prompt")
    with pytest.raises(AudioError, match="dtype torch.int64"):
        validate_waveform(torch.zeros(10, dtype=torch.long))
    with pytest.raises(AudioError, match="Tensor or numpy"):
        validate_waveform([0.0, 0.1])
    with pytest.raises(AudioError, match="0 samples"):
        validate_waveform(torch.zeros(3, 0))
    with pytest.raises(AudioError, match="scalar"):
        validate_waveform(torch.tensor(0.5))
    with pytest.raises(AudioError, match="at least 320"):
        validate_waveform(torch.zeros(100), min_samples=320)
    with pytest.raises(AudioError, match="source contains 1 NaN/Inf"):
        validate_waveform(torch.tensor([0.0, float("nan")]), "source")
    assert issubclass(AudioError, HierSpeechError) and issubclass(AudioError, ValueError)


def test_pad_to_multiple_follows_official_rule():
    assert pad_to_multiple(torch.ones(1, 48000)).shape == (1, 48640)
    assert pad_to_multiple(torch.ones(1280)).shape == (2560,)  # always adds 1..multiple samples
    padded = pad_to_multiple(torch.ones(1281), 1280)
    assert padded.shape == (2560,) and padded[1281:].abs().sum() == 0
