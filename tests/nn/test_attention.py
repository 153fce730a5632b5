from __future__ import annotations

import math

import pytest
import torch

from hierspeech2.nn.attention import (
    AdaLNTransformerBlock,
    ChannelLayerNorm,
    Encoder,
    FusedSelfAttention,
    MultiHeadAttention,
    _absolute_to_relative,
    _relative_to_absolute,
)
from hierspeech2.nn.functional import length_mask


def _randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * scale)


def test_channel_layer_norm_normalises_channels() -> None:
    norm = ChannelLayerNorm(6)
    _randomise(norm)
    x = torch.randn(2, 6, 5)
    expected = torch.nn.functional.layer_norm(x.transpose(1, 2), (6,), norm.gamma, norm.beta, 1e-5).transpose(
        1, 2
    )
    torch.testing.assert_close(norm(x), expected)


def test_relative_absolute_index_maps() -> None:
    length = 4
    rel = torch.randn(1, 1, length, 2 * length - 1)
    absolute = _relative_to_absolute(rel)
    back = _absolute_to_relative(absolute)
    for i in range(length):
        for k in range(length):
            assert absolute[0, 0, i, k] == rel[0, 0, i, k - i + length - 1]
            assert back[0, 0, i, k - i + length - 1] == absolute[0, 0, i, k]
    # offsets that point outside the sequence carry no weight
    assert back[0, 0, 0, : length - 1].abs().sum() == 0 and back[0, 0, -1, length:].abs().sum() == 0


def _naive_relative_attention(attn: MultiHeadAttention, x: torch.Tensor, window: int) -> torch.Tensor:
    heads, d = attn.n_heads, attn.head_channels
    q = attn.conv_q(x).view(1, heads, d, -1)[0]
    k = attn.conv_k(x).view(1, heads, d, -1)[0]
    v = attn.conv_v(x).view(1, heads, d, -1)[0]
    length = x.shape[-1]
    out = torch.zeros(heads, d, length)
    for h in range(heads):
        for i in range(length):
            scores = torch.empty(length)
            for j in range(length):
                s = q[h, :, i] @ k[h, :, j]
                if abs(j - i) <= window:
                    s = s + q[h, :, i] @ attn.emb_rel_k[0, j - i + window]
                scores[j] = s / math.sqrt(d)
            p = scores.softmax(0)
            for j in range(length):
                value = v[h, :, j]
                if abs(j - i) <= window:
                    value = value + attn.emb_rel_v[0, j - i + window]
                out[h, :, i] += p[j] * value
    return attn.conv_o(out.reshape(1, heads * d, length))


@pytest.mark.parametrize("length", [3, 9])
def test_windowed_relative_attention_matches_definition(length: int) -> None:
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 8, 2, window_size=2).eval()
    x = torch.randn(1, 8, length)
    torch.testing.assert_close(attn(x, x), _naive_relative_attention(attn, x, 2), atol=1e-5, rtol=1e-5)


def test_attention_mask_hides_padded_keys() -> None:
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 8, 2, window_size=4).eval()
    mask = length_mask(torch.tensor([5]), 7)
    attn_mask = mask.unsqueeze(2) * mask.unsqueeze(-1)
    x = torch.randn(1, 8, 7)
    y = x.clone()
    y[..., 5:] = 100.0
    torch.testing.assert_close(attn(x, x, attn_mask)[..., :5], attn(y, y, attn_mask)[..., :5])
    # without the mask the padded frames do leak in
    assert not torch.allclose(attn(x, x)[..., :5], attn(y, y)[..., :5])


def test_proximal_init_copies_query_projection() -> None:
    attn = MultiHeadAttention(8, 4, 2, proximal_init=True)
    assert torch.equal(attn.conv_k.weight, attn.conv_q.weight) and torch.equal(
        attn.conv_k.bias, attn.conv_q.bias
    )
    assert attn(torch.randn(1, 8, 3), torch.randn(1, 8, 3)).shape == (1, 4, 3)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(9, 9, 2)


def test_encoder_padding_does_not_change_valid_frames() -> None:
    torch.manual_seed(0)
    encoder = Encoder(8, 16, 2, 2, kernel_size=3, p_dropout=0.1).eval()
    _randomise(encoder)
    x = torch.randn(1, 8, 6)
    alone = encoder(x, torch.ones(1, 1, 6))
    padded = torch.cat([x, torch.randn(1, 8, 3)], dim=-1)
    out = encoder(padded, length_mask(torch.tensor([6]), 9))
    torch.testing.assert_close(out[..., :6], alone, atol=1e-5, rtol=1e-5)
    assert torch.all(out[..., 6:] == 0)


def test_fused_self_attention_matches_softmax_definition() -> None:
    torch.manual_seed(0)
    attn = FusedSelfAttention(8, 2)
    x = torch.randn(2, 5, 8)
    q, k, v = attn.qkv(x).view(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-1, -2) / 2.0).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=1e-5)


def test_adaln_block_is_identity_with_zero_modulation_and_conditions_otherwise() -> None:
    torch.manual_seed(0)
    block = AdaLNTransformerBlock(8, 2, kernel_size=3).eval()
    x, cond = torch.randn(2, 5, 8), torch.randn(2, 8)
    mask = torch.ones(2, 5, 1)
    with torch.no_grad():
        block.adaLN_modulation[-1].weight.zero_()
        block.adaLN_modulation[-1].bias.zero_()
    torch.testing.assert_close(block(x, cond, mask), x)
    _randomise(block)
    out = block(x, cond, mask)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert not torch.allclose(out, block(x, cond + 1.0, mask))
