from __future__ import annotations

import pytest
import torch

from hierspeech2.nn.duration import (
    ConvFlow,
    DDSConv,
    DurationPredictor,
    ElementwiseAffine,
    Log,
    StochasticDurationPredictor,
)
from hierspeech2.nn.functional import length_mask


def _randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=gen) * scale)
    return module.eval()


MASK = length_mask(torch.tensor([12, 7]), 12)


@pytest.mark.parametrize(
    ("flow", "x"),
    [
        (ElementwiseAffine(2), torch.randn(2, 2, 12)),
        (ConvFlow(2, 8, 3, n_layers=3), torch.randn(2, 2, 12) * 3),
        (Log(), torch.rand(2, 1, 12) * 5 + 0.1),
    ],
    ids=["affine", "spline", "log"],
)
def test_flow_layers_invert_with_opposite_log_determinants(flow: torch.nn.Module, x: torch.Tensor) -> None:
    # float64: the spline's inverse solves a quadratic whose float32 rounding alone moves the summed
    # log-determinant by up to ~1.5e-4 for some inputs; in float64 the identity holds to 1e-9.
    flow, x, mask = _randomise(flow).double(), x.double(), MASK.double()
    condition = torch.randn(2, 8, 12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y, logdet = flow(x, mask, condition)
    x_back, logdet_inverse = flow(y, mask, condition, reverse=True)
    torch.testing.assert_close(x_back, x * mask, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(
        logdet + logdet_inverse, torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0
    )
    assert logdet.shape == (2,) and logdet.abs().sum() > 0


def test_dds_conv_keeps_shape_and_zeroes_padding() -> None:
    conv = _randomise(DDSConv(8, 3, n_layers=3))
    out = conv(torch.randn(2, 8, 12), MASK)
    assert out.shape == (2, 8, 12)
    assert out[1, :, 7:].abs().max() == 0
    assert out[1, :, :7].abs().max() > 0


def test_stochastic_duration_predictor_infer_shapes_and_noise() -> None:
    predictor = _randomise(StochasticDurationPredictor(16, 16, 3, 0.5, n_flows=4, gin_channels=8))
    x, style = torch.randn(2, 16, 12), torch.randn(2, 8, 1)
    log_durations = predictor.infer(x, MASK, style, noise_scale=0.0)
    assert log_durations.shape == (2, 1, 12)
    assert log_durations[1, :, 7:].abs().max() == 0  # padding stays zero
    assert torch.equal(log_durations, predictor.infer(x, MASK, style, noise_scale=0.0))
    noisy = predictor.infer(x, MASK, style, noise_scale=1.0, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(noisy, log_durations)


def test_skipped_first_spline_only_touches_the_discarded_channel() -> None:
    predictor = _randomise(StochasticDurationPredictor(16, 16, 3, 0.5, n_flows=2, gin_channels=8))
    x, style = torch.randn(2, 16, 12), torch.randn(2, 8, 1)
    noise = torch.randn(2, 2, 12, generator=torch.Generator().manual_seed(123))
    condition = predictor.encode_text(x, MASK, style)
    z = noise
    for flow in reversed(predictor.flows):  # every flow, flows[1] included
        z, _ = flow(z, MASK, condition, reverse=True)
    log_durations = predictor.infer(
        x, MASK, style, noise_scale=1.0, generator=torch.Generator().manual_seed(123)
    )
    torch.testing.assert_close(log_durations, z[:, :1], atol=1e-6, rtol=0)
    assert log_durations.abs().max() > 0


def test_stochastic_duration_predictor_likelihood() -> None:
    predictor = _randomise(StochasticDurationPredictor(16, 16, 3, 0.5, n_flows=4, gin_channels=8), scale=0.1)
    x = torch.randn(2, 16, 12, requires_grad=True)
    durations = torch.randint(1, 6, (2, 1, 12)).float() * MASK
    nll = predictor(x, MASK, durations, torch.randn(2, 8, 1), generator=torch.Generator().manual_seed(0))
    assert nll.shape == (2,) and torch.isfinite(nll).all()
    nll.sum().backward()
    assert x.grad is None  # text states are detached
    assert all(p.grad is not None for p in predictor.flows[1].parameters())


def test_deterministic_duration_predictor() -> None:
    predictor = _randomise(DurationPredictor(16, 32, 3, 0.1, gin_channels=8))
    out = predictor(torch.randn(2, 16, 12), MASK, torch.randn(2, 8, 1))
    assert out.shape == (2, 1, 12)
    assert out[1, :, 7:].abs().max() == 0 and out[1, :, :7].abs().max() > 0
    assert {
        "conv_1.weight",
        "norm_1.gamma",
        "conv_2.weight",
        "norm_2.beta",
        "proj.weight",
        "cond.weight",
    } <= set(predictor.state_dict())
