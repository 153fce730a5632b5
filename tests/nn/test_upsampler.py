"""The shared upsampling stack: official key layouts of its three users and its hooks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hierspeech2.checkpoint import native_to_official
from hierspeech2.nn.upsampler import POST_LEAKY_SLOPE, Upsampler


def _keys(module: torch.nn.Module, prefix: str) -> dict[str, tuple]:
    return {prefix + k: tuple(v.shape) for k, v in native_to_official(module.state_dict()).items()}


def _manifest_keys(entries: list[dict], prefix: str, exclude: tuple[str, ...] = ()) -> dict[str, tuple]:
    return {
        e["key"]: tuple(e["shape"])
        for e in entries
        if e["key"].startswith(prefix) and not e["key"].startswith(exclude)
    }


def test_source_network_layout(manifest):
    sn = Upsampler(192, 256, (2, 2), (4, 4), (3, 5, 7), cond_channels=256)
    assert _keys(sn, "sn.") == _manifest_keys(manifest("backbone"), "sn.")


def test_pitch_predictor_layout(manifest):
    pp = Upsampler(
        1024,
        256,
        (2, 2),
        (4, 4),
        (3, 5, 7),
        activation="leaky_relu",
        cond_channels=256,
        weight_norm_pre=False,
    )
    assert _keys(pp, "pp.") == _manifest_keys(manifest("ttv"), "pp.")


def test_backbone_generator_layout_besides_pitch_injection(manifest):
    dec = Upsampler(192, 512, (4, 5, 4, 2, 2), (8, 11, 8, 4, 4), cond_channels=256, tanh_output=True)
    expected = _manifest_keys(manifest("backbone"), "dec.", exclude=("dec.downs.", "dec.proj."))
    assert _keys(dec, "dec.") == expected


def test_speechsr_layout(manifest):
    sr = Upsampler(1, 32, (1.5,), upsample_mode="linear", tanh_output=True)
    assert _keys(sr, "dec.") == _manifest_keys(manifest("speechsr24k"), "dec.")


def test_lengths_and_shapes():
    torch.manual_seed(0)
    stack = Upsampler(6, 16, (2, 3), (4, 7), (3,), ((1, 2),), cond_channels=5, out_channels=2)
    out = stack(torch.randn(2, 6, 7), torch.randn(2, 5, 1))
    assert out.shape == (2, 2, 42)
    assert stack.features(torch.randn(1, 6, 7), torch.randn(1, 5, 1)).shape == (1, 4, 42)
    linear = Upsampler(1, 4, (1.5,), (), (3,), ((1,),), upsample_mode="linear")
    assert [linear(torch.randn(1, 1, n)).shape[-1] for n in (1, 2, 3, 7, 10)] == [1, 3, 4, 10, 15]


def test_injections_enter_where_documented():
    torch.manual_seed(0)
    stack = Upsampler(3, 8, (2, 2), (4, 4), (3, 5), ((1, 3), (1, 3)), cond_channels=4, tanh_output=True)
    x, style = torch.randn(1, 3, 5), torch.randn(1, 4, 1)
    pre, stage0 = torch.randn(1, 8, 5), torch.randn(1, 4, 10)
    out = stack(x, style, injection=pre, stage_injections={0: stage0})
    hidden = stack.conv_pre(x) + pre + stack.cond(style)
    hidden = stack.stage(1, stack.stage(0, hidden, stage0))
    expected = torch.tanh(stack.conv_post(stack.activation_post(hidden)))
    assert torch.allclose(out, expected, atol=1e-6)
    assert not torch.allclose(out, stack(x, style), atol=1e-3)


def test_leaky_variant_uses_official_slopes():
    torch.manual_seed(0)
    stack = Upsampler(3, 8, (2,), (4,), (3,), ((1,),), activation="leaky_relu")
    x = torch.randn(1, 3, 6)
    hidden = stack.conv_pre(x)
    up = stack.ups[0](F.leaky_relu(hidden, 0.1))
    expected = F.leaky_relu(stack.resblocks[0](up), POST_LEAKY_SLOPE)
    assert POST_LEAKY_SLOPE == 0.01
    assert torch.allclose(stack.features(x), expected, atol=1e-6)


def test_rejects_bad_configurations():
    with pytest.raises(ValueError, match="kernel per rate"):
        Upsampler(1, 8, (2, 2), (4,))
    with pytest.raises(ValueError, match="even number"):
        Upsampler(1, 8, (3,), (6,))
    with pytest.raises(ValueError, match="integer rates"):
        Upsampler(1, 8, (1.5,), (3,))
    with pytest.raises(ValueError, match="cond_channels=0"):
        Upsampler(1, 8, (2,), (4,), (3,), ((1,),))(torch.randn(1, 1, 4), torch.randn(1, 2, 1))
