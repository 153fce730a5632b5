"""Loss modules: masking, the VITS KL, mel L1 through a shared extractor, LSGAN and feature matching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hierspeech2.audio import LogMelSpectrogram
from hierspeech2.nn.functional import kl_divergence, length_mask
from hierspeech2.nn.losses import (
    FeatureMatchingLoss,
    GaussianKLLoss,
    LeastSquaresGANLoss,
    MaskedL1Loss,
    MelL1Loss,
    masked_mean,
)


def test_masked_l1_averages_valid_positions_only() -> None:
    pred = torch.zeros(2, 3, 5)
    target = torch.ones(2, 3, 5)
    target[0, :, 3:] = 100.0  # padding of row 0
    mask = length_mask(torch.tensor([3, 5]), 5)
    assert MaskedL1Loss()(pred, target, mask).item() == pytest.approx(1.0)
    # the official average counts padded positions
    assert MaskedL1Loss(masked=False)(pred, target, mask).item() == pytest.approx(
        F.l1_loss(pred, target).item()
    )
    assert masked_mean(target, mask).item() == pytest.approx(1.0)


def test_kl_matches_the_analytic_divergence_in_expectation() -> None:
    # z_p ~ q = N(m_q, s_q) (identity flow): E[loss] = KL(q || p) summed over channels, per frame
    gen = torch.Generator().manual_seed(0)
    m_q, log_s_q = torch.tensor(0.3), torch.tensor(-0.5)
    m_p, log_s_p = torch.tensor(-0.2), torch.tensor(0.1)
    shape = (4, 2, 20000)
    z_p = m_q + torch.exp(log_s_q) * torch.randn(shape, generator=gen)
    mask = length_mask(torch.tensor([20000, 15000, 20000, 5000]), 20000)
    loss = GaussianKLLoss()(z_p, log_s_q.expand(shape), m_p.expand(shape), log_s_p.expand(shape), mask)
    expected = 2 * kl_divergence(m_q, log_s_q, m_p, log_s_p)  # two channels
    assert loss.item() == pytest.approx(expected.item(), rel=0.02)


def test_kl_ignores_padded_frames_and_returns_float32() -> None:
    shape = (1, 2, 6)
    z = torch.zeros(shape, dtype=torch.bfloat16)
    z[..., 4:] = 50.0
    mask = length_mask(torch.tensor([4]), 6)
    zeros = torch.zeros(shape, dtype=torch.bfloat16)
    loss = GaussianKLLoss()(z, zeros, zeros, zeros, mask)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(-1.0)  # (0 - 0 - 0.5 + 0) × 2 channels per frame


def test_mel_l1_uses_the_given_extractor() -> None:
    mel = LogMelSpectrogram(
        sample_rate=24000, n_fft=480, win_length=480, hop_length=120, n_mels=40, f_max=12000.0
    )
    loss = MelL1Loss(mel)
    gen = torch.Generator().manual_seed(0)
    real = 0.1 * torch.randn(2, 1, 2400, generator=gen)
    fake = (0.1 * torch.randn(2, 1, 2400, generator=gen)).requires_grad_()
    assert loss(real, real).item() == 0.0
    value = loss(fake, real)
    expected = F.l1_loss(mel(fake.squeeze(1)), mel(real.squeeze(1)))
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert fake.grad.abs().sum() > 0
    # the mask is in the extractor's frames (hop 120 → 20 frames); only the first 10 count
    mask = length_mask(torch.tensor([10, 10]), 20)
    half = F.l1_loss(mel(fake.squeeze(1))[..., :10], mel(real.squeeze(1))[..., :10])
    assert loss(fake, real, mask).item() == pytest.approx(half.item(), rel=1e-6)


def test_least_squares_gan_terms() -> None:
    gan = LeastSquaresGANLoss()
    real = [torch.full((2, 3), 1.0), torch.full((2, 5), 0.5)]
    fake = [torch.full((2, 3), 0.0), torch.full((2, 5), 0.5)]
    # (0 + 0) + (0.25 + 0.25)
    assert gan.discriminator_loss(real, fake).item() == pytest.approx(0.5)
    # (1) + (0.25)
    assert gan.generator_loss(fake).item() == pytest.approx(1.25)
    assert gan(fake).item() == pytest.approx(1.25)


def test_feature_matching_scales_and_detaches_real_features() -> None:
    real = [[torch.ones(2, 3, requires_grad=True), torch.zeros(4)]]
    fake = [[torch.zeros(2, 3, requires_grad=True), torch.full((4,), 0.5, requires_grad=True)]]
    loss = FeatureMatchingLoss()(real, fake)
    assert loss.item() == pytest.approx(2.0 * (1.0 + 0.5))
    loss.backward()
    assert real[0][0].grad is None
    assert fake[0][0].grad is not None
