"""Alias-free resampling and activation (StyleGAN3 / BigVGAN style).

A pointwise non-linearity creates harmonics above Nyquist; running it at twice the rate between
a windowed-sinc upsampler and low-pass downsampler keeps them from folding back into the band.
The Kaiser-windowed sinc filters are persistent buffers named ``filter`` (``upsample.filter``,
``downsample.lowpass.filter``) because the released checkpoints store them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_KERNEL_SIZE = 12  # BigVGAN's anti-aliasing filter length for a ratio of 2 (6 taps per unit of ratio)


def kaiser_sinc_filter1d(cutoff: float, half_width: float, kernel_size: int) -> Tensor:
    """Kaiser-windowed sinc low-pass filter normalised to unit DC gain: [1, 1, kernel_size].

    Args:
        cutoff: cutoff frequency as a fraction of the sample rate (0 < cutoff ≤ 0.5).
        half_width: half the transition band width, same unit.
        kernel_size: number of taps; even sizes are centred between two samples.
    """
    if not 0.0 <= cutoff <= 0.5:
        raise ValueError(f"cutoff must lie in [0, 0.5] (a fraction of the sample rate), got {cutoff}")
    half_size = kernel_size // 2
    # Kaiser's design formulas: attenuation from the transition width, then the window's beta.
    attenuation = 2.285 * (half_size - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    if kernel_size % 2 == 0:
        time = torch.arange(-half_size, half_size) + 0.5
    else:
        time = torch.arange(kernel_size) - half_size
    if cutoff == 0:
        taps = torch.zeros_like(time)
    else:
        taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
        # Unit DC gain, so a constant passes through unchanged.
        taps = taps / taps.sum()
    return taps.view(1, 1, kernel_size)


class LowPassFilter1d(nn.Module):
    """Depthwise windowed-sinc low-pass with optional stride: [B, C, T] → [B, C, ⌈T / stride⌉]."""

    def __init__(
        self,
        cutoff: float = 0.5,
        half_width: float = 0.6,
        stride: int = 1,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        padding: bool = True,
        padding_mode: str = "replicate",
    ) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.padding_mode = padding_mode
        even = kernel_size % 2 == 0
        self.pad_left = kernel_size // 2 - int(even)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter1d(cutoff, half_width, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, T'] (T' = ⌈T / stride⌉ with padding)."""
        channels = x.shape[1]
        if self.padding:
            x = F.pad(x, (self.pad_left, self.pad_right), mode=self.padding_mode)
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride, groups=channels)


class UpSample1d(nn.Module):
    """Upsample by an integer ratio with a windowed-sinc interpolator: [B, C, T] → [B, C, ratio·T]."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        # Replicate-pad the input by `pad` samples, then trim the transposed conv's overhang.
        self.pad = kernel_size // ratio - 1
        self.trim_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.trim_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, ratio·T]."""
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(
            x, self.filter.expand(channels, -1, -1), stride=self.ratio, groups=channels
        )
        return x[..., self.trim_left : x.shape[-1] - self.trim_right]


class DownSample1d(nn.Module):
    """Low-pass then decimate by an integer ratio: [B, C, T] → [B, C, ⌈T / ratio⌉]."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, stride=ratio, kernel_size=kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, ⌈T / ratio⌉]."""
        return self.lowpass(x)


class Activation1d(nn.Module):
    """Apply ``activation`` at an upsampled rate, then return to the input rate: [B, C, T] → [B, C, T]."""

    def __init__(
        self,
        activation: nn.Module,
        up_ratio: int = 2,
        down_ratio: int = 2,
        up_kernel_size: int = DEFAULT_KERNEL_SIZE,
        down_kernel_size: int = DEFAULT_KERNEL_SIZE,
    ) -> None:
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(up_ratio, up_kernel_size)
        self.downsample = DownSample1d(down_ratio, down_kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, T] (for equal up and down ratios)."""
        return self.downsample(self.act(self.upsample(x)))
