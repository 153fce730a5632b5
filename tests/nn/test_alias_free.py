"""Alias-free resampling, its filters (vs the official buffers) and the snake activations."""

from __future__ import annotations

import math

import pytest
import torch

from hierspeech2.nn.activations import Snake, SnakeBeta
from hierspeech2.nn.alias_free import (
    Activation1d,
    DownSample1d,
    LowPassFilter1d,
    PolyphaseActivation1d,
    UpSample1d,
    kaiser_sinc_filter1d,
)


def _sine(length: int, cycles_per_sample: float, dtype=torch.float32) -> torch.Tensor:
    t = torch.arange(length, dtype=dtype)
    return torch.sin(2 * math.pi * cycles_per_sample * t).view(1, 1, -1)


def test_filters_equal_official_buffers(shared_dir):
    from safetensors.torch import load_file

    official = load_file(shared_dir / "parity" / "buffers.safetensors")
    activation = Activation1d(SnakeBeta(4, log_scale=True))
    state = activation.state_dict()
    # The official checkpoints store both filters of every Activation1d; all share these values.
    for key in ("upsample.filter", "downsample.lowpass.filter"):
        reference = official[f"speechsr48k/dec.activation_post.{key}"]
        assert state[key].shape == (1, 1, 12)
        assert torch.equal(state[key], reference), key


@pytest.mark.parametrize("cls", [Activation1d, PolyphaseActivation1d])
def test_filter_buffers_are_persistent_with_official_names(cls):
    keys = set(cls(Snake(3)).state_dict())
    assert keys == {"act.alpha", "upsample.filter", "downsample.lowpass.filter"}


def test_kaiser_filter_is_symmetric_low_pass_with_unit_dc_gain():
    taps = kaiser_sinc_filter1d(0.25, 0.3, 12).flatten()
    assert taps.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(taps, taps.flip(0))
    odd = kaiser_sinc_filter1d(0.25, 0.3, 13).flatten()
    assert odd.argmax().item() == 6 and odd.sum().item() == pytest.approx(1.0, abs=1e-6)
    # Gain at Nyquist of the input rate (alternating signal) is strongly attenuated.
    alternating = torch.tensor([(-1.0) ** n for n in range(12)])
    assert abs((taps * alternating).sum().item()) < 0.05
    with pytest.raises(ValueError, match="cutoff"):
        kaiser_sinc_filter1d(0.7, 0.3, 12)


@pytest.mark.parametrize("length", [1, 2, 7, 200])
def test_resampling_lengths(length):
    x = torch.randn(2, 3, length)
    up = UpSample1d(2)(x)
    assert up.shape == (2, 3, 2 * length)
    assert DownSample1d(2)(up).shape == (2, 3, length)
    assert Activation1d(SnakeBeta(3))(x).shape == x.shape


def test_upsample_then_downsample_of_low_frequency_sine_is_identity():
    x = _sine(400, 0.02)
    y = DownSample1d(2)(UpSample1d(2)(x))
    interior = slice(20, -20)  # replicate padding bends the edges
    assert (y - x)[..., interior].abs().max().item() < 1e-3


def test_upsample_interpolates_the_sine():
    up = UpSample1d(2)(_sine(400, 0.02))
    # output sample k sits at input time (k - 0.5) / 2: the even-length filter centres between taps
    time = torch.arange(800, dtype=torch.float32) - 0.5
    expected = torch.sin(2 * math.pi * 0.01 * time)
    assert (up.flatten() - expected)[40:-40].abs().max().item() < 2e-3


def test_downsample_removes_content_above_new_nyquist():
    high = _sine(400, 0.45)  # above 0.25, the Nyquist frequency after decimating by 2
    y = DownSample1d(2)(high)
    assert y[..., 10:-10].abs().max().item() < 0.1


def test_constant_passes_unchanged():
    x = torch.full((1, 2, 50), 0.7)
    assert torch.allclose(UpSample1d(2)(x), torch.full((1, 2, 100), 0.7), atol=1e-6)
    assert torch.allclose(LowPassFilter1d(0.25, 0.3)(x), x, atol=1e-6)


def test_snake_formulas():
    x = torch.linspace(-3, 3, 11).view(1, 1, -1)
    snake = Snake(1, alpha=2.0)
    assert torch.allclose(snake(x), x + torch.sin(2 * x) ** 2 / 2, atol=1e-6)
    beta = SnakeBeta(1, log_scale=True)
    with torch.no_grad():
        beta.alpha.fill_(math.log(3.0))
        beta.beta.fill_(math.log(0.5))
    assert torch.allclose(beta(x), x + torch.sin(3 * x) ** 2 / 0.5, atol=1e-5)
    assert set(beta.state_dict()) == {"alpha", "beta"}


def test_float64_and_dtype_follow_input():
    activation = Activation1d(SnakeBeta(2, log_scale=True)).double()
    x = torch.randn(1, 2, 9, dtype=torch.float64)
    assert activation(x).dtype == torch.float64
