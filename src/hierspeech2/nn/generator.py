"""HierSpeech++'s source-filter waveform synthesis: the source network and the pitch-injected generator.

The source network upsamples the latent to 4 frames per hop and predicts log F0 from
its hidden features; the generator (BigVGAN with alias-free SnakeBeta) consumes those
hidden features twice: downsampled by :class:`DBlock` and added after ``conv_pre``, and
projected and added after the first upsampling stage (which must reach 4 frames per hop).
Both build on :class:`~hierspeech2.nn.upsampler.Upsampler`; child names are the official keys.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .resblocks import LRELU_SLOPE, init_conv_
from .upsampler import Upsampler

# Official SourceNetwork: two ×2 stages (4 pitch frames per latent frame), AMP kernels 3/5/7.
SOURCE_UPSAMPLE_RATES = (2, 2)
SOURCE_UPSAMPLE_KERNEL_SIZES = (4, 4)
SOURCE_RESBLOCK_KERNEL_SIZES = (3, 5, 7)
SOURCE_RESBLOCK_DILATIONS = ((1, 3, 5), (1, 3, 5), (1, 3, 5))


class DBlock(nn.Module):
    """Downsampling residual block (nearest resampling + dilated convs): [B, C, T] → [B, H, T // factor]."""

    def __init__(self, input_size: int, hidden_size: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.residual_dense = weight_norm(nn.Conv1d(input_size, hidden_size, 1))
        self.conv = nn.ModuleList(
            weight_norm(init_conv_(nn.Conv1d(channels, hidden_size, 3, dilation=dilation, padding=dilation)))
            for channels, dilation in ((input_size, 1), (hidden_size, 2), (hidden_size, 4))
        )

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, H, T // factor]."""
        size = x.shape[-1] // self.factor
        residual = F.interpolate(self.residual_dense(x), size=size)
        x = F.interpolate(x, size=size)
        for conv in self.conv:
            x = conv(F.leaky_relu(x, LRELU_SLOPE))
        return x + residual


class SourceNetwork(Upsampler):
    """Latent [B, C, T] + style [B, S, 1] → (source features [B, initial/4, 4T], log F0 [B, 1, 4T])."""

    def __init__(
        self, in_channels: int = 192, initial_channels: int = 256, style_channels: int = 256
    ) -> None:
        super().__init__(
            in_channels,
            initial_channels,
            SOURCE_UPSAMPLE_RATES,
            SOURCE_UPSAMPLE_KERNEL_SIZES,
            SOURCE_RESBLOCK_KERNEL_SIZES,
            SOURCE_RESBLOCK_DILATIONS,
            cond_channels=style_channels,
        )

    def forward(self, z: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """``z`` [B, C, T], ``style`` [B, S, 1] → (source_hidden [B, H, 4T], log_f0_pred [B, 1, 4T])."""
        hidden = self.features(z, style)
        return hidden, self.conv_post(hidden)


class Generator(Upsampler):
    """BigVGAN generator with source (pitch) injection: latent [B, C, T] → waveform [B, 1, T · ∏ rates].

    The released configuration is :class:`~hierspeech2.models.HierSpeech2`'s defaults.

    Args:
        in_channels: latent channels.
        resblock_kernel_sizes, resblock_dilation_sizes: AMP blocks per stage.
        upsample_rates, upsample_initial_channel, upsample_kernel_sizes: the upsampling stack;
            the first rate must equal the source network's 4 frames per latent frame.
        gin_channels: style channels.
        source_channels: channels of the source network's hidden features
            (``upsample_initial_channel // 8`` in the released configuration).
    """

    def __init__(
        self,
        in_channels: int,
        resblock_kernel_sizes: tuple[int, ...],
        resblock_dilation_sizes: tuple[tuple[int, ...], ...],
        upsample_rates: tuple[int, ...],
        upsample_initial_channel: int,
        upsample_kernel_sizes: tuple[int, ...],
        gin_channels: int,
        source_channels: int,
    ) -> None:
        source_factor = math.prod(SOURCE_UPSAMPLE_RATES)
        if upsample_rates[0] != source_factor:
            raise ValueError(
                f"the generator's first upsample rate must be {source_factor} to meet the source features "
                f"({source_factor} frames per latent frame), got upsample_rates={upsample_rates}"
            )
        super().__init__(
            in_channels,
            upsample_initial_channel,
            upsample_rates,
            upsample_kernel_sizes,
            resblock_kernel_sizes,
            resblock_dilation_sizes,
            cond_channels=gin_channels,
            tanh_output=True,
        )
        self.downs = DBlock(source_channels, upsample_initial_channel, source_factor)
        self.proj = nn.Conv1d(source_channels, upsample_initial_channel // 2, 7, padding=3)

    def forward(self, z: Tensor, source_hidden: Tensor, style: Tensor) -> Tensor:  # type: ignore[override]
        """``z`` [B, C, T], ``source_hidden`` [B, source, 4T], ``style`` [B, S, 1] → [B, 1, T · ∏ rates]."""
        return super().forward(
            z, style, injection=self.downs(source_hidden), stage_injections={0: self.proj(source_hidden)}
        )
