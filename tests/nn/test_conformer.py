"""Conformer blocks of MP-SENet: the sequence-first attention against torch's MultiheadAttention."""

from __future__ import annotations

import pytest
import torch

from hierspeech2.nn import conformer
from hierspeech2.nn.conformer import ConformerBlock, SequenceFirstAttention, TimeFrequencyConformer
from hierspeech2.nn.dense import DenseEncoder, MaskDecoder, PhaseDecoder


def test_attention_equals_multihead_attention_over_axis_0(monkeypatch) -> None:
    torch.manual_seed(0)
    block = SequenceFirstAttention(8, n_head=4).eval()
    x = torch.randn(7, 10, 8)  # attention over the 7 entries of axis 0, for each of 10 columns
    monkeypatch.setattr(conformer, "ATTENTION_POSITIONS_PER_CALL", 3)  # several slices of columns
    with torch.no_grad():
        normed = block.layernorm(x)
        expected, _ = block.attn(normed, normed, normed)  # the official call (sequence-first layout)
        out = block(x)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    # columns never see each other
    with torch.no_grad():
        torch.testing.assert_close(block(x[:, :4]), out[:, :4], atol=1e-6, rtol=1e-5)


def test_blocks_keep_shapes_and_take_one_item() -> None:
    torch.manual_seed(0)
    assert ConformerBlock(8, n_head=2, ccm_kernel_size=5).eval()(torch.randn(3, 11, 8)).shape == (3, 11, 8)
    tf = TimeFrequencyConformer(8, n_head=4, kernel_size=5).eval()
    x = torch.randn(1, 8, 13, 16)
    assert tf(x).shape == x.shape
    with pytest.raises(ValueError, match="one item at a time"):
        tf(torch.randn(2, 8, 13, 16))
    features = DenseEncoder(8)(torch.randn(1, 2, 13, 33))  # 33 frequency bins → 16
    assert features.shape == (1, 8, 13, 16)
    mask = MaskDecoder(8, n_freqs=33, beta=2.0)(features)
    phase = PhaseDecoder(8)(features)
    assert mask.shape == phase.shape == (1, 1, 13, 33)
    assert 0 < mask.min() and mask.max() < 2.0 and phase.abs().max() <= torch.pi
