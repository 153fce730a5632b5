from __future__ import annotations

import pytest
import torch

from hierspeech2.nn.splines import rational_quadratic_spline

NUM_BINS = 10
TAIL = 2.0


def _parameters(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    widths = torch.randn(*shape, NUM_BINS, generator=gen)
    heights = torch.randn(*shape, NUM_BINS, generator=gen)
    derivatives = torch.randn(*shape, NUM_BINS - 1, generator=gen)
    return widths, heights, derivatives


def test_inverse_undoes_forward_and_log_determinants_cancel() -> None:
    x = torch.linspace(-3.0, 3.0, 303, dtype=torch.float64).view(3, 1, 101)
    params = [p.double() for p in _parameters((3, 1, 101))]
    y, logdet = rational_quadratic_spline(x, *params, tail_bound=TAIL)
    x_back, logdet_inverse = rational_quadratic_spline(y, *params, inverse=True, tail_bound=TAIL)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(logdet + logdet_inverse, torch.zeros_like(logdet), atol=1e-10, rtol=0)
    assert not torch.allclose(y, x)  # the spline does something inside the bound


def test_identity_outside_tail_bound() -> None:
    x = torch.tensor([[-5.0, -2.5, 2.5, 7.0]])
    y, logdet = rational_quadratic_spline(x, *_parameters((1, 4)), tail_bound=TAIL)
    assert torch.equal(y, x)
    assert torch.equal(logdet, torch.zeros_like(x))


def test_maps_bound_to_bound_and_is_monotonic() -> None:
    x = torch.linspace(-TAIL, TAIL, 2001)
    params = [p.expand(2001, -1) for p in _parameters((1,))]
    y, _ = rational_quadratic_spline(x, *params, tail_bound=TAIL)
    assert y[0].item() == pytest.approx(-TAIL) and y[-1].item() == pytest.approx(TAIL)
    assert bool((y[1:] > y[:-1]).all())


def test_log_determinant_matches_autograd_derivative() -> None:
    x = torch.linspace(-2.5, 2.5, 64, dtype=torch.float64).requires_grad_()
    params = [p.double() for p in _parameters((64,), seed=3)]
    y, logdet = rational_quadratic_spline(x, *params, tail_bound=TAIL)
    (slope,) = torch.autograd.grad(y.sum(), x)  # elementwise map: the gradient is dy/dx
    torch.testing.assert_close(logdet.detach(), slope.log(), atol=1e-9, rtol=0)


def test_gradients_stay_finite_for_tail_inputs() -> None:
    x = torch.tensor([-50.0, -2.0, 0.3, 2.0, 50.0], requires_grad=True)
    params = [p.requires_grad_() for p in _parameters((5,), seed=1)]
    y, logdet = rational_quadratic_spline(x, *params, tail_bound=TAIL)
    (y.sum() + logdet.sum()).backward()
    for tensor in (x, *params):
        assert torch.isfinite(tensor.grad).all()


def test_rejects_wrong_number_of_derivatives() -> None:
    widths, heights, derivatives = _parameters((3,))
    with pytest.raises(ValueError, match="inner-knot derivatives"):
        rational_quadratic_spline(
            torch.zeros(3), widths, heights, torch.cat([derivatives, derivatives[:, :1]], -1)
        )
