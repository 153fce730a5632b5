"""Mel-spectrogram style encoder (Meta-StyleSpeech's mel-style encoder, as used by HierSpeech++)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention


class GatedConvBlock(nn.Module):
    """Residual gated convolution ``x + dropout(a * sigmoid(b))`` with ``[a | b] = conv1(x)``: [B, C, T]."""

    def __init__(self, channels: int, kernel_size: int, p_dropout: float) -> None:
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Conv1d(channels, 2 * channels, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(p_dropout)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, T]."""
        value, gate = self.conv1(x).split(self.channels, dim=1)
        return x + self.dropout(value * torch.sigmoid(gate))


class StyleEncoder(nn.Module):
    """Mel frames → one style vector: spectral MLP, gated temporal convs, self-attention, masked mean.

    Args:
        in_dim: mel bins.
        hidden_dim: width of the encoder.
        out_dim: size of the style vector.
        kernel_size: kernel of the temporal gated convolutions.
        n_heads: heads of the self-attention.
        p_dropout: dropout everywhere.
    """

    def __init__(
        self,
        in_dim: int = 80,
        hidden_dim: int = 256,
        out_dim: int = 256,
        kernel_size: int = 5,
        n_heads: int = 2,
        p_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.spectral = nn.Sequential(
            nn.Conv1d(in_dim, hidden_dim, 1),
            nn.Mish(),
            nn.Dropout(p_dropout),
            nn.Conv1d(hidden_dim, hidden_dim, 1),
            nn.Mish(),
            nn.Dropout(p_dropout),
        )
        self.temporal = nn.Sequential(
            GatedConvBlock(hidden_dim, kernel_size, p_dropout),
            GatedConvBlock(hidden_dim, kernel_size, p_dropout),
        )
        self.slf_attn = MultiHeadAttention(hidden_dim, hidden_dim, n_heads, p_dropout, proximal_init=True)
        self.atten_drop = nn.Dropout(p_dropout)
        self.fc = nn.Conv1d(hidden_dim, out_dim, 1)

    def forward(self, mel: Tensor, mask: Tensor) -> Tensor:
        """``mel`` [B, in_dim, T], ``mask`` [B, 1, T] → style [B, out_dim]."""
        x = self.spectral(mel) * mask
        # Masking after every temporal block (the official masks after the pair) and in the
        # pooling (the official sums padded frames too) changes nothing for an unpadded prompt,
        # which is all official inference sees, and makes a padded batch row equal to the
        # same prompt run alone.
        for block in self.temporal:
            x = block(x) * mask
        attn_mask = mask.unsqueeze(2) * mask.unsqueeze(-1)
        x = x + self.atten_drop(self.slf_attn(x, x, attn_mask))
        x = self.fc(x)
        return (x * mask).sum(dim=2) / mask.sum(dim=2)
