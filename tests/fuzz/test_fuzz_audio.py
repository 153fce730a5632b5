"""Fuzzing audio input: real files in many formats, damaged files, arrays of any dtype and shape.

``load_audio`` / ``read_audio`` must give a finite mono waveform or an ``AudioError``;
``validate_waveform`` a tensor or an ``AudioError``; ``yaapt`` finite F0 in Hz or an ``AudioError``.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from fuzz_contract import damaged, expect_finite_or_error
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hierspeech2.audio import load_audio, read_audio, resample, validate_waveform
from hierspeech2.errors import AudioError
from hierspeech2.pitch import yaapt

# (format, subtype, extension): integer PCM of every width, float, companded, lossy, ADPCM.
FORMATS = [
    ("WAV", "PCM_U8", "wav"), ("WAV", "PCM_16", "wav"), ("WAV", "PCM_24", "wav"), ("WAV", "PCM_32", "wav"),
    ("WAV", "FLOAT", "wav"), ("WAV", "DOUBLE", "wav"), ("WAV", "ULAW", "wav"), ("WAV", "IMA_ADPCM", "wav"),
    ("WAV", "MS_ADPCM", "wav"), ("RF64", "PCM_16", "wav"), ("W64", "FLOAT", "w64"),
    ("FLAC", "PCM_S8", "flac"), ("FLAC", "PCM_24", "flac"), ("OGG", "VORBIS", "ogg"), ("OGG", "OPUS", "opus"),
    ("AIFF", "PCM_16", "aiff"), ("AIFF", "FLOAT", "aiff"), ("AU", "ALAW", "au"), ("CAF", "ALAC_16", "caf"),
    ("MP3", "MPEG_LAYER_III", "mp3"),
]  # fmt: skip
FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}
RATES = st.one_of(
    st.sampled_from([8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000, 192_000]),
    st.integers(1, 200_000),
)
TARGET_RATES = st.sampled_from([16_000, 16_000, 8_000, 22_050, 24_000, 44_100, 48_000])


@st.composite
def signals(draw, float_format: bool) -> np.ndarray:
    """[frames, channels] float arrays: noise, silence, DC, clipping, tiny values, NaN/Inf (float files)."""
    frames = draw(st.integers(0, 1_200))
    channels = draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["noise", "silence", "dc", "clipped", "tiny", "sine", "non-finite"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "silence":
        data = np.zeros((frames, channels))
    elif kind == "dc":
        data = np.full((frames, channels), draw(st.floats(-1, 1)))
    elif kind == "clipped":
        data = np.clip(rng.normal(0, 4, (frames, channels)), -8, 8)
    elif kind == "tiny":
        data = rng.normal(0, 1e-30, (frames, channels))
    elif kind == "sine":
        data = np.sin(2 * np.pi * 150 * np.arange(frames) / 16_000)[:, None].repeat(channels, 1) * 0.5
    else:
        data = rng.normal(0, 0.3, (frames, channels))
    if kind == "non-finite" and float_format and frames:
        data[rng.integers(0, frames), 0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if kind == "clipped" and float_format and draw(st.booleans()):
        data *= 1e37  # finite in float32, but no longer audio
    return data.astype(np.float32)


def test_load_audio_on_generated_and_damaged_files(fuzz, tmp_path) -> None:
    names = itertools.count()

    def body(spec, rate, target, data) -> None:
        audio_format, subtype, extension = spec
        signal = data.draw(signals(subtype in FLOAT_SUBTYPES))
        path = tmp_path / f"{next(names)}.{extension}"
        try:
            sf.write(str(path), signal, rate, subtype=subtype, format=audio_format)
        except (sf.LibsndfileError, ValueError, RuntimeError):
            assume(False)  # soundfile cannot write this combination (rate or channels of a codec)
        path.write_bytes(data.draw(damaged(path.read_bytes())))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wav = expect_finite_or_error(lambda: load_audio(path, target))
        if wav is not None:
            assert wav.dtype == torch.float32 and wav.ndim == 1 and wav.numel() >= 1

    fuzz.run(
        "load_audio(file)", body, default=80, long=3_000,
        spec=st.sampled_from(FORMATS), rate=RATES, target=TARGET_RATES, data=st.data(),
    )  # fmt: skip


def test_read_audio_on_arbitrary_bytes(fuzz, tmp_path) -> None:
    names = itertools.count()
    headers = st.sampled_from(
        [b"", b"RIFF\xff\xff\xff\x7fWAVEfmt ", b"fLaC", b"OggS", b"FORM\x00\x00\x00\x10AIFF", b"ID3"]
    )

    def body(header, payload, extension) -> None:
        path = tmp_path / f"{next(names)}.{extension}"
        path.write_bytes(header + payload)
        result = expect_finite_or_error(lambda: read_audio(path))
        if result is not None:
            wav, rate = result
            assert wav.ndim == 1 and rate > 0

    fuzz.run(
        "read_audio(bytes)", body, default=100, long=1_500,
        header=headers, payload=st.binary(max_size=1_024),
        extension=st.sampled_from(["wav", "flac", "ogg", "bin", ""]),
    )  # fmt: skip


NUMPY_DTYPES = st.sampled_from(
    [
        np.float16,
        np.float32,
        np.float64,
        np.longdouble,
        ">f4",
        ">f8",
        "<f2",
        np.int16,
        np.uint8,
        np.complex64,
        np.bool_,
    ]
)


def test_validate_waveform_on_any_array(fuzz) -> None:
    def body(array, as_tensor, min_samples) -> None:
        wav = array
        if as_tensor:
            try:
                wav = torch.from_numpy(np.asarray(array, dtype=array.dtype.newbyteorder("="), order="C"))
            except TypeError:
                assume(False)  # torch has no such dtype (float128)
        checked = expect_finite_or_error(lambda: validate_waveform(wav, min_samples=min_samples))
        if checked is not None:
            assert isinstance(checked, torch.Tensor) and checked.is_floating_point()
            assert tuple(checked.shape) == array.shape and checked.shape[-1] >= min_samples

    arrays = NUMPY_DTYPES.flatmap(
        lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=16))
    )
    fuzz.run(
        "validate_waveform", body, default=200, long=2_000,
        array=arrays, as_tensor=st.booleans(), min_samples=st.integers(0, 20),
    )  # fmt: skip


def test_resample_on_any_rates(fuzz) -> None:
    def body(n, orig, new) -> None:
        wav = torch.randn(n)
        out = expect_finite_or_error(lambda: resample(wav, orig, new))
        if out is not None:
            assert out.ndim == 1

    rates = st.one_of(st.integers(1, 400_000), st.sampled_from([0, -16_000, 16_000.5, float("nan"), True]))
    fuzz.run("resample", body, default=100, long=1_000, n=st.integers(0, 600), orig=rates, new=rates)


def test_yaapt_on_hostile_waveforms(fuzz) -> None:
    def body(signal, variant, sample_rate, batch) -> None:
        wav = torch.from_numpy(signal)
        if batch:
            wav = wav.expand(batch, -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no voiced frame" is the documented warning
            f0 = expect_finite_or_error(lambda: yaapt(wav, variant, sample_rate))
        if f0 is not None:
            assert f0.ndim == 3 and f0.shape[1] == 1 and bool((f0 >= 0).all())

    @st.composite
    def waveforms(draw) -> np.ndarray:
        n = draw(st.integers(0, 3_000))
        kind = draw(
            st.sampled_from(["noise", "silence", "dc", "sine", "clipped", "loud", "tiny", "impulse", "nan"])
        )
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        t = np.arange(n) / 16_000
        signal = {
            "noise": lambda: rng.normal(0, 0.3, n),
            "silence": lambda: np.zeros(n),
            "dc": lambda: np.full(n, draw(st.floats(-1, 1))),
            "sine": lambda: 0.5 * np.sin(2 * np.pi * draw(st.floats(20, 2_000)) * t),
            "clipped": lambda: np.sign(np.sin(2 * np.pi * 150 * t)),
            "loud": lambda: 1e30 * np.sin(2 * np.pi * 150 * t),
            "tiny": lambda: 1e-40 * np.sin(2 * np.pi * 150 * t),
            "impulse": lambda: np.eye(1, n, n // 2)[0] if n else np.zeros(0),
            "nan": lambda: np.where(rng.random(n) < 0.01, np.nan, rng.normal(0, 0.3, n)),
        }[kind]()
        with np.errstate(over="ignore"):  # "loud" overflows float16 to inf: validation must catch it
            return signal.astype(draw(st.sampled_from([np.float32, np.float64, np.float16])))

    fuzz.run(
        "yaapt", body, default=30, long=600,
        signal=waveforms(), variant=st.sampled_from(["inference", "training"]),
        sample_rate=st.sampled_from([16_000, 16_000, 8_000, 22_050, 4_000, 1_000]),
        batch=st.sampled_from([0, 0, 2]),
    )  # fmt: skip


# ---- regressions caught by fuzzing ------------------------------------------------------------


@pytest.mark.parametrize(("orig", "new"), [(2**31 - 1, 16_000), (44_101, 16_000), (44_100, 10**9)])
def test_resampling_between_coprime_rates_is_refused_before_allocating(orig, new) -> None:
    # Caught by fuzzing: a WAV header claiming 2**31-1 Hz (or load_audio(sample_rate=10**9)) made the
    # exact sinc resampler allocate a [new/gcd, orig/gcd] filter: 137 TB, and the process was killed.
    with pytest.raises(AudioError, match="convert the audio to a standard rate"):
        resample(torch.zeros(100), orig, new)


def test_a_wav_header_with_an_absurd_rate_is_an_audio_error(tmp_path) -> None:
    path = tmp_path / "absurd.wav"
    sf.write(str(path), np.zeros(100, np.float32), 2**31 - 1)
    with pytest.raises(AudioError, match="2147483647 Hz"):
        load_audio(path)


def test_standard_rates_still_resample() -> None:
    for rate in (8_000, 11_025, 22_050, 24_000, 32_000, 37_800, 44_100, 48_000, 88_200, 96_000, 192_000):
        assert resample(torch.zeros(rate // 10), rate, 16_000).shape == (1_600,)


@pytest.mark.parametrize("dtype", [">f4", ">f8", np.longdouble])
def test_big_endian_and_float128_arrays_are_accepted(dtype) -> None:
    # Caught by fuzzing: torch.from_numpy raised ValueError (byte order) / TypeError (float128).
    wav = validate_waveform(np.full(4, 0.25, dtype=dtype))
    assert wav.is_floating_point() and torch.equal(wav.double(), torch.full((4,), 0.25, dtype=torch.float64))


def test_yaapt_takes_a_numpy_integer_sample_rate() -> None:
    # Caught by fuzzing: sample_rate=np.int64(16000) (what soundfile returns) was refused.
    f0 = yaapt(torch.zeros(1_280), sample_rate=np.int64(16_000))
    assert f0.shape == (1, 1, 16)


def test_a_zero_dimensional_array_is_refused_like_a_scalar_tensor() -> None:
    # Caught by fuzzing: np.ascontiguousarray turned a 0-d array into shape [1], so a numpy scalar
    # passed as one sample while the same tensor was refused.
    with pytest.raises(AudioError, match="scalar"):
        validate_waveform(np.array(0.5, dtype=np.float32))
