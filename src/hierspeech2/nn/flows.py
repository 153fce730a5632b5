"""Normalising-flow layers: affine coupling (WaveNet or adaLN-transformer conditioned), Flip, coupling block.

Every layer maps ``(x, x_mask, condition, reverse)`` to ``(y, logdet)``; ``logdet`` [B]
is the log-determinant of the direction that was run (negated in reverse).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import AdaLNTransformerBlock
from .wavenet import WN


class Flip(nn.Module):
    """Reverse the channel order (a volume-preserving permutation between couplings)."""

    def forward(
        self, x: Tensor, x_mask: Tensor | None = None, condition: Tensor | None = None, reverse: bool = False
    ) -> tuple[Tensor, Tensor]:
        """[B, C, T] → ([B, C, T], zeros [B])."""
        return torch.flip(x, [1]), x.new_zeros(x.shape[0])


class _AffineCoupling(nn.Module):
    """Shared coupling maths: the first half of the channels predicts a shift (and log-scale) of the
    second."""

    def __init__(self, channels: int, hidden_channels: int, mean_only: bool) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling layers need an even number of channels, got {channels}")
        self.half_channels = channels // 2
        self.mean_only = mean_only
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.post = nn.Conv1d(hidden_channels, self.half_channels * (1 if mean_only else 2), 1)
        # start as the identity map, as VITS does
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def encode(self, hidden: Tensor, x_mask: Tensor, condition: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(
        self, x: Tensor, x_mask: Tensor, condition: Tensor | None = None, reverse: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``x`` [B, C, T], ``x_mask`` [B, 1, T] → ([B, C, T], logdet [B])."""
        x0, x1 = x.split(self.half_channels, dim=1)
        hidden = self.encode(self.pre(x0) * x_mask, x_mask, condition)
        stats = self.post(hidden) * x_mask
        if self.mean_only:
            shift, log_scale = stats, torch.zeros_like(stats)
        else:
            shift, log_scale = stats.split(self.half_channels, dim=1)
        if reverse:
            x1 = (x1 - shift) * torch.exp(-log_scale) * x_mask
            logdet = -log_scale.sum(dim=(1, 2))
        else:
            x1 = shift + x1 * torch.exp(log_scale) * x_mask
            logdet = log_scale.sum(dim=(1, 2))
        return torch.cat([x0, x1], dim=1), logdet


class ResidualCouplingLayer(_AffineCoupling):
    """Affine coupling whose shift/scale come from a WaveNet (VITS); ``condition`` [B, gin, 1]."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        p_dropout: float = 0.0,
        gin_channels: int = 0,
        mean_only: bool = False,
    ) -> None:
        super().__init__(channels, hidden_channels, mean_only)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels, p_dropout)

    def encode(self, hidden: Tensor, x_mask: Tensor, condition: Tensor | None) -> Tensor:
        return self.enc(hidden, x_mask, g=condition)


class TransformerCouplingLayer(_AffineCoupling):
    """Affine coupling whose shift comes from adaLN transformer blocks (HierSpeech++); ``condition``
    [B, H]."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        n_layers: int,
        n_heads: int,
        kernel_size: int = 5,
        mlp_ratio: float = 4.0,
        p_dropout: float = 0.1,
        mean_only: bool = True,
    ) -> None:
        super().__init__(channels, hidden_channels, mean_only)
        self.enc_block = nn.ModuleList(
            AdaLNTransformerBlock(hidden_channels, n_heads, mlp_ratio, kernel_size, p_dropout)
            for _ in range(n_layers)
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # adaLN-Zero blocks and a zero output projection: the layer starts as the identity
        for layer in [block.adaLN_modulation[-1] for block in self.enc_block] + [self.post]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def encode(self, hidden: Tensor, x_mask: Tensor, condition: Tensor | None) -> Tensor:
        if condition is None:
            raise ValueError("TransformerCouplingLayer needs a condition vector [B, hidden_channels]")
        hidden, time_mask = hidden.transpose(1, 2), x_mask.transpose(1, 2)  # [B, C, T] -> [B, T, C]
        for block in self.enc_block:
            hidden = block(hidden, condition, time_mask)
        return hidden.transpose(1, 2)


class TransformerCouplingBlock(nn.Module):
    """Stack of (transformer coupling, Flip) pairs conditioned on a style vector (``flow``/``flow_l``).

    The style [B, gin, 1] is first mapped to the blocks' width by ``cond_block``
    (Linear → SiLU → Linear).
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        n_layers: int = 3,
        n_flows: int = 4,
        gin_channels: int = 256,
        n_heads: int = 2,
        kernel_size: int = 5,
        p_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.cond_block = nn.Sequential(
            nn.Linear(gin_channels, 4 * hidden_channels),
            nn.SiLU(),
            nn.Linear(4 * hidden_channels, hidden_channels),
        )
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                TransformerCouplingLayer(
                    channels,
                    hidden_channels,
                    n_layers,
                    n_heads,
                    kernel_size,
                    p_dropout=p_dropout,
                    mean_only=True,
                )
            )
            self.flows.append(Flip())

    def forward(self, x: Tensor, x_mask: Tensor, style: Tensor, reverse: bool = False) -> Tensor:
        """``x`` [B, C, T], ``x_mask`` [B, 1, T], ``style`` [B, gin, 1] → [B, C, T]."""
        condition = self.cond_block(style.squeeze(-1))
        flows = reversed(self.flows) if reverse else self.flows
        for flow in flows:
            x, _ = flow(x, x_mask, condition, reverse=reverse)
        return x
