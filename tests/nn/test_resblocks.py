"""The dilated residual block in both official variants (AMP/SnakeBeta and HiFi-GAN leaky ReLU)."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from hierspeech2.checkpoint import native_to_official
from hierspeech2.nn.resblocks import LRELU_SLOPE, ResBlock


def _official_block(manifest: list[dict], prefix: str) -> dict[str, tuple]:
    return {e["key"][len(prefix) :]: tuple(e["shape"]) for e in manifest if e["key"].startswith(prefix)}


def _official_keys(block: ResBlock) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in native_to_official(block.state_dict()).items()}


def test_amp_block_keys_match_official(manifest):
    # SpeechSR's AMPBlock0 and the backbone's AMPBlock1 share one layout.
    assert _official_keys(ResBlock(32, 7, (1, 3, 5), "snakebeta")) == _official_block(
        manifest("speechsr48k"), "dec.resblocks.1."
    )
    assert _official_keys(ResBlock(64, 5, (1, 3, 5), "snakebeta")) == _official_block(
        manifest("backbone"), "sn.resblocks.4."
    )


def test_leaky_block_keys_match_official(manifest):
    keys = _official_keys(ResBlock(128, 7, (1, 3, 5), "leaky_relu"))
    assert keys == _official_block(manifest("ttv"), "pp.resblocks.2.")
    assert not any(re.search(r"activations|alpha", k) for k in keys)


def _zero_convs(block: ResBlock) -> None:
    with torch.no_grad():
        for name, param in block.named_parameters():
            # the weight-norm gain (original0) and the bias; zeroing the direction would give 0/0
            if "convs" in name and not name.endswith("original1"):
                param.zero_()


@pytest.mark.parametrize("activation", ["snakebeta", "leaky_relu"])
def test_zero_convs_make_identity(activation):
    block = ResBlock(3, 3, (1, 2), activation)
    _zero_convs(block)
    x = torch.randn(2, 3, 17)
    assert torch.equal(block(x), x)


def test_leaky_block_matches_hand_computation():
    torch.manual_seed(0)
    block = ResBlock(2, 3, (1, 3), "leaky_relu")
    x = torch.randn(1, 2, 11)
    expected = x
    for conv1, conv2, dilation in zip(block.convs1, block.convs2, (1, 3)):
        hidden = F.conv1d(
            F.leaky_relu(expected, LRELU_SLOPE), conv1.weight, conv1.bias, padding=dilation, dilation=dilation
        )
        hidden = F.conv1d(F.leaky_relu(hidden, LRELU_SLOPE), conv2.weight, conv2.bias, padding=1)
        expected = expected + hidden
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_mask_zeroes_padding_and_ones_change_nothing():
    torch.manual_seed(0)
    block = ResBlock(4, 3, (1, 3, 5), "leaky_relu")
    x = torch.randn(2, 4, 20)
    mask = torch.ones(2, 1, 20)
    assert torch.equal(block(x, mask), block(x))
    mask[1, :, 12:] = 0
    out = block(x, mask)
    assert out[1, :, 12:].abs().max().item() == 0.0
    assert out[1, :, :12].abs().max().item() > 0.0


def test_rejects_unknown_activation():
    with pytest.raises(ValueError, match="snakebeta"):
        ResBlock(4, activation="relu")
