"""Transformer blocks of the VITS family and the adaLN blocks of HierSpeech++'s flows.

Two attention flavours are used by the released models:

* :class:`MultiHeadAttention` — 1×1-conv projections on [B, C, T] with an
  optional windowed relative-position bias (VITS), masked; used by the text
  encoder, the prosody decoder and the style encoder through :class:`Encoder`.
* :class:`AdaLNTransformerBlock` — a DiT block (fused qkv projection, adaptive
  LayerNorm modulation from a conditioning vector, convolutional MLP) on
  [B, T, C], used inside the coupling layers of the normalising flows.

Parameter names are those of the official checkpoints.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

MASKED_SCORE = -1e4  # official fill value for masked logits (not -inf: fully masked rows stay finite)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a [B, C, T] tensor (parameters ``gamma``/``beta``)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, T]."""
        x = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


def _relative_to_absolute(logits: Tensor) -> Tensor:
    """[..., L, 2L-1] logits indexed by offset (key - query + L - 1) → [..., L, L] indexed by key."""
    length = logits.shape[-2]
    positions = torch.arange(length, device=logits.device)
    index = positions.view(1, -1) - positions.view(-1, 1) + (length - 1)
    return torch.gather(logits, -1, index.expand(*logits.shape[:-1], length))


def _absolute_to_relative(weights: Tensor) -> Tensor:
    """[..., L, L] weights indexed by key → [..., L, 2L-1] indexed by offset, zero outside the sequence."""
    length = weights.shape[-1]
    index = torch.arange(2 * length - 1, device=weights.device).view(1, -1)
    index = index + torch.arange(length, device=weights.device).view(-1, 1) - (length - 1)
    inside = ((index >= 0) & (index < length)).to(weights.dtype)
    gathered = torch.gather(weights, -1, index.clamp(0, length - 1).expand(*weights.shape[:-1], -1))
    return gathered * inside


class MultiHeadAttention(nn.Module):
    """Multi-head attention with conv projections and optional windowed relative positions (VITS).

    Args:
        channels: input (query/key/value) channels, divisible by ``n_heads``.
        out_channels: channels of the output projection.
        n_heads: number of heads.
        p_dropout: dropout on the attention weights.
        window_size: relative positions ±``window_size`` get learned key/value embeddings
            (``emb_rel_k`` / ``emb_rel_v``, shared by all heads); ``None`` for plain attention.
        proximal_init: initialise the key projection as a copy of the query projection.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        n_heads: int,
        p_dropout: float = 0.0,
        window_size: int | None = None,
        proximal_init: bool = False,
    ) -> None:
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.head_channels = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)
        if window_size is not None:
            std = self.head_channels**-0.5
            self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * window_size + 1, self.head_channels) * std)
            self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * window_size + 1, self.head_channels) * std)
        for conv in (self.conv_q, self.conv_k, self.conv_v):
            nn.init.xavier_uniform_(conv.weight)
        if proximal_init:
            with torch.no_grad():
                self.conv_k.weight.copy_(self.conv_q.weight)
                self.conv_k.bias.copy_(self.conv_q.bias)

    def _window(self, embeddings: Tensor, length: int) -> Tensor:
        """Relative embeddings for offsets -(L-1)..(L-1): [1, 2L-1, D], zero beyond the window."""
        window = self.window_size
        pad = max(length - (window + 1), 0)
        start = max((window + 1) - length, 0)
        padded = F.pad(embeddings, (0, 0, pad, pad)) if pad > 0 else embeddings
        return padded[:, start : start + 2 * length - 1]

    def forward(self, x: Tensor, context: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """Attend from ``x`` [B, C, Tq] to ``context`` [B, C, Tk]; ``attn_mask`` [B, 1, Tq, Tk]
        (0 = blocked)."""
        split = "b (h d) t -> b h t d"
        query = rearrange(self.conv_q(x), split, h=self.n_heads) / math.sqrt(self.head_channels)
        key = rearrange(self.conv_k(context), split, h=self.n_heads)
        value = rearrange(self.conv_v(context), split, h=self.n_heads)

        scores = query @ key.transpose(-2, -1)
        if self.window_size is not None:
            if x.shape[-1] != context.shape[-1]:
                raise ValueError("relative-position attention needs queries and keys of the same length")
            rel_keys = self._window(self.emb_rel_k, key.shape[2])
            scores = scores + _relative_to_absolute(query @ rel_keys.unsqueeze(0).transpose(-2, -1))
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask == 0, MASKED_SCORE)
        weights = self.drop(F.softmax(scores, dim=-1))
        out = weights @ value
        if self.window_size is not None:
            rel_values = self._window(self.emb_rel_v, key.shape[2])
            out = out + _absolute_to_relative(weights) @ rel_values.unsqueeze(0)
        return self.conv_o(rearrange(out, "b h t d -> b (h d) t"))


class FFN(nn.Module):
    """Position-wise feed-forward with 'same'-padded convolutions and ReLU, masked: [B, C, T] → [B, C', T]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        filter_channels: int,
        kernel_size: int,
        p_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.padding = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size)
        self.drop = nn.Dropout(p_dropout)

    def forward(self, x: Tensor, x_mask: Tensor) -> Tensor:
        """``x`` [B, C, T], ``x_mask`` [B, 1, T] → [B, C', T]."""
        x = torch.relu(self.conv_1(F.pad(x * x_mask, self.padding)))
        x = self.conv_2(F.pad(self.drop(x) * x_mask, self.padding))
        return x * x_mask


