"""Conformer blocks (feed-forward, self-attention,
depthwise convolution) and MP-SENet's time-frequency pairing.

Parameter names are those of the official MP-SENet checkpoint (``ffm.*``, ``attn.attn.in_proj_weight``,
``ccm.ccm.*``), so the ``nn.Sequential`` indices below are part of the checkpoint format.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from einops.layers.torch import Rearrange
from torch import Tensor, nn

# Positions attended in one scaled-dot-product call; bounds memory on long inputs with the
# same result as one call over everything (positions are independent).
ATTENTION_POSITIONS_PER_CALL = 256


class FeedForwardModule(nn.Module):
    """Pre-norm feed-forward ``LayerNorm → Linear → SiLU → Linear``: [..., C] → [..., C]."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.ffm = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        """[..., C] → [..., C]."""
        return self.ffm(x)


class ConformerConvModule(nn.Module):
    """Pre-norm convolution module: pointwise GLU, depthwise conv along axis 1, BatchNorm, SiLU: [N, L, C]."""

    def __init__(
        self, dim: int, expansion_factor: int = 2, kernel_size: int = 31, dropout: float = 0.0
    ) -> None:
        super().__init__()
        inner = dim * expansion_factor
        self.ccm = nn.Sequential(
            nn.LayerNorm(dim),
            Rearrange("n l c -> n c l"),
            nn.Conv1d(dim, 2 * inner, 1),
            nn.GLU(dim=1),
            nn.Conv1d(inner, inner, kernel_size, padding=(kernel_size - 1) // 2, groups=inner),
            nn.BatchNorm1d(inner),
            nn.SiLU(),
            nn.Conv1d(inner, dim, 1),
            Rearrange("n c l -> n l c"),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        """[N, L, C] → [N, L, C]."""
        return self.ccm(x)


class SequenceFirstAttention(nn.Module):
    """Pre-norm multi-head self-attention over axis 0 of ``[S, N, C]`` (``nn.MultiheadAttention`` layout).

    The official MP-SENet feeds ``[N, L, C]`` tensors to a sequence-first ``nn.MultiheadAttention``,
    so it attends across axis 0 for every position of axis 1; the released weights were trained
    that way and this block keeps it. The maths runs through ``scaled_dot_product_attention``
    in slices of axis 1, so memory grows linearly with the sequence instead of quadratically.
    """

    def __init__(self, dim: int, n_head: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % n_head:
            raise ValueError(f"attention width {dim} must be divisible by the number of heads {n_head}")
        self.n_head = n_head
        self.layernorm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, n_head, dropout=dropout)  # holds the official parameters

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [S, N, C] → [S, N, C], each of the N columns attending over its S entries."""
        x = self.layernorm(x)
        q, k, v = F.linear(x, self.attn.in_proj_weight, self.attn.in_proj_bias).chunk(3, dim=-1)
        dropout = self.attn.dropout if self.training else 0.0
        out = []
        for start in range(0, x.shape[1], ATTENTION_POSITIONS_PER_CALL):
            part = slice(start, start + ATTENTION_POSITIONS_PER_CALL)
            heads = [rearrange(t[:, part], "s n (h d) -> n h s d", h=self.n_head) for t in (q, k, v)]
            attended = F.scaled_dot_product_attention(*heads, dropout_p=dropout)
            out.append(rearrange(attended, "n h s d -> s n (h d)"))
        return self.attn.out_proj(torch.cat(out, dim=1))


class ConformerBlock(nn.Module):
    """Macaron conformer: ½ FFN, self-attention, convolution, ½ FFN, LayerNorm; all residual: [N, L, C].

    Attention runs over axis 0 and the convolution along axis 1 (see :class:`SequenceFirstAttention`).
    """

    def __init__(
        self,
        dim: int,
        n_head: int = 8,
        ffm_mult: int = 4,
        ccm_expansion_factor: int = 2,
        ccm_kernel_size: int = 31,
        ffm_dropout: float = 0.0,
        attn_dropout: float = 0.0,
        ccm_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.ffm1 = FeedForwardModule(dim, ffm_mult, ffm_dropout)
        self.attn = SequenceFirstAttention(dim, n_head, attn_dropout)
        self.ccm = ConformerConvModule(dim, ccm_expansion_factor, ccm_kernel_size, ccm_dropout)
        self.ffm2 = FeedForwardModule(dim, ffm_mult, ffm_dropout)
        self.post_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """[N, L, C] → [N, L, C]."""
        x = x + 0.5 * self.ffm1(x)
        x = x + self.attn(x)
        x = x + self.ccm(x)
        x = x + 0.5 * self.ffm2(x)
        return self.post_norm(x)


class TimeFrequencyConformer(nn.Module):
    """MP-SENet's two-stage conformer on a [1, C, T, F] time-frequency map: a "time" then a "frequency" block.

    Each block is residual around a :class:`ConformerBlock`. The "time" block convolves along
    time (its attention, sequence-first as in the official code, runs across frequency) and the
    "frequency" block the other way round. Batch items would attend to each other (the official
    flattens batch and axis together), so this block takes one item at a time.
    """

    def __init__(self, dim: int, n_head: int = 4, kernel_size: int = 31, dropout: float = 0.2) -> None:
        super().__init__()
        self.time_conformer = ConformerBlock(
            dim, n_head, ccm_kernel_size=kernel_size, ffm_dropout=dropout, attn_dropout=dropout
        )
        self.freq_conformer = ConformerBlock(
            dim, n_head, ccm_kernel_size=kernel_size, ffm_dropout=dropout, attn_dropout=dropout
        )

    def forward(self, x: Tensor) -> Tensor:
        """[1, C, T, F] → [1, C, T, F]."""
        if x.shape[0] != 1:
            raise ValueError(f"TimeFrequencyConformer takes one item at a time, got a batch of {x.shape[0]}")
        frames = x.shape[2]
        x = rearrange(x, "1 c t f -> f t c")
        x = self.time_conformer(x) + x
        x = rearrange(x, "f t c -> t f c")
        x = self.freq_conformer(x) + x
        return rearrange(x, "t f c -> 1 c t f", t=frames)
