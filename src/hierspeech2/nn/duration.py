"""Duration predictors: the stochastic flow-based predictor of VITS
(used by TextToVec) and the deterministic one.

Flow layers here follow the convention of :mod:`hierspeech2.nn.flows`:
``forward(x, x_mask, condition=None, reverse=False) -> (y, logdet)`` where ``logdet`` [B]
belongs to the direction that was run. Parameter names are the official ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .attention import ChannelLayerNorm
from .flows import Flip
from .splines import rational_quadratic_spline

LOG_FLOW_FLOOR = 1e-5  # official clamp before the log of durations


class DDSConv(nn.Module):
    """Residual stack of dilated depthwise-separable convolutions with LayerNorm and GELU:
    [B, C, T] → [B, C, T].

    Layer ``i`` has dilation ``kernel_size ** i``, so the receptive field grows geometrically.
    """

    def __init__(self, channels: int, kernel_size: int, n_layers: int, p_dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.convs_sep = nn.ModuleList()
        self.convs_1x1 = nn.ModuleList()
        self.norms_1 = nn.ModuleList()
        self.norms_2 = nn.ModuleList()
        for i in range(n_layers):
            dilation = kernel_size**i
            self.convs_sep.append(
                nn.Conv1d(
                    channels,
                    channels,
                    kernel_size,
                    groups=channels,
                    dilation=dilation,
                    padding=(kernel_size * dilation - dilation) // 2,
                )
            )
            self.convs_1x1.append(nn.Conv1d(channels, channels, 1))
            self.norms_1.append(ChannelLayerNorm(channels))
            self.norms_2.append(ChannelLayerNorm(channels))

    def forward(self, x: Tensor, x_mask: Tensor, condition: Tensor | None = None) -> Tensor:
        """``x`` [B, C, T], ``x_mask`` [B, 1, T], ``condition`` broadcastable to ``x`` → [B, C, T]."""
        if condition is not None:
            x = x + condition
        for conv_sep, conv_1x1, norm_1, norm_2 in zip(
            self.convs_sep, self.convs_1x1, self.norms_1, self.norms_2, strict=True
        ):
            y = F.gelu(norm_1(conv_sep(x * x_mask)))
            y = F.gelu(norm_2(conv_1x1(y)))
            x = x + self.drop(y)
        return x * x_mask


class ElementwiseAffine(nn.Module):
    """Learned per-channel affine map ``y = m + exp(logs) · x`` (parameters ``m``, ``logs`` [C, 1])."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def forward(
        self, x: Tensor, x_mask: Tensor, condition: Tensor | None = None, reverse: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``x`` [B, C, T], ``x_mask`` [B, 1, T] → ([B, C, T], logdet [B]); ``condition`` is ignored."""
        logdet = torch.sum(self.logs * x_mask, dim=(1, 2))
        if reverse:
            return (x - self.m) * torch.exp(-self.logs) * x_mask, -logdet
        return (self.m + torch.exp(self.logs) * x) * x_mask, logdet


class Log(nn.Module):
    """``y = log(x)`` on positive inputs (clamped at 1e-5), ``exp`` in reverse; no parameters."""

    def forward(
        self, x: Tensor, x_mask: Tensor, condition: Tensor | None = None, reverse: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``x`` [B, C, T], ``x_mask`` [B, 1, T] → ([B, C, T], logdet [B])."""
        if reverse:
            return torch.exp(x) * x_mask, torch.sum(x * x_mask, dim=(1, 2))
        y = torch.log(torch.clamp_min(x, LOG_FLOW_FLOOR)) * x_mask
        return y, torch.sum(-y, dim=(1, 2))


