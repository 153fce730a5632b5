from __future__ import annotations

import torch

from hierspeech2.nn.functional import length_mask
from hierspeech2.nn.style import StyleEncoder


def _encoder() -> StyleEncoder:
    torch.manual_seed(0)
    return StyleEncoder(in_dim=6, hidden_dim=8, out_dim=4, kernel_size=5, n_heads=2).eval()


def test_style_shape_and_keys() -> None:
    encoder = _encoder()
    keys = set(encoder.state_dict())
    assert {
        "spectral.0.weight",
        "spectral.3.weight",
        "temporal.1.conv1.weight",
        "slf_attn.conv_o.bias",
        "fc.bias",
    } <= keys
    style = encoder(torch.randn(3, 6, 10), torch.ones(3, 1, 10))
    assert style.shape == (3, 4)


def test_style_of_padded_prompt_equals_prompt_alone() -> None:
    encoder = _encoder()
    mel = torch.randn(1, 6, 7)
    alone = encoder(mel, torch.ones(1, 1, 7))
    padded_mel = torch.cat([mel, torch.randn(1, 6, 5)], -1)
    batch = torch.cat([padded_mel, torch.randn(1, 6, 12)])
    out = encoder(batch, length_mask(torch.tensor([7, 12]), 12))
    torch.testing.assert_close(out[:1], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[0], out[1])


def test_style_is_the_masked_time_mean_of_the_frame_features() -> None:
    encoder = _encoder()
    mel = torch.randn(1, 6, 9)
    mask = length_mask(torch.tensor([6]), 9)
    frames = {}
    encoder.fc.register_forward_hook(lambda module, args, out: frames.update(out=out))
    style = encoder(mel, mask)
    torch.testing.assert_close(style, frames["out"][..., :6].mean(-1))
