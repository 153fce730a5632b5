"""Numerical safety of inference: silent prompts, zero F0, single frames and extreme settings.

Every case gives finite audio or a :class:`~hierspeech2.errors.HierSpeechError` that says what
to change; a setting that would make the output explode is refused before anything is allocated.
Tiny random models (tests/tiny_models.py), CPU, one thread.
"""

from __future__ import annotations

import math
import time
import warnings

import pytest
import tiny_models
import torch

from hierspeech2.errors import AudioError, HierSpeechError, SettingError
from hierspeech2.models.ttv_inference import MAX_INFER_FRAMES
from hierspeech2.pipelines import MAX_INPUT_PEAK, SuperResolution, TextToSpeech, VoiceConversion
from hierspeech2.text import text_to_tokens

RATE = 16_000
BAD_SCALES = [math.nan, math.inf, -math.inf, -1.0, "loud"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models():
    return {
        "backbone": tiny_models.backbone(),
        "ttv": tiny_models.ttv(),
        "encoder": tiny_models.semantic_encoder(),
        "speechsr": tiny_models.speechsr(),
    }


@pytest.fixture(scope="module")
def vc(models) -> VoiceConversion:
    return VoiceConversion(
        models["backbone"], models["encoder"], output_rate=RATE, f0_extractor=tiny_models.energy_f0
    )


@pytest.fixture(scope="module")
def tts(models) -> TextToSpeech:
    return TextToSpeech(models["ttv"], models["backbone"], output_rate=RATE)


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    t = torch.arange(RATE) / RATE
    return 0.3 * torch.sin(2 * math.pi * 140 * t) * (1 + torch.sin(2 * math.pi * 3 * t)) / 2


def finite(audio: torch.Tensor) -> bool:
    return audio.numel() > 0 and bool(torch.isfinite(audio).all())


# ------------------------------------------------------------------- voice conversion


def test_vc_with_silent_prompt_and_zero_f0_is_finite(vc, speech) -> None:
    with pytest.warns(UserWarning, match="no voiced frame"):
        audio, _ = vc(speech, torch.zeros(RATE), source_rate=RATE, target_rate=RATE, seed=0)
    assert finite(audio) and audio.abs().max() == pytest.approx(0.999, abs=1e-6)
    silent, _ = vc(torch.zeros(RATE), torch.zeros(RATE), source_rate=RATE, target_rate=RATE, seed=0)
    assert finite(silent)


def test_vc_with_an_extractor_that_finds_no_voice_is_finite(models, speech) -> None:
    unvoiced = VoiceConversion(
        models["backbone"], models["encoder"], output_rate=RATE,
        f0_extractor=lambda wav: torch.zeros(wav.numel() // 80),
    )  # fmt: skip
    audio, _ = unvoiced(speech, speech, source_rate=RATE, target_rate=RATE, seed=0)
    assert finite(audio)


@pytest.mark.parametrize("samples", [1, 320, 1279, 1280])
def test_vc_of_a_single_frame_source_is_finite(vc, speech, samples: int) -> None:
    audio, _ = vc(speech[:samples], speech, source_rate=RATE, target_rate=RATE, seed=0)
    assert finite(audio) and audio.numel() == (samples // 1280 + 1) * 1280


@pytest.mark.parametrize("noise_scale", [0.0, 1e-3, 10.0, 100.0])
def test_vc_with_extreme_noise_scale_is_finite(vc, speech, noise_scale: float) -> None:
    audio, _ = vc(speech, speech, source_rate=RATE, target_rate=RATE, noise_scale=noise_scale, seed=0)
    assert finite(audio)


@pytest.mark.parametrize("noise_scale", BAD_SCALES)
def test_vc_rejects_nan_noise_scale_instead_of_returning_nan_audio(vc, speech, noise_scale) -> None:
    # regression: noise_scale=nan/inf returned all-NaN audio without a word
    with pytest.raises(SettingError, match="noise_scale must be a"):
        vc(speech, speech, source_rate=RATE, target_rate=RATE, noise_scale=noise_scale)


@pytest.mark.parametrize("ratio", [math.nan, -0.1, 1.5, math.inf])
def test_denoise_ratio_out_of_range_is_a_setting_error(vc, tts, speech, ratio: float) -> None:
    with pytest.raises(SettingError, match=r"denoise_ratio must be in \[0, 1\]"):
        vc(speech, speech, source_rate=RATE, target_rate=RATE, denoise_ratio=ratio)
    with pytest.raises(SettingError, match=r"denoise_ratio must be in \[0, 1\]"):
        tts("Hi.", speech, prompt_rate=RATE, denoise_ratio=ratio)


@pytest.mark.parametrize("peak", [1e6, 1e37])
def test_audio_far_outside_unit_range_is_refused_instead_of_nan_output(vc, tts, speech, peak: float) -> None:
    # regression: a finite float32 source/prompt scaled by 1e37 overflowed the features into NaN audio
    loud = speech / speech.abs().max() * peak
    with pytest.raises(AudioError, match="source peaks at .*divide it by 32768"):
        vc(loud, speech, source_rate=RATE, target_rate=RATE)
    with pytest.raises(AudioError, match="voice prompt peaks at"):
        vc(speech, loud, source_rate=RATE, target_rate=RATE)
    with pytest.raises(AudioError, match="voice prompt peaks at"):
        tts("Hi.", loud, prompt_rate=RATE)


def test_audio_up_to_the_peak_limit_is_still_converted(vc, speech) -> None:
    loud = speech / speech.abs().max() * MAX_INPUT_PEAK
    audio, _ = vc(loud, loud, source_rate=RATE, target_rate=RATE, seed=0)
    assert finite(audio)


# ------------------------------------------------------------------- text to speech


def test_tts_with_silent_prompt_and_single_token_text_is_finite(tts, speech) -> None:
    audio, _ = tts("Hello there.", torch.zeros(RATE), prompt_rate=RATE, seed=0)
    assert finite(audio)
    short, _ = tts("a", speech, prompt_rate=RATE, seed=0)
    assert finite(short) and short.numel() % 320 == 0


@pytest.mark.parametrize("length_scale", [1e-3, 0.5, 10.0])
def test_tts_with_extreme_length_scale_is_finite(tts, speech, length_scale: float) -> None:
    audio, _ = tts("Hi there.", speech, prompt_rate=RATE, length_scale=length_scale, seed=0)
    assert finite(audio)


def test_tts_length_scale_changes_the_length_proportionally(tts, speech) -> None:
    options = {"prompt_rate": RATE, "seed": 0, "noise_scale_w": 0.0}
    base, _ = tts("Hi there.", speech, length_scale=1.0, **options)
    slow, _ = tts("Hi there.", speech, length_scale=10.0, **options)
    assert 8 * base.numel() <= slow.numel() <= 11 * base.numel()


@pytest.mark.parametrize(
    ("setting", "value"),
    [(name, value) for name in ("noise_scale_ttv", "noise_scale_vc") for value in (0.0, 1e-3, 10.0, 100.0)]
    + [("noise_scale_w", value) for value in (0.0, 1e-3, 2.0)],  # larger: see the frame cap below
)
def test_tts_with_extreme_noise_scales_is_finite(tts, speech, setting: str, value: float) -> None:
    audio, _ = tts("Hi there.", speech, prompt_rate=RATE, seed=0, **{setting: value})
    assert finite(audio)


@pytest.mark.parametrize("setting", ["noise_scale_ttv", "noise_scale_vc", "noise_scale_w", "length_scale"])
@pytest.mark.parametrize("value", BAD_SCALES)
def test_nan_length_scale_is_a_setting_error_not_a_torch_error(tts, speech, setting: str, value) -> None:
    # regression: length_scale=nan/inf died in torch.arange ("upper bound and lower bound
    # inconsistent"); negative scales and noise NaN went through silently
    with pytest.raises(SettingError, match=f"{setting} must be a"):
        tts("Hi.", speech, prompt_rate=RATE, **{setting: value})


def test_zero_length_scale_is_refused(tts, speech) -> None:
    with pytest.raises(SettingError, match=r"length_scale must be a finite number > 0, got 0"):
        tts("Hi.", speech, prompt_rate=RATE, length_scale=0.0)


@pytest.mark.parametrize(("setting", "value"), [("length_scale", 1e6), ("noise_scale_w", 100.0)])
def test_tts_length_scale_that_would_explode_is_refused_before_allocating(
    tts, speech, setting, value
) -> None:
    # regression: length_scale=1e6 tried to allocate ~10^8 frames and was killed for memory
    start = time.perf_counter()
    with pytest.raises(SettingError, match=f"limit {MAX_INFER_FRAMES}.*lower length_scale.*noise_scale_w"):
        tts("Hello there.", speech, prompt_rate=RATE, seed=0, **{setting: value})
    assert time.perf_counter() - start < 5


def test_text_to_vec_caps_frames_at_the_model_level(models) -> None:
    ttv = models["ttv"]
    tokens = text_to_tokens("Hello.").unsqueeze(0)
    prompt = torch.zeros(1, 80, 50)
    with pytest.raises(SettingError, match="frames"):
        ttv.infer(tokens, torch.tensor([tokens.shape[1]]), prompt, torch.tensor([50]), length_scale=1e9)
    semantic, log_f0 = ttv.infer(tokens, torch.tensor([tokens.shape[1]]), prompt, torch.tensor([50]))
    assert bool(torch.isfinite(semantic).all() and torch.isfinite(log_f0).all())


# ------------------------------------------------------------------- backbone and super-resolution


def test_backbone_with_one_frame_zero_f0_and_silent_prompt_is_finite(models) -> None:
    backbone = models["backbone"]
    semantic = torch.randn(1, tiny_models.SEMANTIC, 1)
    with torch.inference_mode():
        wav = backbone.voice_conversion(
            semantic, torch.tensor([1]), torch.full((2, 80, 1), math.log(1e-3)), torch.tensor([1, 1]),
            torch.zeros(1, 1, 4), noise_scale=0.0,
        )  # fmt: skip
    assert wav.shape == (1, 1, 320) and bool(torch.isfinite(wav).all())


@pytest.mark.parametrize(
    "signal",
    [
        torch.zeros(RATE),
        torch.zeros(1),
        torch.full((RATE,), 0.5),
        torch.ones(4000) * torch.tensor([1.0, -1.0]).repeat(2000),
        torch.randn(RATE, generator=torch.Generator().manual_seed(0)).clamp(-0.2, 0.2) * 5,
        torch.randn(RATE, generator=torch.Generator().manual_seed(1)) * 1e-30,
    ],
    ids=["silence", "one-sample", "dc", "nyquist", "clipped", "denormal"],
)
def test_super_resolution_of_degenerate_input_is_finite(models, signal: torch.Tensor) -> None:
    for rate in (48_000, 24_000):
        sr = SuperResolution(models["speechsr"] if rate == 48_000 else tiny_models.speechsr(1.5))
        audio, out_rate = sr(signal, RATE)
        assert out_rate == rate and finite(audio)
        assert audio.numel() == math.floor(signal.numel() * rate / RATE)


def test_vc_and_tts_through_speechsr_stay_finite(models, speech) -> None:
    vc48 = VoiceConversion(
        models["backbone"], models["encoder"], models["speechsr"], f0_extractor=tiny_models.energy_f0
    )
    tts48 = TextToSpeech(models["ttv"], models["backbone"], models["speechsr"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        audio, rate = vc48(speech[:320], torch.zeros(RATE), source_rate=RATE, target_rate=RATE, seed=0)
    assert rate == 48_000 and finite(audio)
    audio, rate = tts48("a", torch.zeros(RATE), prompt_rate=RATE, length_scale=1e-3, seed=0)
    assert rate == 48_000 and finite(audio)


def test_every_refusal_is_a_hierspeech_error() -> None:
    assert issubclass(SettingError, HierSpeechError) and issubclass(SettingError, ValueError)
