"""HierSpeech++ backbone encoders: the acoustic posterior, the source-filter semantic prior,
the prosody decoder.

Encoders return Gaussian statistics ``(mean, log_std)`` [B, C, T], both zero on padding;
draw a latent with :func:`hierspeech2.nn.functional.sample_gaussian`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from ..constants import F0_FRAMES_PER_HOP
from .activations import SnakeBeta
from .alias_free import Activation1d
from .attention import Encoder
from .resblocks import ResBlock
from .wavenet import WN


class PosteriorAudioEncoder(nn.Module):
    """Linear spectrogram + raw waveform → posterior statistics (``enc_q``).

    A WaveNet reads the spectrogram; a strided AMP-block stack downsamples the
    waveform to the frame rate; both are concatenated and projected.

    Args:
        in_channels: spectrogram bins.
        out_channels: latent channels.
        hidden_channels: WaveNet width.
        kernel_size, dilation_rate, n_layers: WaveNet shape.
        gin_channels: style channels.
        audio_channels: widths of the waveform path, input conv first (one more than rates).
        downsample_rates, downsample_kernel_sizes: strided convolutions of the waveform path;
            their product is the hop length.
        resblock_kernel_sizes, resblock_dilation_sizes: AMP blocks averaged after each stride.
    """

    def __init__(
        self,
        in_channels: int = 641,
        out_channels: int = 192,
        hidden_channels: int = 192,
        kernel_size: int = 5,
        dilation_rate: int = 1,
        n_layers: int = 16,
        gin_channels: int = 256,
        audio_channels: tuple[int, ...] = (16, 32, 64, 128, 192),
        downsample_rates: tuple[int, ...] = (8, 5, 4, 2),
        downsample_kernel_sizes: tuple[int, ...] = (17, 10, 8, 4),
        resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11),
        resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
    ) -> None:
        super().__init__()
        if not len(audio_channels) == len(downsample_rates) + 1 == len(downsample_kernel_sizes) + 1:
            raise ValueError(
                f"audio_channels {audio_channels} needs one entry more than downsample_rates "
                f"{downsample_rates} and downsample_kernel_sizes {downsample_kernel_sizes}"
            )
        self.out_channels = out_channels
        self.num_kernels = len(resblock_kernel_sizes)
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.down_pre = nn.Conv1d(1, audio_channels[0], 7, padding=3)
        self.downs = nn.ModuleList(
            weight_norm(nn.Conv1d(c_in, c_out, kernel, rate, padding=(kernel - 1) // 2))
            for c_in, c_out, rate, kernel in zip(
                audio_channels, audio_channels[1:], downsample_rates, downsample_kernel_sizes
            )
        )
        self.resblocks = nn.ModuleList(
            ResBlock(channels, kernel, dilations, "snakebeta")
            for channels in audio_channels[1:]
            for kernel, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes)
        )
        self.activation_post = Activation1d(SnakeBeta(audio_channels[-1], log_scale=True))
        self.conv_post = nn.Conv1d(audio_channels[-1], hidden_channels, 7, padding=3)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.proj = nn.Conv1d(2 * hidden_channels, 2 * out_channels, 1)

    def encode_audio(self, audio: Tensor) -> Tensor:
        """Waveform [B, 1, hop · T] → frame features [B, hidden, T]."""
        x = self.down_pre(audio)
        for stage, down in enumerate(self.downs):
            x = down(x)
            blocks = self.resblocks[stage * self.num_kernels : (stage + 1) * self.num_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / self.num_kernels
        return self.conv_post(self.activation_post(x))

    def forward(self, spec: Tensor, audio: Tensor, mask: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        """``spec`` [B, F, T], ``audio`` [B, 1, hop · T], ``mask`` [B, 1, T], ``style`` [B, S, 1] →
        (mean, log_std)."""
        x = self.enc(self.pre(spec) * mask, mask, g=style)
        stats = self.proj(torch.cat([x, self.encode_audio(audio) * mask], dim=1)) * mask
        mean, log_std = stats.split(self.out_channels, dim=1)
        return mean, log_std


class SourceFilterEncoder(nn.Module):
    """Semantic features + log F0 → prior statistics (``enc_p`` / ``enc_p_l``).

    The semantic (source) and pitch (filter) streams each get a WaveNet, their
    sum a third one. ``log_f0`` has 4 frames per semantic frame and is brought to
    the frame rate by a stride-4 convolution.

    Args:
        in_channels: semantic feature channels (MMS: 1024).
        out_channels: latent channels.
        hidden_channels: width.
        kernel_size, dilation_rate: WaveNet shape.
        n_layers: layers of *each* of the three WaveNets (the official code is given 16 and halves it).
        gin_channels: style channels.
    """

    def __init__(
        self,
        in_channels: int = 1024,
        out_channels: int = 192,
        hidden_channels: int = 192,
        kernel_size: int = 5,
        dilation_rate: int = 1,
        n_layers: int = 8,
        gin_channels: int = 256,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pre_source = nn.Conv1d(in_channels, hidden_channels, 1)
        self.pre_filter = nn.Conv1d(1, hidden_channels, kernel_size=9, stride=F0_FRAMES_PER_HOP, padding=4)
        self.source_enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.filter_enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.proj = nn.Conv1d(hidden_channels, 2 * out_channels, 1)

    def forward(self, semantic: Tensor, log_f0: Tensor, mask: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        """``semantic`` [B, D, T], ``log_f0`` [B, 1, 4T], ``mask`` [B, 1, T], ``style`` [B, S, 1] →
        (mean, log_std)."""
        source = self.source_enc(self.pre_source(semantic) * mask, mask, g=style)
        filter_ = self.filter_enc(self.pre_filter(log_f0) * mask, mask, g=style)
        stats = self.proj(self.enc(source + filter_, mask, g=style)) * mask
        mean, log_std = stats.split(self.out_channels, dim=1)
        return mean, log_std


class MelDecoder(nn.Module):
    """Latent → the first ``mel_size`` log-mel bins (the prosody target), a small transformer.

    Args:
        hidden_channels: latent channels (also the transformer width).
        filter_channels: transformer feed-forward width.
        n_heads, n_layers, kernel_size, p_dropout: transformer shape.
        mel_size: predicted bins.
        gin_channels: style channels (0 = unconditioned).
    """

    def __init__(
        self,
        hidden_channels: int = 192,
        filter_channels: int = 768,
        n_heads: int = 2,
        n_layers: int = 2,
        kernel_size: int = 5,
        p_dropout: float = 0.1,
        mel_size: int = 20,
        gin_channels: int = 256,
    ) -> None:
        super().__init__()
        self.conv_pre = nn.Conv1d(hidden_channels, hidden_channels, 3, padding=1)
        self.encoder = Encoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout)
        self.proj = nn.Conv1d(hidden_channels, mel_size, 1, bias=False)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, hidden_channels, 1)

    def forward(self, z: Tensor, mask: Tensor, style: Tensor | None = None) -> Tensor:
        """``z`` [B, C, T], ``mask`` [B, 1, T], ``style`` [B, S, 1] → [B, mel_size, T]."""
        x = self.conv_pre(z * mask)
        if style is not None:
            x = x + self.cond(style)
        return self.proj(self.encoder(x * mask, mask)) * mask
