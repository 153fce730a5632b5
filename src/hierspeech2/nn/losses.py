"""Training losses as modules: masked L1, Gaussian KL, log-mel L1, least-squares GAN, feature matching.

Masked losses average over valid positions only; each takes ``masked=False`` to reproduce
the official TTV trainer, which averages over padded positions too (``F.l1_loss`` on padded
batches), so a padded row's loss shrinks with the padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` [B, C, T] over the positions where ``mask`` [B, 1, T] (broadcast over C) is 1."""
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class MaskedL1Loss(nn.Module):
    """Mean absolute error over valid positions: ``pred``, ``target`` [B, C, T], ``mask`` [B, 1, T]."""

    def __init__(self, masked: bool = True) -> None:
        super().__init__()
        self.masked = masked

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Scalar loss; with ``masked=False`` or no mask, the plain mean over every position."""
        if mask is None or not self.masked:
            return F.l1_loss(pred, target)
        return masked_mean((pred - target).abs(), mask)


class GaussianKLLoss(nn.Module):
    """VITS KL between the posterior (sample in prior space, log std) and the prior Gaussian, per valid frame.

    ``sum(log σ_p − log σ_q − ½ + ½ (z_p − μ_p)² / σ_p²) / sum(mask)``: the single-sample
    estimate of KL(q ‖ p) with the flow's log-determinant left out, as VITS and HierSpeech++
    train it. Computed in float32 (the exponentials overflow half precision).
    """

    def forward(
        self,
        posterior_in_prior_space: Tensor,
        posterior_log_std: Tensor,
        prior_mean: Tensor,
        prior_log_std: Tensor,
        mask: Tensor,
    ) -> Tensor:
        """Inputs [B, C, T], ``mask`` [B, 1, T] → scalar (nats per valid frame, summed over channels)."""
        z_p, log_std_q = posterior_in_prior_space.float(), posterior_log_std.float()
        mean_p, log_std_p = prior_mean.float(), prior_log_std.float()
        mask = mask.float()
        kl = log_std_p - log_std_q - 0.5 + 0.5 * (z_p - mean_p) ** 2 * torch.exp(-2.0 * log_std_p)
        return torch.sum(kl * mask) / torch.sum(mask)


class MelL1Loss(nn.Module):
    """L1 between log-mel spectrograms of generated and real audio, sharing the model's mel extractor.

    ``mel`` is any module mapping [B, 1, N] → [B, 1, n_mels, T] or [B, n_mels, T] (e.g.
    :class:`hierspeech2.audio.LogMelSpectrogram` built with the model's settings), so the
    loss never restates n_fft, hop or bins.
    """

    def __init__(self, mel: nn.Module) -> None:
        super().__init__()
        self.mel = mel

    def forward(self, fake: Tensor, real: Tensor, mask: Tensor | None = None) -> Tensor:
        """``fake``, ``real`` [B, 1, N]; optional frame mask [B, 1, T] → scalar."""
        with torch.autocast(device_type=fake.device.type, enabled=False):
            fake_mel = self.mel(fake.float()).squeeze(1)
            real_mel = self.mel(real.float()).squeeze(1)
        if mask is None:
            return F.l1_loss(fake_mel, real_mel)
        return masked_mean((fake_mel - real_mel).abs(), mask[..., : fake_mel.shape[-1]])


class LeastSquaresGANLoss(nn.Module):
    """LSGAN (HiFi-GAN): discriminators push real logits to 1 and fake ones to 0, the generator fakes to 1.

    Each term is summed over the discriminators of a multi-discriminator.
    """

    def discriminator_loss(self, real_logits: list[Tensor], fake_logits: list[Tensor]) -> Tensor:
        """Σ_k mean((1 − D_k(real))²) + mean(D_k(fake)²)."""
        losses = [
            torch.mean((1 - real.float()) ** 2) + torch.mean(fake.float() ** 2)
            for real, fake in zip(real_logits, fake_logits, strict=True)
        ]
        return torch.stack(losses).sum()

    def generator_loss(self, fake_logits: list[Tensor]) -> Tensor:
        """Σ_k mean((1 − D_k(fake))²)."""
        return torch.stack([torch.mean((1 - fake.float()) ** 2) for fake in fake_logits]).sum()

    def forward(self, fake_logits: list[Tensor]) -> Tensor:
        """The generator loss (the term that trains the generator)."""
        return self.generator_loss(fake_logits)


class FeatureMatchingLoss(nn.Module):
    """``scale`` × Σ over discriminators and layers of mean |D(real) − D(fake)| (real features detached).

    ``scale=2`` is HiFi-GAN's and VITS's (the official backbone's lineage).
    """

    def __init__(self, scale: float = 2.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, real_features: list[list[Tensor]], fake_features: list[list[Tensor]]) -> Tensor:
        """Features of each discriminator, layer by layer → scalar."""
        losses = [
            torch.mean(torch.abs(real.detach().float() - fake.float()))
            for real_maps, fake_maps in zip(real_features, fake_features, strict=True)
            for real, fake in zip(real_maps, fake_maps, strict=True)
        ]
        return self.scale * torch.stack(losses).sum()
