from __future__ import annotations

import pytest
import torch

from hierspeech2.nn.functional import (
    gated_tanh_sigmoid,
    kl_divergence,
    length_mask,
    rand_slice_segments,
    sample_gaussian,
    sequence_mask,
    slice_segments,
)


def test_sequence_mask_marks_valid_frames() -> None:
    mask = sequence_mask(torch.tensor([1, 3, 0]), 4)
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    assert sequence_mask(torch.tensor([2, 5])).shape == (2, 5)


def test_length_mask_is_float_b1t() -> None:
    mask = length_mask(torch.tensor([2, 3]), 4, dtype=torch.float64)
    assert mask.dtype == torch.float64 and mask.shape == (2, 1, 4)
    assert mask.sum().item() == 5.0


def test_gated_tanh_sigmoid_matches_formula() -> None:
    x, cond = torch.randn(2, 6, 5), torch.randn(2, 6, 5)
    s = x + cond
    expected = torch.tanh(s[:, :3]) * torch.sigmoid(s[:, 3:])
    torch.testing.assert_close(gated_tanh_sigmoid(x, cond, 3), expected)


def test_sample_gaussian_noise_scale_zero_is_mean_masked() -> None:
    mean, log_std = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    mask = length_mask(torch.tensor([3]), 4)
    assert torch.equal(sample_gaussian(mean, log_std, mask, 0.0), mean * mask)
    torch.manual_seed(0)
    drawn = sample_gaussian(mean, log_std, mask, 1.0)
    assert not torch.allclose(drawn, mean * mask)
    assert torch.all(drawn[..., 3] == 0)


def test_kl_divergence_known_values() -> None:
    zero = torch.zeros(3)
    torch.testing.assert_close(kl_divergence(zero, zero, zero, zero), zero)
    # KL(N(1, 1) || N(0, 1)) = 0.5
    torch.testing.assert_close(
        kl_divergence(torch.ones(1), zero[:1], zero[:1], zero[:1]), torch.tensor([0.5])
    )
    # KL(N(0, e^2) || N(0, 1)) = (e^2 - 1) / 2 - 1
    expected = (torch.exp(torch.tensor(2.0)) - 1) / 2 - 1
    torch.testing.assert_close(kl_divergence(zero[:1], torch.ones(1), zero[:1], zero[:1]), expected.view(1))


def test_slice_segments_picks_windows_per_row() -> None:
    x = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)
    out = slice_segments(x, torch.tensor([1, 6]), 4)
    assert torch.equal(out[0], x[0, :, 1:5]) and torch.equal(out[1], x[1, :, 6:10])
    wav = torch.arange(20.0).view(2, 10)
    assert torch.equal(
        slice_segments(wav, torch.tensor([0, 2]), 3), torch.tensor([[0.0, 1, 2], [12, 13, 14]])
    )


def test_rand_slice_segments_stays_inside_lengths() -> None:
    x = torch.arange(4 * 12, dtype=torch.float32).view(4, 1, 12)
    lengths = torch.tensor([12, 5, 8, 4])
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        segments, starts = rand_slice_segments(x, lengths, 4, generator=generator)
        assert torch.all(starts + 4 <= lengths) and torch.all(starts >= 0)
        assert torch.equal(segments[:, 0, 0], x[torch.arange(4), 0, starts])
    with pytest.raises(ValueError, match="segment_size"):
        rand_slice_segments(x, torch.tensor([12, 3, 8, 4]), 4)
