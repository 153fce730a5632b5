"""GAN discriminators: multi-period (HiFi-GAN) and multi-resolution complex-STFT (HierSpeech++).

One parameterised set for every model: the backbone and SpeechSR-24k use five STFT
resolutions, SpeechSR-48k adds (4096, 1024, 4096). The combined
:class:`MultiDiscriminator` lists the STFT discriminators first and the period ones after,
as the official ``MultiPeriodDiscriminator`` does, so its child names
(``discriminators.{i}.convs.{j}``, ``conv_post``) match the official state-dict keys.

Every discriminator maps a waveform [B, 1, N] to ``(logits, features)``: logits [B, K]
flattened over the last map, features the activations after each layer (for feature
matching).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

LRELU_SLOPE = 0.1  # HiFi-GAN's leaky ReLU slope, used by every official discriminator

PERIODS = (2, 3, 5, 7, 11)
# (n_fft, hop_length, win_length) of the backbone's and SpeechSR-24k's STFT discriminators
RESOLUTIONS = ((2048, 512, 2048), (1024, 256, 1024), (512, 128, 512), (256, 64, 256), (128, 32, 128))
# SpeechSR-48k adds a coarser one in front
RESOLUTIONS_48K = ((4096, 1024, 4096), *RESOLUTIONS)

DiscriminatorOutput = tuple[Tensor, list[Tensor]]


def _normalised(module: nn.Module, use_spectral_norm: bool) -> nn.Module:
    return spectral_norm(module) if use_spectral_norm else weight_norm(module)


def _judge(convs: nn.ModuleList, conv_post: nn.Module, x: Tensor) -> DiscriminatorOutput:
    """The 2-D convolutions (each followed by a leaky ReLU), then ``conv_post``: (logits, features)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        features.append(x)
    x = conv_post(x)
    features.append(x)
    return torch.flatten(x, 1), features


class PeriodDiscriminator(nn.Module):
    """Waveform [B, 1, N] folded into [B, 1, N / p, p] columns,
    judged by strided 2-D convolutions over time."""

    def __init__(
        self,
        period: int,
        kernel_size: int = 5,
        stride: int = 3,
        channels: tuple[int, ...] = (32, 128, 512, 1024, 1024),
        use_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.period = period
        padding = (kernel_size - 1) // 2
        widths = (1, *channels)
        self.convs = nn.ModuleList(
            _normalised(
                nn.Conv2d(
                    widths[i],
                    widths[i + 1],
                    (kernel_size, 1),
                    # the last layer keeps the time resolution
                    (stride if i < len(channels) - 1 else 1, 1),
                    padding=(padding, 0),
                ),
                use_spectral_norm,
            )
            for i in range(len(channels))
        )
        self.conv_post = _normalised(nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0)), use_spectral_norm)

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        """[B, 1, N] → (logits [B, K], features)."""
        remainder = wav.shape[-1] % self.period
        if remainder:
            wav = F.pad(wav, (0, self.period - remainder), mode="reflect")
        x = rearrange(wav, "b c (t p) -> b c t p", p=self.period)
        return _judge(self.convs, self.conv_post, x)


class ComplexSTFTDiscriminator(nn.Module):
    """Real and imaginary STFT planes [B, 2, frames, bins] of a waveform, judged by 2-D convolutions.

    The STFT is uncentred, with the window-energy normalisation of torchaudio's
    ``Spectrogram(normalized=True)`` (as the official discriminator); it runs in float32
    outside autocast, since half-precision FFTs are unsupported or inaccurate.
    """

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int,
        channels: int = 32,
        use_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        layers = (
            nn.Conv2d(2, channels, (3, 9), padding=(1, 4)),
            nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(2, 1), padding=(2, 4)),
            nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(4, 1), padding=(4, 4)),
            nn.Conv2d(channels, channels, (3, 3), padding=(1, 1)),
        )
        self.convs = nn.ModuleList(_normalised(layer, use_spectral_norm) for layer in layers)
        self.conv_post = _normalised(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)), use_spectral_norm)

    def spectrogram(self, wav: Tensor) -> Tensor:
        """[B, 1, N] → [B, 2, frames, n_fft // 2 + 1] (real, imaginary), in ``wav``'s dtype."""
        if wav.shape[-1] < self.n_fft:
            raise ValueError(
                f"a {wav.shape[-1]}-sample segment is shorter than the STFT discriminator's n_fft "
                f"{self.n_fft}; train on segments of at least {self.n_fft} samples"
            )
        with torch.autocast(device_type=wav.device.type, enabled=False):
            window = self.window.float()
            spec = torch.stft(
                wav.squeeze(1).float(),
                self.n_fft,
                self.hop_length,
                window.shape[-1],
                window,
                center=False,
                return_complex=True,
            )
            spec = spec / window.pow(2).sum().sqrt()
        planes = torch.stack([spec.real, spec.imag], dim=1).to(wav.dtype)
        return rearrange(planes, "b c f t -> b c t f")

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        """[B, 1, N] → (logits [B, K], features)."""
        x = self.spectrogram(wav)
        return _judge(self.convs, self.conv_post, x)


class MultiDiscriminator(nn.Module):
    """Complex-STFT discriminators (one per resolution) followed by period discriminators.

    Defaults are the backbone's and SpeechSR-24k's set; pass ``resolutions=RESOLUTIONS_48K``
    for SpeechSR-48k. ``forward`` judges one waveform batch; call it on real and generated
    audio separately (or concatenated along the batch).
    """

    def __init__(
        self,
        periods: tuple[int, ...] = PERIODS,
        resolutions: tuple[tuple[int, int, int], ...] = RESOLUTIONS,
        period_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024),
        stft_channels: int = 32,
        use_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if not periods and not resolutions:
            raise ValueError("MultiDiscriminator needs at least one period or one STFT resolution")
        stft = [
            ComplexSTFTDiscriminator(*resolution, channels=stft_channels, use_spectral_norm=use_spectral_norm)
            for resolution in resolutions
        ]
        period = [
            PeriodDiscriminator(p, channels=period_channels, use_spectral_norm=use_spectral_norm)
            for p in periods
        ]
        self.discriminators = nn.ModuleList([*stft, *period])

    @property
    def min_samples(self) -> int:
        """Shortest waveform every member accepts (the largest STFT size)."""
        sizes = [d.n_fft for d in self.discriminators if isinstance(d, ComplexSTFTDiscriminator)]
        return max(sizes, default=1)

    def forward(self, wav: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """[B, 1, N] → (logits of each discriminator, features of each discriminator)."""
        logits, features = [], []
        for discriminator in self.discriminators:
            score, maps = discriminator(wav)
            logits.append(score)
            features.append(maps)
        return logits, features
