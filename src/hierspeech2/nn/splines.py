"""Monotonic rational-quadratic splines with linear tails (Durkan et al., 2019, "Neural Spline Flows").

The spline maps ``[-tail_bound, tail_bound]`` onto itself through ``num_bins`` monotonic
rational-quadratic pieces and is the identity outside it. Unit derivatives at the two
boundary knots make the map continuously differentiable across the tails. Everything is
elementwise over the leading dimensions, so it runs on the whole tensor at once (no
boolean gathers) and is safe to differentiate: out-of-range inputs are clamped before
the spline and replaced afterwards, so they never produce NaNs that could leak into
gradients through ``torch.where``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


def _knots(unnormalized: Tensor, min_size: float, bound: float) -> tuple[Tensor, Tensor]:
    """Softmax bin sizes with a floor → knot positions ``[..., K + 1]``
    and bin sizes ``[..., K]`` on [-bound, bound]."""
    num_bins = unnormalized.shape[-1]
    sizes = min_size + (1 - min_size * num_bins) * torch.softmax(unnormalized, dim=-1)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    knots = 2 * bound * knots - bound
    # Pin the ends exactly: the cumulative sum is off by rounding, and the tails start there.
    knots[..., 0] = -bound
    knots[..., -1] = bound
    return knots, knots[..., 1:] - knots[..., :-1]


def _pick(values: Tensor, index: Tensor) -> Tensor:
    return values.gather(-1, index).squeeze(-1)


def rational_quadratic_spline(
    inputs: Tensor,
    unnormalized_widths: Tensor,
    unnormalized_heights: Tensor,
    unnormalized_derivatives: Tensor,
    inverse: bool = False,
    tail_bound: float = 1.0,
    min_bin_width: float = MIN_BIN_WIDTH,
    min_bin_height: float = MIN_BIN_HEIGHT,
    min_derivative: float = MIN_DERIVATIVE,
) -> tuple[Tensor, Tensor]:
    """Apply the spline (or its inverse) elementwise; returns ``(outputs, log|d outputs / d inputs|)``.

    Args:
        inputs: ``[...]``.
        unnormalized_widths, unnormalized_heights: ``[..., K]`` logits of the ``K`` bin sizes.
        unnormalized_derivatives: ``[..., K - 1]`` pre-softplus derivatives at the inner knots.
        inverse: invert the map; the log-determinant is then that of the inverse.
        tail_bound: half-width of the spline's domain; identity outside it.
    """
    num_bins = unnormalized_widths.shape[-1]
    if min_bin_width * num_bins > 1.0 or min_bin_height * num_bins > 1.0:
        raise ValueError(f"minimum bin size too large for {num_bins} bins: lower it or use fewer bins")
    if unnormalized_derivatives.shape[-1] != num_bins - 1:
        raise ValueError(
            f"expected {num_bins - 1} inner-knot derivatives for {num_bins} bins, "
            f"got {unnormalized_derivatives.shape[-1]}"
        )

    inside = (inputs >= -tail_bound) & (inputs <= tail_bound)
    x = inputs.clamp(-tail_bound, tail_bound)

    x_knots, widths = _knots(unnormalized_widths, min_bin_width, tail_bound)
    y_knots, heights = _knots(unnormalized_heights, min_bin_height, tail_bound)
    # softplus(c) = 1 - min_derivative, so boundary derivatives are exactly 1 (linear tails).
    boundary = math.log(math.expm1(1 - min_derivative))
    derivatives = min_derivative + F.softplus(F.pad(unnormalized_derivatives, (1, 1), value=boundary))

    # Bin of each input: how many inner knots lie at or below it (searchsorted(right=True) on the
    # sorted knots, counted instead because ONNX has no searchsorted; there are only a few knots).
    knots = y_knots if inverse else x_knots
    bin_index = (knots[..., 1:-1] <= x.unsqueeze(-1)).sum(dim=-1, keepdim=True)

    x_left, width = _pick(x_knots, bin_index), _pick(widths, bin_index)
    y_left, height = _pick(y_knots, bin_index), _pick(heights, bin_index)
    d_left, d_right = _pick(derivatives, bin_index), _pick(derivatives[..., 1:], bin_index)
    slope = height / width
    curvature = d_left + d_right - 2 * slope

    if inverse:
        # Solve the piece's quadratic for theta with the numerically stable root.
        offset = x - y_left
        a = offset * curvature + height * (slope - d_left)
        b = height * d_left - offset * curvature
        c = -slope * offset
        discriminant = (b.pow(2) - 4 * a * c).clamp_min(0)
        theta = (2 * c) / (-b - torch.sqrt(discriminant))
        outputs = x_left + theta * width
    else:
        theta = (x - x_left) / width
        theta_1m = theta * (1 - theta)
        outputs = y_left + height * (slope * theta.pow(2) + d_left * theta_1m) / (
            slope + curvature * theta_1m
        )

    theta_1m = theta * (1 - theta)
    denominator = slope + curvature * theta_1m
    numerator = slope.pow(2) * (d_right * theta.pow(2) + 2 * slope * theta_1m + d_left * (1 - theta).pow(2))
    logabsdet = torch.log(numerator) - 2 * torch.log(denominator)
    if inverse:
        logabsdet = -logabsdet

    outputs = torch.where(inside, outputs, inputs)
    logabsdet = torch.where(inside, logabsdet, torch.zeros_like(logabsdet))
    return outputs, logabsdet
