"""Discriminators: official key layout, STFT front end, shapes, gradients, precision."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from hierspeech2.checkpoint import native_to_official
from hierspeech2.nn.discriminators import (
    PERIODS,
    RESOLUTIONS,
    RESOLUTIONS_48K,
    ComplexSTFTDiscriminator,
    MultiDiscriminator,
    PeriodDiscriminator,
)


def test_full_size_keys_and_shapes_match_the_official_layout() -> None:
    # official MultiPeriodDiscriminator (speechsr48k): 6 DiscriminatorR first, then 5 DiscriminatorP
    state = native_to_official(MultiDiscriminator(resolutions=RESOLUTIONS_48K).state_dict())
    assert len(state) == 6 * 6 * 3 + 5 * 6 * 3  # 6 weight-normed convs per member: weight_g, weight_v, bias
    assert state["discriminators.0.convs.0.weight_v"].shape == (32, 2, 3, 9)
    assert state["discriminators.0.conv_post.weight_g"].shape == (1, 1, 1, 1)
    assert state["discriminators.5.convs.3.weight_v"].shape == (32, 32, 3, 9)
    assert state["discriminators.6.convs.0.weight_v"].shape == (32, 1, 5, 1)
    assert state["discriminators.10.convs.4.weight_v"].shape == (1024, 1024, 5, 1)
    assert state["discriminators.10.conv_post.weight_v"].shape == (1, 1024, 3, 1)
    assert [d.period for d in MultiDiscriminator().discriminators[5:]] == list(PERIODS)


def test_stft_planes_match_torchaudio_normalised_spectrogram() -> None:
    n_fft, hop, win = RESOLUTIONS[-1]
    disc = ComplexSTFTDiscriminator(n_fft, hop, win)
    wav = torch.randn(2, 1, 1000, generator=torch.Generator().manual_seed(0))
    reference = torchaudio.transforms.Spectrogram(
        n_fft=n_fft, hop_length=hop, win_length=win, normalized=True, center=False, power=None
    )(wav)  # [B, 1, F, T] complex
    planes = disc.spectrogram(wav)  # [B, 2, T, F]
    assert planes.shape == (2, 2, (1000 - n_fft) // hop + 1, n_fft // 2 + 1)
    torch.testing.assert_close(planes[:, 0], reference.real[:, 0].transpose(1, 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(planes[:, 1], reference.imag[:, 0].transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_period_discriminator_folds_with_reflect_padding() -> None:
    disc = PeriodDiscriminator(5, channels=(4, 8))
    wav = torch.randn(3, 1, 101)
    logits, features = disc(wav)
    assert len(features) == 3  # two convs + conv_post
    assert features[0].shape[-1] == 5  # 101 samples padded to 105 = 21 rows of 5
    assert features[0].shape[-2] == 7  # 21 rows, stride 3
    assert logits.shape == (3, features[-1][0].numel())
    # the padding is a reflection, so the logits depend only on the 101 samples
    padded = torch.nn.functional.pad(wav, (0, 4), mode="reflect")
    torch.testing.assert_close(disc(padded)[0], logits)


def test_forward_returns_logits_and_features_per_member_with_gradients() -> None:
    disc = MultiDiscriminator(
        periods=(2, 3), resolutions=((256, 64, 256),), period_channels=(4, 8), stft_channels=4
    )
    wav = torch.randn(2, 1, 2000, requires_grad=True)
    logits, features = disc(wav)
    assert len(logits) == len(features) == 3
    assert all(score.shape[0] == 2 for score in logits)
    assert [len(maps) for maps in features] == [6, 3, 3]
    torch.stack([score.mean() for score in logits]).sum().backward()
    assert wav.grad is not None and wav.grad.abs().sum() > 0


def test_bf16_autocast_gives_finite_logits() -> None:
    disc = MultiDiscriminator(
        periods=(2,), resolutions=((256, 64, 256),), period_channels=(4, 8), stft_channels=4
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = disc(torch.randn(2, 1, 1200))
    assert all(torch.isfinite(score.float()).all() for score in logits)


def test_spectral_norm_option_and_short_input_error() -> None:
    disc = MultiDiscriminator(
        periods=(2,), resolutions=((512, 128, 512),), period_channels=(4,), use_spectral_norm=True
    )
    assert any("parametrizations.weight.original" in key for key in disc.state_dict())
    assert not any("original0" in key for key in disc.state_dict())
    assert disc.min_samples == 512
    with pytest.raises(ValueError, match="at least 512 samples"):
        disc(torch.randn(1, 1, 300))
