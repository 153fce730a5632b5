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


# --- tiny models, real audio: the whole VC / TTS pipelines end to end -------------------------

TINY_BACKBONE = {
    "spec_channels": 9,
    "semantic_channels": 32,
    "inter_channels": 8,
    "hidden_channels": 8,
    "filter_channels": 16,
    "resblock_kernel_sizes": (3,),
    "resblock_dilation_sizes": ((1, 3),),
    "upsample_rates": (4, 5, 4, 4),
    "upsample_initial_channel": 32,
    "upsample_kernel_sizes": (8, 11, 8, 8),
    "gin_channels": 8,
    "prosody_size": 4,
    "style_hidden_channels": 8,
    "posterior_layers": 1,
    "prior_layers": 1,
    "flow_layers": 1,
    "n_flows": 1,
    "audio_encoder_channels": (4, 4, 4, 8),
    "audio_downsample_rates": (8, 5, 8),
    "audio_downsample_kernel_sizes": (16, 10, 16),
}
TINY_TTV = {
    "semantic_channels": 32,
    "inter_channels": 16,
    "hidden_channels": 16,
    "style_channels": 8,
    "style_hidden_channels": 16,
    "text_filter_channels": 32,
    "text_heads": 2,
    "text_layers": 1,
    "posterior_layers": 1,
    "flow_layers": 1,
    "flow_count": 1,
    "flow_heads": 2,
    "decoder_hidden_channels": 16,
    "decoder_layers": 1,
    "duration_filter_channels": 16,
    "duration_flows": 2,
    "pitch_channels": 16,
}


@pytest.fixture(scope="module")
def tiny_parts():
    from transformers import Wav2Vec2Config

    from hierspeech2.ssl import SemanticEncoder

    torch.manual_seed(0)
    encoder = SemanticEncoder.from_config(
        Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            conv_dim=(8,) * 7,
            num_conv_pos_embeddings=8,
            num_conv_pos_embedding_groups=2,
            do_stable_layer_norm=True,
            feat_extract_norm="layer",
        ),
        layer=2,
    )
    return HierSpeech2(**TINY_BACKBONE).eval(), TextToVec(**TINY_TTV).eval(), encoder


@pytest.fixture(scope="module")
def utterances(shared_dir):
    return sorted((shared_dir / "audio").glob("reference_*.wav"))