class Encoder(nn.Module):
    """Post-norm transformer encoder with relative-position attention (VITS): [B, C, T] → [B, C, T]."""

    def __init__(
        self,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int = 1,
        p_dropout: float = 0.0,
        window_size: int = 4,
    ) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList(
            MultiHeadAttention(hidden_channels, hidden_channels, n_heads, p_dropout, window_size=window_size)
            for _ in range(n_layers)
        )
        self.norm_layers_1 = nn.ModuleList(ChannelLayerNorm(hidden_channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(
            FFN(hidden_channels, hidden_channels, filter_channels, kernel_size, p_dropout)
            for _ in range(n_layers)
        )
        self.norm_layers_2 = nn.ModuleList(ChannelLayerNorm(hidden_channels) for _ in range(n_layers))

    def forward(self, x: Tensor, x_mask: Tensor) -> Tensor:
        """``x`` [B, C, T], ``x_mask`` [B, 1, T] → [B, C, T] (zero on padding)."""
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        for attention, norm_1, ffn, norm_2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2
        ):
            x = norm_1(x + self.drop(attention(x, x, attn_mask)))
            x = norm_2(x + self.drop(ffn(x, x_mask)))
        return x * x_mask


class FusedSelfAttention(nn.Module):
    """Unmasked multi-head self-attention with one fused qkv projection (timm layout): [B, T, C] →
    [B, T, C]."""

    def __init__(self, channels: int, n_heads: int) -> None:
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        """[B, T, C] → [B, T, C]."""
        query, key, value = rearrange(
            self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.n_heads
        )
        out = F.scaled_dot_product_attention(query, key, value)
        return self.proj(rearrange(out, "b h t d -> b t (h d)"))


class ConvMLP(nn.Module):
    """GELU MLP whose first layer is a 'same' convolution over time: [B, T, C] → [B, T, C]."""

    def __init__(
        self, channels: int, hidden_channels: int, kernel_size: int = 5, p_dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Conv1d(channels, hidden_channels, kernel_size, padding=(kernel_size - 1) // 2)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Conv1d(hidden_channels, channels, 1)
        self.drop = nn.Dropout(p_dropout)

    def forward(self, x: Tensor, x_mask: Tensor) -> Tensor:
        """``x`` [B, T, C], ``x_mask`` [B, 1, T] → [B, T, C]."""
        # official: the first layer sees the unmasked input; only its output is masked
        hidden = self.drop(self.act(self.fc1(x.transpose(1, 2))))
        out = self.drop(self.fc2(hidden * x_mask) * x_mask)
        return out.transpose(1, 2)


class AdaLNTransformerBlock(nn.Module):
    """DiT block: adaLN-modulated self-attention and conv MLP, gated residuals: [B, T, C] → [B, T, C].

    The attention is deliberately unmasked: the official flows attend over
    padded frames (which carry the modulation shift), and the released weights
    were trained that way. Results for a padded batch row therefore differ from
    the same row run alone; they agree when the rows have equal lengths.
    """

    def __init__(
        self,
        channels: int,
        n_heads: int,
        mlp_ratio: float = 4.0,
        kernel_size: int = 5,
        p_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(channels, elementwise_affine=False, eps=1e-6)
        self.attn = FusedSelfAttention(channels, n_heads)
        self.norm2 = nn.LayerNorm(channels, elementwise_affine=False, eps=1e-6)
        self.mlp = ConvMLP(channels, int(channels * mlp_ratio), kernel_size, p_dropout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels))

    def forward(self, x: Tensor, condition: Tensor, x_mask: Tensor) -> Tensor:
        """``x`` [B, T, C], ``condition`` [B, C], ``x_mask`` [B, T, 1] → [B, T, C]."""
        shift_attn, scale_attn, gate_attn, shift_mlp, scale_mlp, gate_mlp = (
            self.adaLN_modulation(condition).unsqueeze(1).chunk(6, dim=-1)
        )
        x = x * x_mask
        attn_in = self.norm1(x) * x_mask * (1 + scale_attn) + shift_attn
        x = x + gate_attn * self.attn(attn_in) * x_mask
        mlp_in = self.norm2(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.mlp(mlp_in, x_mask.transpose(1, 2))
