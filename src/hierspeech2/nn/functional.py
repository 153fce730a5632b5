"""Small pure tensor helpers shared by the models (masks, gated activations, Gaussians, slicing)."""

from __future__ import annotations

import torch
from torch import Tensor


def sequence_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """Boolean mask [B, T] that is True on the first ``lengths[b]`` frames of each row."""
    if max_length is None:
        max_length = int(lengths.max())
    positions = torch.arange(max_length, device=lengths.device, dtype=lengths.dtype)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def length_mask(lengths: Tensor, max_length: int | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Float mask [B, 1, T] (1 on valid frames, 0 on padding), the ``x * x_mask`` convention."""
    return sequence_mask(lengths, max_length).unsqueeze(1).to(dtype)


def gated_tanh_sigmoid(x: Tensor, condition: Tensor, channels: int) -> Tensor:
    """WaveNet gate ``tanh(a) * sigmoid(b)`` of ``x + condition`` split as [a | b]: [B, 2C, T] → [B, C, T]."""
    summed = x + condition
    return torch.tanh(summed[:, :channels]) * torch.sigmoid(summed[:, channels:])


def sample_gaussian(mean: Tensor, log_std: Tensor, mask: Tensor, noise_scale: float = 1.0) -> Tensor:
    """Draw ``(mean + ε · exp(log_std) · noise_scale) · mask`` with ε ~ N(0, 1); shapes [B, C, T]."""
    return (mean + torch.randn_like(mean) * torch.exp(log_std) * noise_scale) * mask


def kl_divergence(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """Element-wise KL(P ‖ Q) between diagonal Gaussians given means and log standard deviations."""
    return (
        log_std_q
        - log_std_p
        - 0.5
        + 0.5 * (torch.exp(2.0 * log_std_p) + (mean_p - mean_q) ** 2) * torch.exp(-2.0 * log_std_q)
    )


def slice_segments(x: Tensor, starts: Tensor, segment_size: int) -> Tensor:
    """Cut ``x[b, ..., starts[b] : starts[b] + segment_size]`` for each row: [B, ..., T] → [B, ..., S]."""
    offsets = torch.arange(segment_size, device=x.device)
    index = (starts.to(x.device).long().view(-1, 1) + offsets).view(x.shape[0], *([1] * (x.dim() - 2)), -1)
    return torch.gather(x, -1, index.expand(*x.shape[:-1], segment_size))


def rand_slice_segments(
    x: Tensor, lengths: Tensor | None = None, segment_size: int = 4, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Random windows of ``segment_size`` frames inside each row's valid part; returns (segments, starts)."""
    batch, time = x.shape[0], x.shape[-1]
    if lengths is None:
        lengths = torch.full((batch,), time, device=x.device)
    if bool((lengths < segment_size).any()):
        raise ValueError(
            f"every sequence must be at least segment_size={segment_size} frames long to slice, "
            f"got lengths {lengths.tolist()}; filter short utterances or lower segment_size"
        )
    highest_start = (lengths.to(x.device) - segment_size + 1).to(torch.float32)
    device = x.device if generator is None else generator.device
    starts = (torch.rand(batch, generator=generator, device=device).to(x.device) * highest_start).long()
    return slice_segments(x, starts, segment_size), starts
