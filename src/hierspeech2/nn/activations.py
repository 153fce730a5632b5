"""Snake activations (Ziyin et al. 2020, https://arxiv.org/abs/2006.08195), as used by BigVGAN.

``Snake(x) = x + sin²(αx) / α`` and ``SnakeBeta(x) = x + sin²(αx) / β`` with one α (and β)
per channel. With ``log_scale=True`` the parameters are stored as logarithms (the released
HierSpeech++ and SpeechSR weights use this), so zero-initialised parameters mean α = β = 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# The official activations add this to the denominator; the released weights were trained with it.
_DIV_EPS = 1e-9


def _snake(x: Tensor, frequency: Tensor, magnitude: Tensor) -> Tensor:
    # Reciprocal-then-multiply as the official code does, so outputs match it bit for bit.
    return x + (1.0 / (magnitude + _DIV_EPS)) * torch.sin(x * frequency).pow(2)


class Snake(nn.Module):
    """Snake activation ``x + sin²(αx) / α`` with a learnable α per channel: [B, C, T] → [B, C, T]."""

    def __init__(self, channels: int, alpha: float = 1.0, log_scale: bool = False) -> None:
        super().__init__()
        self.log_scale = log_scale
        init = torch.zeros(channels) if log_scale else torch.full((channels,), float(alpha))
        self.alpha = nn.Parameter(init)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, T]."""
        alpha = self.alpha[None, :, None]
        if self.log_scale:
            alpha = alpha.exp()
        return _snake(x, alpha, alpha)


class SnakeBeta(nn.Module):
    """SnakeBeta ``x + sin²(αx) / β`` with learnable α (frequency) and β (magnitude) per channel."""

    def __init__(self, channels: int, alpha: float = 1.0, log_scale: bool = False) -> None:
        super().__init__()
        self.log_scale = log_scale
        init = torch.zeros(channels) if log_scale else torch.full((channels,), float(alpha))
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, T]."""
        alpha, beta = self.alpha[None, :, None], self.beta[None, :, None]
        if self.log_scale:
            alpha, beta = alpha.exp(), beta.exp()
        return _snake(x, alpha, beta)
