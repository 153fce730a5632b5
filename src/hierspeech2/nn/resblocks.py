"""The HiFi-GAN dilated residual block, with leaky-ReLU or alias-free SnakeBeta activations.

One class covers three official blocks, whose state-dict keys it reproduces:

- ``activation="snakebeta"``: BigVGAN's AMP block (HierSpeech++ ``AMPBlock1``, SpeechSR
  ``AMPBlock0``): keys ``convs1.N.*``, ``convs2.N.*``, ``activations.N.act.alpha/beta``,
  ``activations.N.upsample.filter``, ``activations.N.downsample.lowpass.filter``;
  ``activations[2i]`` precedes ``convs1[i]`` and ``activations[2i + 1]`` precedes ``convs2[i]``.
- ``activation="leaky_relu"``: HiFi-GAN ``ResBlock1`` (slope 0.1): keys ``convs1.N.*``, ``convs2.N.*``.

Every convolution is weight-normalised (``parametrizations.weight.original0/1``).

For inference :meth:`ResBlock.forward_time_major` runs the block on time-major [B, T, C]
tensors: oneDNN's convolutions are about twice as fast on that (channels-last) layout as on
[B, C, T] at these widths, and :class:`~hierspeech2.nn.alias_free.PolyphaseActivation1d` (swapped in
for inference by :func:`~hierspeech2.nn.inference.use_fast_activations`) reads it just as well.
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


def conv1d_time_major(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """``conv`` applied to a time-major input: [B, T, C_in] → [B, T', C_out] (zero padding only)."""
    if not isinstance(conv, nn.Conv1d) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return conv(x.transpose(1, 2)).transpose(1, 2)
    # [B, T, C] viewed as a channels-last [B, C, 1, T] image: no copy in, none out.
    image = x.unsqueeze(1).permute(0, 3, 1, 2)
    out = F.conv2d(
        image,
        conv.weight.unsqueeze(2),
        conv.bias,
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
        dilation=(1, conv.dilation[0]),
        groups=conv.groups,
    )
    return out.permute(0, 2, 3, 1).squeeze(1)


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

    @property
    def halo(self) -> int:
        """Input samples either side of an output sample that it depends on (an upper bound)."""
        total = 0
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            for conv in (conv1, conv2):
                total += conv.dilation[0] * (conv.kernel_size[0] - 1) // 2
            if self.activation == "snakebeta":
                total += self.activations[2 * i].halo + self.activations[2 * i + 1].halo
        return total

    def forward_time_major(self, x: Tensor) -> Tensor:
        """Inference on a time-major tensor, no mask: [B, T, C] → [B, T, C]."""
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            hidden = conv1d_time_major(conv1, self._activate_time_major(x, 2 * i))
            hidden = conv1d_time_major(conv2, self._activate_time_major(hidden, 2 * i + 1))
            x = hidden.add_(x)
        return x

    def _activate_time_major(self, x: Tensor, index: int) -> Tensor:
        if self.activation == "snakebeta":
            return self.activations[index].forward_time_major(x)
        return F.leaky_relu(x, LRELU_SLOPE)

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
