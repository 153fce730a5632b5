from __future__ import annotations

import pytest
import torch

from hierspeech2.nn.flows import (
    Flip,
    ResidualCouplingLayer,
    TransformerCouplingBlock,
    TransformerCouplingLayer,
)
from hierspeech2.nn.functional import length_mask


def _randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * scale)


def test_couplings_start_as_identity() -> None:
    x, mask = torch.randn(1, 4, 6), torch.ones(1, 1, 6)
    layer = TransformerCouplingLayer(4, 8, n_layers=1, n_heads=2).eval()
    y, logdet = layer(x, mask, torch.randn(1, 8))
    torch.testing.assert_close(y, x)
    assert torch.all(logdet == 0)


def test_flip_reverses_channels() -> None:
    x = torch.arange(6.0).view(1, 3, 2)
    y, logdet = Flip()(x)
    assert torch.equal(y[0, :, 0], torch.tensor([4.0, 2.0, 0.0])) and torch.equal(logdet, torch.zeros(1))


def test_residual_coupling_inverse_and_logdet() -> None:
    layer = ResidualCouplingLayer(4, 8, 3, 1, 2, gin_channels=3).eval()
    _randomise(layer)
    x, g = torch.randn(2, 4, 7), torch.randn(2, 3, 1)
    mask = length_mask(torch.tensor([7, 5]), 7)
    x = x * mask
    y, logdet = layer(x, mask, g)
    assert not torch.allclose(y, x) and torch.all(logdet != 0)
    back, logdet_back = layer(y, mask, g, reverse=True)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logdet_back, -logdet)


def test_transformer_coupling_block_forward_reverse_is_identity() -> None:
    block = TransformerCouplingBlock(
        4, 8, n_layers=2, n_flows=2, gin_channels=3, n_heads=2, p_dropout=0.1
    ).eval()
    _randomise(block)
    style = torch.randn(2, 3, 1)
    mask = length_mask(torch.tensor([9, 6]), 9)
    x = torch.randn(2, 4, 9) * mask
    z = block(x, mask, style)
    assert not torch.allclose(z, x, atol=1e-2)
    torch.testing.assert_close(block(z, mask, style, reverse=True), x, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(block(x, mask, style + 1.0), z)


def test_transformer_coupling_attends_padding_like_the_official_flow() -> None:
    # official quirk kept for the released weights: padded frames take part in the attention
    block = TransformerCouplingBlock(4, 8, n_layers=1, n_flows=1, gin_channels=3).eval()
    _randomise(block)
    style, x = torch.randn(1, 3, 1), torch.randn(1, 4, 6)
    alone = block(x, torch.ones(1, 1, 6), style)
    padded = block(torch.cat([x, torch.zeros(1, 4, 3)], -1), length_mask(torch.tensor([6]), 9), style)
    assert not torch.allclose(padded[..., :6], alone, atol=1e-4)
    assert torch.all(padded[..., 6:] == 0)


def test_coupling_rejects_odd_channels() -> None:
    with pytest.raises(ValueError, match="even"):
        TransformerCouplingLayer(5, 8, 1, 2)
