"""Non-causal WaveNet stack (``WN`` in VITS and HierSpeech++), with optional global conditioning."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .functional import gated_tanh_sigmoid


class WN(nn.Module):
    """Gated dilated convolutions with residual and skip paths: [B, H, T] → [B, H, T] (sum of skips).

    Args:
        hidden_channels: channels of the residual stream (and of the output).
        kernel_size: odd kernel of the dilated convolutions.
        dilation_rate: layer ``i`` uses dilation ``dilation_rate ** i``.
        n_layers: number of gated layers.
        gin_channels: channels of the global condition (0 = unconditioned).
        p_dropout: dropout on the gated activations.
    """

    def __init__(
        self,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
        p_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WN needs an odd kernel_size to keep lengths, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        if gin_channels:
            self.cond_layer = weight_norm(nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1))
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(
                weight_norm(
                    nn.Conv1d(
                        hidden_channels,
                        2 * hidden_channels,
                        kernel_size,
                        dilation=dilation,
                        padding=dilation * (kernel_size - 1) // 2,
                    )
                )
            )
            # the last layer only feeds the skip sum, so it has no residual half
            out_channels = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(weight_norm(nn.Conv1d(hidden_channels, out_channels, 1)))

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor | None = None) -> Tensor:
        """``x`` [B, H, T], ``x_mask`` [B, 1, T], ``g`` [B, gin, 1] or [B, gin, T] → [B, H, T]."""
        hidden = self.hidden_channels
        conditions = self.cond_layer(g).split(2 * hidden, dim=1) if g is not None else None
        skip = torch.zeros_like(x)
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            pre = in_layer(x)
            condition = conditions[i] if conditions is not None else torch.zeros_like(pre)
            acts = self.drop(gated_tanh_sigmoid(pre, condition, hidden))
            res_skip = res_skip_layer(acts)
            if i < self.n_layers - 1:
                x = (x + res_skip[:, :hidden]) * x_mask
                skip = skip + res_skip[:, hidden:]
            else:
                skip = skip + res_skip
        return skip * x_mask
