"""MP-SENet: the speech denoiser the official HierSpeech++ scripts apply to voice prompts.

MP-SENet (Lu et al., 2023) predicts a magnitude mask and a clean phase from the compressed
magnitude and phase spectra of 16 kHz speech. The official pipelines denoise each voice prompt
with the released ``denoiser/g_best`` and feed both the original and the denoised prompt to the
style encoders, mixed by ``denoise_ratio``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import NativeCheckpointMixin, OfficialCheckpointMixin
from ..constants import MODEL_SAMPLE_RATE
from ..errors import AudioError
from ..nn.conformer import TimeFrequencyConformer
from ..nn.dense import DenseEncoder, MaskDecoder, PhaseDecoder

# MP-SENet hard-codes these inside its blocks (not in config.json).
CONFORMER_HEADS = 4
CONFORMER_KERNEL_SIZE = 31
CONFORMER_DROPOUT = 0.2
DENSE_DEPTH = 4


def compressed_stft(
    wav: Tensor, n_fft: int, hop_length: int, win_length: int, compress_factor: float
) -> tuple[Tensor, Tensor]:
    """[B, N] → (magnitude ** compress_factor, phase), each [B, n_fft // 2 + 1, N // hop + 1]
    (centred frames)."""
    window = torch.hann_window(win_length, device=wav.device, dtype=wav.dtype)
    spec = torch.stft(
        wav,
        n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        return_complex=True,
    )
    return spec.abs().pow(compress_factor), spec.angle()


def compressed_istft(
    magnitude: Tensor, phase: Tensor, n_fft: int, hop_length: int, win_length: int, compress_factor: float
) -> Tensor:
    """Inverse of :func:`compressed_stft`: [B, F, T] pair → [B, hop · (T - 1)] waveform."""
    magnitude = magnitude.pow(1.0 / compress_factor)
    spec = torch.polar(magnitude, phase)
    window = torch.hann_window(win_length, device=magnitude.device, dtype=magnitude.dtype)
    return torch.istft(spec, n_fft, hop_length=hop_length, win_length=win_length, window=window, center=True)


class MPSENet(nn.Module, OfficialCheckpointMixin, NativeCheckpointMixin):
    """MP-SENet generator (``MPNet`` in the official code); defaults are the released
    ``denoiser/config.json``.

    Args:
        dense_channel: width of every 2-D block.
        num_tsconformers: time-frequency conformer pairs.
        n_fft, hop_length, win_length: the STFT (400/100/400 at 16 kHz).
        compress_factor: magnitude compression exponent (0.3).
        beta: upper bound of the magnitude mask (2.0).
        sample_rate: the rate the model works at.
    """

    OFFICIAL_PREFIXES = (("TSConformer.", "ts_conformers."),)

    def __init__(
        self,
        dense_channel: int = 64,
        num_tsconformers: int = 4,
        n_fft: int = 400,
        hop_length: int = 100,
        win_length: int = 400,
        compress_factor: float = 0.3,
        beta: float = 2.0,
        sample_rate: int = MODEL_SAMPLE_RATE,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.compress_factor = compress_factor
        self.sample_rate = sample_rate
        self.dense_encoder = DenseEncoder(dense_channel, depth=DENSE_DEPTH)
        self.ts_conformers = nn.ModuleList(
            TimeFrequencyConformer(dense_channel, CONFORMER_HEADS, CONFORMER_KERNEL_SIZE, CONFORMER_DROPOUT)
            for _ in range(num_tsconformers)
        )
        self.mask_decoder = MaskDecoder(dense_channel, n_fft // 2 + 1, beta=beta, depth=DENSE_DEPTH)
        self.phase_decoder = PhaseDecoder(dense_channel, depth=DENSE_DEPTH)

    @classmethod
    def config_from_official(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        """Width, depth and STFT size read off the weights;
        hop and window follow MP-SENet's n_fft/4, n_fft."""
        n_fft = 2 * (state["mask_decoder.lsigmoid.slope"].shape[0] - 1)
        blocks = {key.split(".")[1] for key in state if key.startswith("TSConformer.")}
        return {
            "dense_channel": state["dense_encoder.dense_conv_1.0.weight"].shape[0],
            "num_tsconformers": len(blocks),
            "n_fft": n_fft,
            "hop_length": n_fft // 4,
            "win_length": n_fft,
        }

    def enhance(self, magnitude: Tensor, phase: Tensor) -> tuple[Tensor, Tensor]:
        """Compressed magnitude and phase [B, F, T] → denoised (compressed magnitude, phase) [B, F, T]."""
        enhanced = [self._enhance_one(m[None], p[None]) for m, p in zip(magnitude, phase)]
        return torch.cat([m for m, _ in enhanced]), torch.cat([p for _, p in enhanced])

    def _enhance_one(self, magnitude: Tensor, phase: Tensor) -> tuple[Tensor, Tensor]:
        noisy = torch.stack([magnitude, phase], dim=1).transpose(2, 3)  # [1, 2, F, T] -> [1, 2, T, F]
        x = self.dense_encoder(noisy)
        for block in self.ts_conformers:
            x = block(x)
        mask = self.mask_decoder(x)
        magnitude = (noisy[:, :1] * mask)[:, 0].transpose(1, 2)  # [1, 1, T, F] -> [1, F, T]
        return magnitude, self.phase_decoder(x)[:, 0].transpose(1, 2)

    def forward(self, wav: Tensor) -> Tensor:
        """Noisy speech [B, N] (or [N], [B, 1, N]) at ``sample_rate`` → denoised [B, N].

        Each row is scaled to unit RMS before the network and back after it, as the official
        ``denoise``; a silent row comes back unchanged.
        """
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        elif wav.dim() == 3 and wav.shape[1] == 1:
            wav = wav[:, 0]
        if wav.dim() != 2:
            raise AudioError(f"the denoiser takes a waveform [B, N], got shape {tuple(wav.shape)}")
        samples = wav.shape[-1]
        if samples < self.n_fft:
            raise AudioError(
                f"the denoiser needs at least {self.n_fft} samples ({self.n_fft / self.sample_rate:.3f} s), "
                f"got {samples}"
            )
        dtype = next(self.parameters()).dtype
        wav = wav.float()
        energy = wav.pow(2).sum(dim=-1, keepdim=True)
        norm = torch.where(energy > 0, torch.sqrt(samples / energy.clamp_min(1e-20)), 1.0)
        # Frames end on a hop boundary, so the inverse STFT gives back every sample.
        padded = nn.functional.pad(wav, (0, -samples % self.hop_length))
        magnitude, phase = compressed_stft(
            padded * norm, self.n_fft, self.hop_length, self.win_length, self.compress_factor
        )
        magnitude, phase = self.enhance(magnitude.to(dtype), phase.to(dtype))
        out = compressed_istft(
            magnitude.float(),
            phase.float(),
            self.n_fft,
            self.hop_length,
            self.win_length,
            self.compress_factor,
        )
        out = out[:, :samples] / norm
        return torch.where(energy > 0, out, wav)
