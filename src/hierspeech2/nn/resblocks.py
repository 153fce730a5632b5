"""The HiFi-GAN dilated residual block, with leaky-ReLU or alias-free SnakeBeta activations.

One class covers three official blocks, whose state-dict keys it reproduces:

- ``activation="snakebeta"``: BigVGAN's AMP block (HierSpeech++ ``AMPBlock1``, SpeechSR
  ``AMPBlock0``): keys ``convs1.N.*``, ``convs2.N.*``, ``activations.N.act.alpha/beta``,
  ``activations.N.upsample.filter``, ``activations.N.downsample.lowpass.filter``;
  ``activations[2i]`` precedes ``convs1[i]`` and ``activations[2i + 1]`` precedes ``convs2[i]``.
- ``activation="leaky_relu"``: HiFi-GAN ``ResBlock1`` (slope 0.1): keys ``convs1.N.*``, ``convs2.N.*``.

Every convolution is weight-normalised (``parametrizations.weight.original0/1``).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .activations import SnakeBeta
from .alias_free import Activation1d

LRELU_SLOPE = 0.1  # HiFi-GAN's leaky-ReLU slope, used throughout the official code
INIT_STD = 0.01  # HiFi-GAN's `init_weights`: conv weights ~ N(0, 0.01²)

ResBlockActivation = Literal["snakebeta", "leaky_relu"]


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the length of a stride-1 convolution."""
    return (kernel_size * dilation - dilation) // 2


def init_conv_(conv: nn.Module) -> nn.Module:
    """Initialise a convolution's weight as HiFi-GAN does (normal, std 0.01); returns it."""
    nn.init.normal_(conv.weight, 0.0, INIT_STD)
    return conv


def _dilated_conv(channels: int, kernel_size: int, dilation: int) -> nn.Module:
    conv = nn.Conv1d(
        channels, channels, kernel_size, dilation=dilation, padding=same_padding(kernel_size, dilation)
    )
    return weight_norm(init_conv_(conv))


class ResBlock(nn.Module):
    """Residual stack of (activation, dilated conv, activation, conv) pairs: [B, C, T] → [B, C, T]."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        dilations: tuple[int, ...] = (1, 3, 5),
        activation: ResBlockActivation = "snakebeta",
    ) -> None:
        super().__init__()
        if activation not in ("snakebeta", "leaky_relu"):
            raise ValueError(f"activation must be 'snakebeta' or 'leaky_relu', got {activation!r}")
        self.activation = activation
        self.convs1 = nn.ModuleList(_dilated_conv(channels, kernel_size, d) for d in dilations)
        self.convs2 = nn.ModuleList(_dilated_conv(channels, kernel_size, 1) for _ in dilations)
        if activation == "snakebeta":
            self.activations = nn.ModuleList(
                Activation1d(SnakeBeta(channels, log_scale=True)) for _ in range(2 * len(dilations))
            )

    def _activate(self, x: Tensor, index: int) -> Tensor:
        if self.activation == "snakebeta":
            return self.activations[index](x)
        return F.leaky_relu(x, LRELU_SLOPE)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """[B, C, T] (optional ``mask`` [B, 1, T] zeroes padded frames) → [B, C, T]."""
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            hidden = self._activate(x, 2 * i)
            if mask is not None:
                hidden = hidden * mask
            hidden = conv1(hidden)
            hidden = self._activate(hidden, 2 * i + 1)
            if mask is not None:
                hidden = hidden * mask
            x = conv2(hidden) + x
        if mask is not None:
            x = x * mask
        return x