def test_voice_conversion_end_to_end(tiny_parts, utterances) -> None:
    from hierspeech2.pipelines import VoiceConversion

    backbone, _, encoder = tiny_parts
    vc = VoiceConversion(backbone, encoder, SpeechSR.from_packaged(24_000), output_rate=24_000)
    source, target = utterances[0], utterances[1]
    first, rate = vc(source, target, seed=3)
    again, _ = vc(source, target, seed=3)
    other, _ = vc(source, target, seed=4)
    source_samples = 48_000  # 3 s at 16 kHz, padded to a multiple of 1280 (+1280 when already one)
    padded = (source_samples // 1280 + 1) * 1280
    assert rate == 24_000
    assert first.shape == (padded * 3 // 2,)
    assert torch.isfinite(first).all() and first.abs().max() == pytest.approx(0.999, abs=1e-6)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # 16 kHz output skips super-resolution instead of running it anyway as the official script does
    vc16 = VoiceConversion(backbone, encoder, output_rate=16_000)
    out16, rate16 = vc16(source, target, seed=3)
    assert rate16 == 16_000 and out16.shape == (padded,)


def test_voice_conversion_rejects_short_prompt_and_missing_denoiser(tiny_parts, utterances) -> None:
    from hierspeech2.pipelines import VoiceConversion

    backbone, _, encoder = tiny_parts
    vc = VoiceConversion(backbone, encoder, output_rate=16_000)
    with pytest.raises(AudioError, match="at least 0.5 s"):
        vc(utterances[0], torch.zeros(4000) + 0.1, target_rate=16_000)
    with pytest.raises(ValueError, match="denoiser"):
        vc(utterances[0], utterances[1], denoise_ratio=0.5)
    with pytest.raises(ValueError, match="SpeechSR model for 48000 Hz"):
        VoiceConversion(backbone, encoder, output_rate=48_000)


def test_voice_conversion_of_silence_warns_and_still_renders(tiny_parts, utterances) -> None:
    from hierspeech2.pipelines import VoiceConversion

    backbone, _, encoder = tiny_parts
    vc = VoiceConversion(backbone, encoder, output_rate=16_000)
    with pytest.warns(UserWarning):
        out, _ = vc(torch.zeros(16_000), utterances[1], source_rate=16_000, seed=0)
    assert torch.isfinite(out).all()


def test_text_to_speech_end_to_end(tiny_parts, utterances) -> None:
    backbone, ttv, _ = tiny_parts
    tts = TextToSpeech(
        ttv, backbone, output_rate=16_000, noise_scale_ttv=0.0, noise_scale_vc=0.0, noise_scale_w=0.0
    )
    audio, rate = tts("Hello there, this is a test.", utterances[2])
    slower, _ = tts("Hello there, this is a test.", utterances[2], length_scale=2.0)
    assert rate == 16_000
    assert audio.numel() % 320 == 0 and audio.numel() > 0
    assert torch.isfinite(audio).all()
    assert slower.numel() > 1.5 * audio.numel()
    with pytest.raises(TypeError, match="unknown setting"):
        tts("Hi.", utterances[2], speed=2.0)


def test_f0_extractor_names_resolve_to_the_inference_setting(tiny_parts) -> None:
    from hierspeech2.pipelines import VoiceConversion
    from hierspeech2.pitch import F0Track, f0_extractor

    assert f0_extractor("yaapt", "inference") == F0Track("yaapt", "inference")
    assert f0_extractor("praat", "inference") == F0Track("praat", "inference")
    custom = lambda wav: wav
    assert f0_extractor(custom, "inference") is custom
    with pytest.raises(ValueError, match="unknown F0 extractor 'crepe'.*yaapt"):
        f0_extractor("crepe", "inference")
    # the pipeline resolves its option the same way, and refuses an unknown name when built
    backbone, _, encoder = tiny_parts
    vc = VoiceConversion(backbone, encoder, output_rate=16_000, f0_extractor="swift")
    assert vc.f0_extractor == F0Track("swift", "inference") and vc.options.f0_extractor == "swift"
    assert VoiceConversion(backbone, encoder, output_rate=16_000, f0_extractor=custom).f0_extractor is custom
    with pytest.raises(ValueError, match="unknown F0 extractor 'crepe'"):
        VoiceConversion(backbone, encoder, output_rate=16_000, f0_extractor="crepe")


# ------------------------------------------------------- denoise_ratio with a given denoised prompt row

TOKENS = torch.tensor([5, 12, 30, 7, 19, 44, 3, 25, 11, 60, 8, 33])


def two_row_prompt_mel(tts) -> torch.Tensor:
    """Log-mel rows [2, 80, T] of two different 1 s waveforms: an "original" and a "denoised" prompt."""
    generator = torch.Generator().manual_seed(0)
    original = 0.3 * torch.randn(16_000, generator=generator)
    denoised = 0.3 * torch.sin(torch.arange(16_000) * 2 * math.pi * 180 / 16_000)
    return tts.mel(torch.stack([original, denoised]))


def hand_mixed_style(model, prompt_mel: torch.Tensor, ratio: float) -> torch.Tensor:
    """The official mixing done by hand: the style of each row on its own, mixed by the ratio."""
    lengths = torch.tensor([prompt_mel.shape[-1]])
    with torch.inference_mode():
        original = model.encode_style(prompt_mel[:1], lengths, 1)
        denoised = model.encode_style(prompt_mel[1:], lengths, 1)
    return (1 - ratio) * original + ratio * denoised


@pytest.mark.usefixtures("one_torch_thread")
def test_tokens_with_a_given_denoised_row_mix_styles_without_a_denoiser(monkeypatch) -> None:
    import tiny_models

    tts = TextToSpeech(
        tiny_models.ttv(),
        tiny_models.backbone(),
        output_rate=16_000,
        noise_scale_ttv=0.0,
        noise_scale_vc=0.0,
        noise_scale_w=0.0,
    )
    assert tts.denoiser is None
    prompt_mel = two_row_prompt_mel(tts)
    out = {
        ratio: tts.synthesize_from_tokens(TOKENS, prompt_mel, denoise_ratio=ratio)
        for ratio in (0.0, 0.5, 1.0)
    }
    assert all(torch.isfinite(audio).all() and audio.numel() > 0 for audio in out.values())

    def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape != b.shape or (a - b).abs().max() > 1e-3

    assert differs(out[0.5], out[0.0]) and differs(out[0.5], out[1.0]) and differs(out[0.0], out[1.0])
    # the same speech with each model's style replaced by the hand-mixed one
    for model in (tts.ttv, tts.backbone):
        style = hand_mixed_style(model, prompt_mel, 0.5)
        monkeypatch.setattr(model, "encode_style", lambda *args, style=style, **kwargs: style)
    by_hand = tts.synthesize_from_tokens(TOKENS, prompt_mel, denoise_ratio=0.0)
    assert by_hand.shape == out[0.5].shape
    assert (by_hand - out[0.5]).abs().max() <= 1e-5


@pytest.mark.usefixtures("one_torch_thread")
def test_synthesize_from_tokens_uses_the_same_defaults_as_call() -> None:
    import tiny_models

    from hierspeech2.pipelines import OFFICIAL_DENOISE_RATIO

    tts = TextToSpeech(
        tiny_models.ttv(),
        tiny_models.backbone(),
        denoiser=tiny_models.denoiser(),
        output_rate=16_000,
        noise_scale_ttv=0.0,
        noise_scale_vc=0.0,
        noise_scale_w=0.0,
    )
    assert tts.options.denoise_ratio == tts.denoise_ratio == OFFICIAL_DENOISE_RATIO == 0.8
    prompt_mel = two_row_prompt_mel(tts)
    torch.manual_seed(1)
    default = tts.synthesize_from_tokens(TOKENS, prompt_mel)
    torch.manual_seed(2)  # the constructor's noise scales (0) apply too: no sampling noise
    official = tts.synthesize_from_tokens(TOKENS, prompt_mel, denoise_ratio=0.8)
    undenoised = tts.synthesize_from_tokens(TOKENS, prompt_mel, denoise_ratio=0.0)
    assert torch.equal(default, official)
    assert default.shape != undenoised.shape or (default - undenoised).abs().max() > 1e-3
    # without a denoiser the default stays 0 (as for __call__), and a constructor ratio is the default
    plain = TextToSpeech(
        tts.ttv, tts.backbone, output_rate=16_000, noise_scale_ttv=0.0, noise_scale_vc=0.0, noise_scale_w=0.0
    )
    assert torch.equal(plain.synthesize_from_tokens(TOKENS, prompt_mel), undenoised)
    mixing = TextToSpeech(
        tts.ttv,
        tts.backbone,
        output_rate=16_000,
        noise_scale_ttv=0.0,
        noise_scale_vc=0.0,
        noise_scale_w=0.0,
        denoise_ratio=0.8,
    )
    assert torch.equal(mixing.synthesize_from_tokens(TOKENS, prompt_mel), official)


@pytest.mark.usefixtures("one_torch_thread")
def test_encoded_prompts_with_denoised_rows_need_no_denoiser_but_audio_does(utterances, monkeypatch) -> None:
    import tiny_models

    from hierspeech2.errors import SettingError
    from hierspeech2.pipelines import Prompt, VoiceConversion

    vc = VoiceConversion(
        tiny_models.backbone(),
        tiny_models.semantic_encoder(),
        output_rate=16_000,
        noise_scale=0.0,
        f0_extractor=tiny_models.energy_f0,
    )
    source = torch.sin(torch.arange(32_000) * 2 * math.pi * 150 / 16_000) * 0.3
    encoded = vc.encode_prompt(utterances[1])
    assert not encoded.denoised and torch.equal(encoded.mel[0], encoded.mel[1])
    mel = two_row_prompt_mel(vc)
    given = Prompt(mel=mel, peak=encoded.peak, f0=encoded.f0, denoised=True)
    out = {r: vc(source, given, source_rate=16_000, denoise_ratio=r)[0] for r in (0.0, 0.5, 1.0)}
    assert (out[0.5] - out[0.0]).abs().max() > 1e-3 and (out[0.5] - out[1.0]).abs().max() > 1e-3
    # the default ratio of every VoiceConversion entry point is the constructor's, as for TTS
    mixing = VoiceConversion(
        vc.backbone,
        vc.semantic_encoder,
        output_rate=16_000,
        noise_scale=0.0,
        denoise_ratio=0.5,
        f0_extractor=tiny_models.energy_f0,
    )
    assert torch.equal(mixing(source, given, source_rate=16_000)[0], out[0.5])
    # audio prompts must be denoised here, which needs a denoiser: refused before any work, saying so
    with pytest.raises(SettingError, match="needs a prompt denoiser"):
        mixing(source, utterances[1], source_rate=16_000)
    with pytest.raises(SettingError, match="needs a prompt denoiser"):
        vc.encode_prompt(utterances[1], denoise_ratio=0.5)
    style = hand_mixed_style(vc.backbone, mel, 0.5)
    monkeypatch.setattr(vc.backbone, "encode_style", lambda *args, **kwargs: style)
    by_hand = vc(source, given, source_rate=16_000, denoise_ratio=0.0)[0]
    assert (by_hand - out[0.5]).abs().max() <= 1e-5


# ------------------------------------------------------- options and jobs


def test_pipelines_take_an_options_object_and_keyword_overrides(tiny_parts) -> None:
    import tiny_models

    from hierspeech2.errors import SettingError
    from hierspeech2.options import SuperResolutionOptions, TextToSpeechOptions, VoiceConversionOptions
    from hierspeech2.pipelines import VoiceConversion

    backbone, ttv, encoder = tiny_parts
    vc = VoiceConversion(backbone, encoder, options=VoiceConversionOptions(noise_scale=0.5), batch_size=2)
    # the options the models decide are resolved: 16 kHz without a SpeechSR, ratio 0 without a denoiser
    assert vc.options == VoiceConversionOptions(
        output_rate=16_000, noise_scale=0.5, denoise_ratio=0.0, batch_size=2
    )
    assert (vc.noise_scale, vc.batch_size, vc.output_rate, vc.denoise_ratio) == (0.5, 2, 16_000, 0.0)
    tts = TextToSpeech(ttv, backbone, length_scale=1.1)
    assert tts.options == TextToSpeechOptions(output_rate=16_000, length_scale=1.1, denoise_ratio=0.0)
    assert tts.options.noise_scale_ttv == TextToSpeechOptions.default("noise_scale_ttv")
    assert tts.batch_size == TextToSpeechOptions.default("batch_size")
    sr = SuperResolution(tiny_models.speechsr(), batch_size=3)
    assert sr.options == SuperResolutionOptions(batch_size=3) and sr.batch_size == 3
    # attributes write through the options, checked; the output rate follows the models
    vc.batch_size = 4
    assert vc.options.batch_size == 4
    with pytest.raises(SettingError, match="batch_size must be an integer"):
        vc.batch_size = 0
    with pytest.raises(AttributeError):
        vc.output_rate = 24_000
    with pytest.raises(TypeError, match="unknown VoiceConversionOptions field.*speed"):
        VoiceConversion(backbone, encoder, speed=2.0)
    with pytest.raises(TypeError, match="takes options=TextToSpeechOptions"):
        TextToSpeech(ttv, backbone, options=VoiceConversionOptions())
    with pytest.raises(SettingError, match="noise_scale must be a finite number >= 0"):
        VoiceConversion(backbone, encoder, noise_scale=-1.0)
    with pytest.raises(SettingError, match="length_scale must be a finite number > 0"):
        TextToSpeech(ttv, backbone, options=TextToSpeechOptions(length_scale=0.0))


@pytest.mark.usefixtures("one_torch_thread")
def test_many_takes_typed_jobs_or_tuples() -> None:
    import tiny_models

    from hierspeech2.pipelines import SuperResolutionJob

    sr = SuperResolution(tiny_models.speechsr(), batch_size=2)
    wav = 0.3 * torch.sin(torch.arange(8_000) * 2 * math.pi * 200 / 16_000)
    typed, paired, missing = sr.process_many(
        [SuperResolutionJob(wav, sample_rate=16_000), ((wav, 16_000), None), ("missing.wav", None)]
    )
    assert typed.ok and paired.ok and not missing.ok
    assert torch.equal(typed.audio, paired.audio) and typed.sample_rate == sr.output_rate
    torch.testing.assert_close(typed.audio, sr(wav, 16_000)[0], atol=1e-5, rtol=0)  # batched vs alone
