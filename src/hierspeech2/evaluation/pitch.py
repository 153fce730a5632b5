"""F0 metrics between an estimated and a reference F0 track: RMSE in cents, correlation, V/UV F1."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["F0Metrics", "f0_metrics"]


@dataclass(frozen=True)
class F0Metrics:
    """F0 agreement of two tracks.

    Attributes:
        rmse_cents: root mean square of ``1200 · log2(estimate / reference)`` on frames voiced in
            both (NaN when no frame is).
        pearson: Pearson correlation of the two tracks in Hz on those frames (NaN for fewer than
            two frames or a constant track).
        vuv_f1: F1 of the voicing decision, voiced frames of the reference as the positives.
        voiced_frames: frames voiced in both tracks.
        frames: frames compared.
    """

    rmse_cents: float
    pearson: float
    vuv_f1: float
    voiced_frames: int
    frames: int


def f0_metrics(estimate_f0: Tensor, reference_f0: Tensor, max_length_difference: int = 2) -> F0Metrics:
    """Compare F0 tracks in Hz (0 = unvoiced) frame by frame; any shape that flattens to frames.

    Tracks made from audio of slightly different lengths differ by a frame or two: the longer one
    is cut to the shorter. A larger difference (more than ``max_length_difference`` frames) means
    the tracks do not describe the same audio, and is an error.
    """
    estimate = torch.as_tensor(estimate_f0, dtype=torch.float64).reshape(-1)
    reference = torch.as_tensor(reference_f0, dtype=torch.float64).reshape(-1)
    if abs(estimate.numel() - reference.numel()) > max_length_difference:
        raise ValueError(
            f"F0 tracks of {estimate.numel()} and {reference.numel()} frames: they differ by more than "
            f"{max_length_difference} frames, so they are not tracks of the same audio"
        )
    if not (torch.isfinite(estimate).all() and torch.isfinite(reference).all()):
        raise ValueError("F0 tracks must be finite (0 marks an unvoiced frame)")
    if (estimate < 0).any() or (reference < 0).any():
        raise ValueError("F0 tracks are in Hz and cannot be negative (0 marks an unvoiced frame)")
    frames = min(estimate.numel(), reference.numel())
    estimate, reference = estimate[:frames], reference[:frames]
    voiced_estimate, voiced_reference = estimate > 0, reference > 0
    both = voiced_estimate & voiced_reference
    count = int(both.sum())

    if count:
        cents = 1200.0 * torch.log2(estimate[both] / reference[both])
        rmse = float(cents.pow(2).mean().sqrt())
    else:
        rmse = math.nan
    pearson = _pearson(estimate[both], reference[both]) if count >= 2 else math.nan

    true_positive = count
    predicted, actual = int(voiced_estimate.sum()), int(voiced_reference.sum())
    if predicted + actual == 0:
        f1 = 1.0  # both tracks unvoiced throughout: the voicing decisions agree everywhere
    else:
        f1 = 2.0 * true_positive / (predicted + actual)
    return F0Metrics(rmse, pearson, f1, count, frames)


def _pearson(a: Tensor, b: Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else math.nan
