"""MP-SENet's 2-D blocks on [B, C, T, F] time-frequency maps:
dilated dense block, encoder, magnitude and phase decoders.

Parameter names are those of the official MP-SENet checkpoint; the ``nn.Sequential`` indices
(conv, then InstanceNorm, then PReLU) are part of that format.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels, affine=True), nn.PReLU(channels)]


class DenseBlock(nn.Module):
    """Densely connected 2-D convolutions, dilated 1, 2, 4 … along time: [B, C, T, F] → [B, C, T, F].

    Layer ``i`` reads the concatenation of every earlier output and the input.
    """

    def __init__(self, channels: int, kernel_size: tuple[int, int] = (3, 3), depth: int = 4) -> None:
        super().__init__()
        layers = []
        for i in range(depth):
            dilation = (2**i, 1)
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel_size, dilation))
            layers.append(
                nn.Sequential(
                    nn.Conv2d(channels * (i + 1), channels, kernel_size, dilation=dilation, padding=padding),
                    *_norm_act(channels),
                )
            )
        self.dense_block = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T, F] → [B, C, T, F]."""
        features = x
        for layer in self.dense_block:
            x = layer(features)
            features = torch.cat([x, features], dim=1)
        return x


class DenseEncoder(nn.Module):
    """(compressed magnitude, phase) [B, 2, T, F] → [B, C, T, (F - 1) // 2] features."""

    def __init__(self, channels: int, in_channels: int = 2, depth: int = 4) -> None:
        super().__init__()
        self.dense_conv_1 = nn.Sequential(nn.Conv2d(in_channels, channels, (1, 1)), *_norm_act(channels))
        self.dense_block = DenseBlock(channels, depth=depth)
        self.dense_conv_2 = nn.Sequential(nn.Conv2d(channels, channels, (1, 3), (1, 2)), *_norm_act(channels))

    def forward(self, x: Tensor) -> Tensor:
        """[B, 2, T, F] → [B, C, T, (F - 1) // 2]."""
        return self.dense_conv_2(self.dense_block(self.dense_conv_1(x)))


class LearnableSigmoid2d(nn.Module):
    """``beta · sigmoid(slope · x)`` with one learned slope per frequency bin: [B, F, T] → [B, F, T]."""

    def __init__(self, in_features: int, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta
        self.slope = nn.Parameter(torch.ones(in_features, 1))

    def forward(self, x: Tensor) -> Tensor:
        """[B, F, T] → [B, F, T] in (0, beta)."""
        return self.beta * torch.sigmoid(self.slope * x)


class MaskDecoder(nn.Module):
    """Features [B, C, T, F'] → magnitude mask [B, 1, T, F] in (0, beta), F = 2 F' + 1."""

    def __init__(self, channels: int, n_freqs: int, beta: float = 2.0, depth: int = 4) -> None:
        super().__init__()
        self.dense_block = DenseBlock(channels, depth=depth)
        self.mask_conv = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, (1, 3), (1, 2)),
            nn.Conv2d(channels, 1, (1, 1)),
            *_norm_act(1),
            nn.Conv2d(1, 1, (1, 1)),
        )
        self.lsigmoid = LearnableSigmoid2d(n_freqs, beta=beta)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T, F'] → [B, 1, T, F]."""
        logits = self.mask_conv(self.dense_block(x))[:, 0].transpose(1, 2)  # [B, T, F] -> [B, F, T]
        return self.lsigmoid(logits).transpose(1, 2).unsqueeze(1)


class PhaseDecoder(nn.Module):
    """Features [B, C, T, F'] → wrapped phase [B, 1, T, F] from a (real, imaginary) pair, F = 2 F' + 1."""

    def __init__(self, channels: int, depth: int = 4) -> None:
        super().__init__()
        self.dense_block = DenseBlock(channels, depth=depth)
        self.phase_conv = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, (1, 3), (1, 2)), *_norm_act(channels)
        )
        self.phase_conv_r = nn.Conv2d(channels, 1, (1, 1))
        self.phase_conv_i = nn.Conv2d(channels, 1, (1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T, F'] → [B, 1, T, F] in (-π, π]."""
        x = self.phase_conv(self.dense_block(x))
        return torch.atan2(self.phase_conv_i(x), self.phase_conv_r(x))
