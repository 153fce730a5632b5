"""Fuzzing the inference pipelines (tiny random models): hostile waveforms, odd rates, texts and settings.

``VoiceConversion``, ``TextToSpeech`` and ``SuperResolution`` must return finite audio of the
promised rate, or raise a :class:`~hierspeech2.errors.HierSpeechError` (``AudioError`` for
unusable audio, ``TextError`` for unspeakable text, ``SettingError`` for NaN/negative/exploding
settings), never a raw torch/numpy exception or NaN audio. Pipelines are slower than the other
entry points, so the default budget is small; ``--fuzz-long`` explores hundreds of cases each.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import pytest
import tiny_models
import torch
from fuzz_contract import expect_finite_or_error
from hypothesis import strategies as st

from hierspeech2.pipelines import SuperResolution, TextToSpeech, VoiceConversion

STANDARD_RATES = [8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000, 192_000]
# edge cases that are still audio: each must give finite output
USABLE_KINDS = ["noise", "speechlike", "speechlike", "silence", "dc", "clipped", "tiny", "loud", "impulse"]
# what no pipeline can use: each must be refused with an AudioError
HOSTILE_KINDS = ["huge", "non-finite"]
LAYOUTS = ["mono", "channels-first", "channels-last", "batched"]


def weighted(valid, extreme, invalid):
    """Valid values half of the time, extreme valid ones a third, invalid ones (an error is due) the rest."""
    return st.sampled_from(["valid"] * 3 + ["extreme"] * 2 + ["invalid"]).flatmap(
        {"valid": valid, "extreme": extreme, "invalid": invalid}.__getitem__
    )


SCALES = weighted(
    st.floats(0, 1.5),
    st.sampled_from([0.0, 1e-3, 10.0, 100.0]),
    st.sampled_from([-1.0, -1e-9, math.nan, math.inf, -math.inf]),
)
LENGTH_SCALES = weighted(
    st.floats(0.3, 3),
    st.sampled_from([1e-3, 0.05, 10.0, 1e6]),
    st.sampled_from([0.0, -1.0, math.nan, math.inf]),
)
# no denoiser is loaded, so a ratio > 0 must be refused (SettingError) like -0.1, 1.5 and NaN
RATIOS = st.sampled_from([None] * 6 + [0.0, 0.5, -0.1, 1.5, math.nan])
TEXTS = st.one_of(
    st.sampled_from(
        ["Hello there.", "a", "", "   ", "?!", "1999, 3.5 km; Dr. Smith's cat!", "Hi. " * 30, "naïve café"]
    ),
    st.text(max_size=40),
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models():
    return {
        "backbone": tiny_models.backbone(),
        "ttv": tiny_models.ttv(),
        "encoder": tiny_models.semantic_encoder(),
        "sr48": tiny_models.speechsr(3.0),
        "sr24": tiny_models.speechsr(1.5),
    }


@st.composite
def waveforms(draw, min_seconds: float = 0.0, max_seconds: float = 1.5):
    """(audio, rate): usable audio of odd content three times in four, else anything (shape, rate, NaN,
    1e37 …).

    Usable: a standard rate from 8 to 192 kHz, ``min_seconds``–``max_seconds`` long, mono or
    ``[C, N]``, float32/64, any of :data:`USABLE_KINDS`. Hostile: also 0–1279 samples, any integer
    rate, ``[N, C]`` and ``[B, C, N]`` layouts, float16, NaN/Inf and 1e37 samples.
    """
    hostile = draw(st.sampled_from([False, False, False, True]))
    if hostile:
        rate = draw(st.one_of(st.sampled_from(STANDARD_RATES), st.integers(8_000, 192_000)))
        length = draw(
            st.one_of(st.sampled_from([0, 1, 2, 79, 320, 1279]), st.integers(0, int(max_seconds * rate)))
        )
        kind = draw(st.sampled_from(USABLE_KINDS + HOSTILE_KINDS * 3))
        layout = draw(st.sampled_from(LAYOUTS))
        dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    else:
        rate = draw(st.sampled_from(STANDARD_RATES))
        length = draw(st.integers(int(min_seconds * rate), int(max_seconds * rate)))
        kind = draw(st.sampled_from(USABLE_KINDS))
        layout = draw(st.sampled_from(["mono", "mono", "channels-first"]))
        dtype = draw(st.sampled_from([np.float32, np.float64]))
    channels = draw(st.sampled_from([1, 2, 3]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = np.arange(length) / rate
    data = {
        "noise": lambda: rng.normal(0, 0.3, (channels, length)),
        "speechlike": lambda: np.tile(
            0.4 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 4 * t)), (channels, 1)
        ),
        "silence": lambda: np.zeros((channels, length)),
        "dc": lambda: np.full((channels, length), draw(st.floats(-1, 1))),
        "clipped": lambda: np.clip(
            rng.normal(0, 4, (channels, length)), -draw(st.sampled_from([1.0, 8.0])), 8.0
        ),
        "tiny": lambda: rng.normal(0, 1e-30, (channels, length)),
        "loud": lambda: rng.normal(0, 1, (channels, length)) * 100,
        "huge": lambda: rng.normal(0, 1, (channels, length)) * 1e37,
        "non-finite": lambda: rng.normal(0, 0.3, (channels, length)),
        "impulse": lambda: np.eye(channels, length, length // 2),
    }[kind]()  # fmt: skip
    if kind == "non-finite" and length:
        data[0, rng.integers(0, length)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if layout == "mono":
        data = data[0]
    elif layout == "channels-last":
        data = data.T
    elif layout == "batched":
        data = data[None]
    with np.errstate(over="ignore"):
        data = data.astype(dtype)
    if draw(st.booleans()):
        data = torch.from_numpy(np.ascontiguousarray(data))
    return data, rate


# Most generated cases must reach the models (not only the input checks): at least this share gives audio.
MIN_AUDIO_SHARE = 0.25


def _check_audio(result, rate: int, outcomes: Counter[str]) -> None:
    outcomes["audio" if result is not None else "error"] += 1
    if result is not None:
        audio, out_rate = result
        assert out_rate == rate
        assert audio.ndim == 1 and audio.dtype == torch.float32 and audio.numel() > 0
        assert float(audio.abs().max()) <= 1.0


def _quietly(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no voiced frame", lost symbols: documented warnings
        return expect_finite_or_error(call)


def test_voice_conversion_on_hostile_audio_and_settings(fuzz, models) -> None:
    pipelines = {
        rate: VoiceConversion(
            models["backbone"], models["encoder"], speechsr, output_rate=rate,
            f0_extractor=tiny_models.energy_f0,
        )
        for rate, speechsr in ((16_000, None), (24_000, models["sr24"]), (48_000, models["sr48"]))
    }  # fmt: skip

    outcomes: Counter[str] = Counter()

    def body(source, target, output_rate, noise_scale, denoise_ratio, seed) -> None:
        (source, source_rate), (target, target_rate) = source, target
        vc = pipelines[output_rate]
        result = _quietly(
            lambda: vc(
                source, target, source_rate=source_rate, target_rate=target_rate,
                noise_scale=noise_scale, denoise_ratio=denoise_ratio, seed=seed,
            )
        )  # fmt: skip
        _check_audio(result, output_rate, outcomes)

    fuzz.run(
        "VoiceConversion", body, default=25, long=400,
        source=waveforms(0.0, 1.5), target=waveforms(0.5, 1.5),
        output_rate=st.sampled_from([16_000, 24_000, 48_000]),
        noise_scale=SCALES, denoise_ratio=RATIOS, seed=st.integers(0, 3),
    )  # fmt: skip
    assert outcomes["audio"] >= MIN_AUDIO_SHARE * sum(outcomes.values()), outcomes


def test_text_to_speech_on_hostile_text_prompts_and_settings(fuzz, models) -> None:
    pipelines = {
        16_000: TextToSpeech(models["ttv"], models["backbone"], output_rate=16_000),
        48_000: TextToSpeech(models["ttv"], models["backbone"], models["sr48"]),
    }

    outcomes: Counter[str] = Counter()

    def body(text, prompt, output_rate, settings, seed) -> None:
        prompt, prompt_rate = prompt
        tts = pipelines[output_rate]
        result = _quietly(lambda: tts(text, prompt, prompt_rate=prompt_rate, seed=seed, **settings))
        _check_audio(result, output_rate, outcomes)

    settings = st.fixed_dictionaries(
        {},
        optional={
            "noise_scale_ttv": SCALES, "noise_scale_vc": SCALES, "noise_scale_w": SCALES,
            "length_scale": LENGTH_SCALES, "denoise_ratio": RATIOS,
        },
    )  # fmt: skip
    fuzz.run(
        "TextToSpeech", body, default=25, long=400,
        text=TEXTS, prompt=waveforms(0.5, 1.5), output_rate=st.sampled_from([16_000, 48_000]),
        settings=settings, seed=st.integers(0, 3),
    )  # fmt: skip
    assert outcomes["audio"] >= MIN_AUDIO_SHARE * sum(outcomes.values()), outcomes


def test_super_resolution_on_hostile_audio(fuzz, models) -> None:
    pipelines = {48_000: SuperResolution(models["sr48"]), 24_000: SuperResolution(models["sr24"])}

    outcomes: Counter[str] = Counter()

    def body(audio, output_rate) -> None:
        audio, rate = audio
        result = _quietly(lambda: pipelines[output_rate](audio, rate))
        _check_audio(result, output_rate, outcomes)

    fuzz.run(
        "SuperResolution", body, default=40, long=800,
        audio=waveforms(0.0, 1.0), output_rate=st.sampled_from([24_000, 48_000]),
    )  # fmt: skip
    assert outcomes["audio"] >= MIN_AUDIO_SHARE * sum(outcomes.values()), outcomes


def test_pipelines_reject_an_unknown_setting_as_a_type_error(models) -> None:
    tts = TextToSpeech(models["ttv"], models["backbone"], output_rate=16_000)
    with pytest.raises(TypeError, match="unknown setting"):
        tts("Hi.", torch.zeros(16_000), prompt_rate=16_000, speed=2.0)