class ConvFlow(nn.Module):
    """Neural-spline coupling: the first half of the channels parameterises a rational-quadratic spline of
    the second.

    Args:
        in_channels: channels of the flow variable (even).
        filter_channels: width of the DDSConv that predicts the spline.
        kernel_size, n_layers: DDSConv shape.
        num_bins: spline pieces on ``[-tail_bound, tail_bound]``; identity outside.
    """

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        n_layers: int,
        num_bins: int = 10,
        tail_bound: float = 5.0,
    ) -> None:
        super().__init__()
        if in_channels % 2:
            raise ValueError(f"ConvFlow needs an even number of channels, got {in_channels}")
        self.half_channels = in_channels // 2
        self.filter_channels = filter_channels
        self.num_bins = num_bins
        self.tail_bound = tail_bound
        self.pre = nn.Conv1d(self.half_channels, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers, p_dropout=0.0)
        # widths, heights (num_bins each) and inner-knot derivatives (num_bins - 1) per channel
        self.proj = nn.Conv1d(filter_channels, self.half_channels * (num_bins * 3 - 1), 1)
        # zero-initialised: every position starts with the same input-independent spline
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(
        self, x: Tensor, x_mask: Tensor, condition: Tensor | None = None, reverse: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``x`` [B, C, T], ``x_mask`` [B, 1, T], ``condition`` [B, filter, T] → ([B, C, T], logdet [B])."""
        x0, x1 = x.split(self.half_channels, dim=1)
        h = self.proj(self.convs(self.pre(x0), x_mask, condition)) * x_mask
        h = rearrange(h, "b (c p) t -> b c t p", c=self.half_channels)
        scale = math.sqrt(self.filter_channels)
        bins = self.num_bins
        x1, logabsdet = rational_quadratic_spline(
            x1,
            h[..., :bins] / scale,
            h[..., bins : 2 * bins] / scale,
            h[..., 2 * bins :],
            inverse=reverse,
            tail_bound=self.tail_bound,
        )
        return torch.cat([x0, x1], dim=1) * x_mask, torch.sum(logabsdet * x_mask, dim=(1, 2))


class StochasticDurationPredictor(nn.Module):
    """Flow-based duration model (VITS): log-likelihood of durations for training,
    sampled log durations for inference.

    Args:
        in_channels: channels of the text hidden states.
        filter_channels: width of the internal convolutions (the official model forces it
            to ``in_channels``; pass the same value for released checkpoints).
        kernel_size: DDSConv kernel.
        p_dropout: dropout of the text and duration DDSConvs.
        n_flows: spline couplings of the main flow (the posterior flow always has 4).
        gin_channels: style channels (0 = unconditioned).
    """

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int = 3,
        p_dropout: float = 0.5,
        n_flows: int = 4,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.log_flow = Log()
        self.flows = nn.ModuleList([ElementwiseAffine(2)])
        for _ in range(n_flows):
            self.flows.extend([ConvFlow(2, filter_channels, kernel_size, n_layers=3), Flip()])

        self.post_pre = nn.Conv1d(1, filter_channels, 1)
        self.post_proj = nn.Conv1d(filter_channels, filter_channels, 1)
        self.post_convs = DDSConv(filter_channels, kernel_size, n_layers=3, p_dropout=p_dropout)
        self.post_flows = nn.ModuleList([ElementwiseAffine(2)])
        for _ in range(4):
            self.post_flows.extend([ConvFlow(2, filter_channels, kernel_size, n_layers=3), Flip()])

        self.pre = nn.Conv1d(in_channels, filter_channels, 1)
        self.proj = nn.Conv1d(filter_channels, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers=3, p_dropout=p_dropout)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, filter_channels, 1)

    def encode_text(self, x: Tensor, x_mask: Tensor, style: Tensor | None = None) -> Tensor:
        """Condition for the flows from text states ``x`` [B, C, T] and ``style`` [B, gin, 1] →
        [B, filter, T].

        Inputs are detached: the duration loss does not train the text encoder or style encoder.
        """
        h = self.pre(x.detach())
        if style is not None:
            h = h + self.cond(style.detach())
        return self.proj(self.convs(h, x_mask)) * x_mask

    def forward(
        self,
        x: Tensor,
        x_mask: Tensor,
        durations: Tensor,
        style: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Variational upper bound on -log p(durations):
        ``durations`` [B, 1, T] (frames per token) → nll [B]."""
        condition = self.encode_text(x, x_mask, style)

        # Posterior q(u, ν | d): dequantise the integer durations and sample the auxiliary channel.
        h_durations = self.post_proj(self.post_convs(self.post_pre(durations), x_mask)) * x_mask
        noise = torch.randn(
            (durations.shape[0], 2, durations.shape[2]), generator=generator, device=x.device, dtype=x.dtype
        )
        noise = noise * x_mask
        z_q, logdet_q = noise, 0.0
        for flow in self.post_flows:
            z_q, logdet = flow(z_q, x_mask, condition + h_durations)
            logdet_q = logdet_q + logdet
        z_u, z1 = z_q.split(1, dim=1)
        u = torch.sigmoid(z_u) * x_mask
        z0 = (durations - u) * x_mask
        logdet_q = logdet_q + torch.sum((F.logsigmoid(z_u) + F.logsigmoid(-z_u)) * x_mask, dim=(1, 2))
        log_q = torch.sum(-0.5 * (math.log(2 * math.pi) + noise**2) * x_mask, dim=(1, 2)) - logdet_q

        z0, logdet_total = self.log_flow(z0, x_mask)
        z = torch.cat([z0, z1], dim=1)
        for flow in self.flows:
            z, logdet = flow(z, x_mask, condition)
            logdet_total = logdet_total + logdet
        nll = torch.sum(0.5 * (math.log(2 * math.pi) + z**2) * x_mask, dim=(1, 2)) - logdet_total
        return nll + log_q

    def infer(
        self,
        x: Tensor,
        x_mask: Tensor,
        style: Tensor | None = None,
        noise_scale: float = 1.0,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Sample log durations [B, 1, T] for text states ``x`` [B, C, T]
        (``noise_scale=0``: deterministic); ``noise`` [B, 2, T] is the standard normal draw to use
        (default: drawn here, from ``generator``)."""
        condition = self.encode_text(x, x_mask, style)
        if noise is None:
            noise = torch.randn(
                (x.shape[0], 2, x.shape[2]), generator=generator, device=x.device, dtype=x.dtype
            )
        z = noise * noise_scale
        # flows[1], the first spline coupling, only transforms the auxiliary channel, which is
        # discarded, so inverting it is skipped (as the official inference does).
        for flow in reversed([self.flows[0], *self.flows[2:]]):
            z, _ = flow(z, x_mask, condition, reverse=True)
        return z[:, :1]


class DurationPredictor(nn.Module):
    """Deterministic log-duration regressor (two conv/ReLU/LayerNorm layers): [B, C, T] → [B, 1, T]."""

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        p_dropout: float,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_1 = ChannelLayerNorm(filter_channels)
        self.conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_2 = ChannelLayerNorm(filter_channels)
        self.proj = nn.Conv1d(filter_channels, 1, 1)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, in_channels, 1)

    def forward(self, x: Tensor, x_mask: Tensor, style: Tensor | None = None) -> Tensor:
        """Text states ``x`` [B, C, T] (detached), ``x_mask`` [B, 1, T], ``style`` [B, gin, 1] → log
        durations [B, 1, T]."""
        x = x.detach()
        if style is not None:
            x = x + self.cond(style.detach())
        x = self.drop(self.norm_1(torch.relu(self.conv_1(x * x_mask))))
        x = self.drop(self.norm_2(torch.relu(self.conv_2(x * x_mask))))
        return self.proj(x * x_mask) * x_mask
