from __future__ import annotations

import pytest
import torch

from hierspeech2.nn.functional import length_mask
from hierspeech2.nn.wavenet import WN


def _wn(**kwargs) -> WN:
    torch.manual_seed(0)
    return WN(8, 5, 2, 3, **kwargs).eval()


def test_wn_keys_and_shapes() -> None:
    wn = _wn(gin_channels=4)
    keys = set(wn.state_dict())
    assert "cond_layer.parametrizations.weight.original0" in keys
    assert wn.res_skip_layers[0].weight.shape == (16, 8, 1) and wn.res_skip_layers[2].weight.shape == (
        8,
        8,
        1,
    )
    assert wn.in_layers[2].dilation == (4,)
    out = wn(torch.randn(2, 8, 11), torch.ones(2, 1, 11), g=torch.randn(2, 4, 1))
    assert out.shape == (2, 8, 11)


def test_wn_padded_row_equals_shorter_single() -> None:
    wn = _wn(gin_channels=4)
    g = torch.randn(1, 4, 1)
    x = torch.randn(1, 8, 7)
    alone = wn(x, torch.ones(1, 1, 7), g=g)
    mask = length_mask(torch.tensor([7]), 10)
    padded = torch.cat([x, torch.zeros(1, 8, 3)], dim=-1)
    out = wn(padded, mask, g=g)
    torch.testing.assert_close(out[..., :7], alone, atol=1e-6, rtol=1e-5)
    assert torch.all(out[..., 7:] == 0)


def test_wn_condition_matters_and_unconditioned_works() -> None:
    wn = _wn(gin_channels=4)
    x, mask = torch.randn(1, 8, 6), torch.ones(1, 1, 6)
    assert not torch.allclose(wn(x, mask, g=torch.zeros(1, 4, 1)), wn(x, mask, g=torch.ones(1, 4, 1)))
    plain = _wn(p_dropout=0.5)
    assert not hasattr(plain, "cond_layer")
    torch.testing.assert_close(plain(x, mask), plain(x, mask))  # eval: dropout off, deterministic
    plain.train()
    assert not torch.allclose(plain(x, mask), plain(x, mask))
    with pytest.raises(ValueError, match="odd"):
        WN(8, 4, 1, 2)
