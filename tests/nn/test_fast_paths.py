"""Fast inference paths against the official arithmetic they replace, and weight-norm folding.

In float64 the fast paths must agree with the reference to 1e-12 (they are the same function
with reordered operations); on the released SpeechSR weights in float32, to the parity bound 1e-5.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hierspeech2.errors import CheckpointError
from hierspeech2.models import SpeechSR
from hierspeech2.nn import alias_free, upsampler
from hierspeech2.nn.activations import Snake, SnakeBeta
from hierspeech2.nn.alias_free import Activation1d
from hierspeech2.nn.generator import Generator, SourceNetwork
from hierspeech2.nn.inference import (
    fast_paths_enabled,
    fuse_weight_norm,
    is_weight_norm_fused,
    reference_arithmetic,
)
from hierspeech2.nn.resblocks import ResBlock, conv1d_time_major
from hierspeech2.nn.upsampler import Upsampler

EXACT = 1e-12  # float64: reordered arithmetic only
PARITY_ATOL = 1e-5  # float32 on the released weights, as the parity tests


def _randomise(module: nn.Module, scale: float = 0.5, seed: int = 0) -> nn.Module:
    """Random parameters everywhere (the default init makes snakes near-identities and flows trivial)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * scale)
    return module.eval()


def _both(module: nn.Module, *inputs, **kwargs):
    """(fast, reference) outputs of ``module`` under inference mode."""
    with torch.inference_mode():
        fast = module(*inputs, **kwargs)
        with reference_arithmetic():
            reference = module(*inputs, **kwargs)
    return fast, reference


def _max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few dozen samples, so that every fast path crosses many chunk seams."""
    monkeypatch.setattr(alias_free, "CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(upsampler, "STAGE_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(upsampler, "_MIN_CHUNK_HALOS", 1)


@pytest.mark.parametrize("activation", ["snakebeta", "snake", "tanh"])
@pytest.mark.parametrize("length", [1, 2, 5, 13, 64, 301])
def test_polyphase_activation_equals_reference(small_chunks, activation, length):
    act = {"snakebeta": SnakeBeta(5, log_scale=True), "snake": Snake(5), "tanh": nn.Tanh()}[activation]
    module = _randomise(Activation1d(act).double())
    x = torch.randn(2, 5, length, dtype=torch.float64) * 3
    fast, reference = _both(module, x)
    assert _max_error(fast, reference) < EXACT
    assert _max_error(module.reference_forward(x), reference) == 0.0


def test_time_major_activation_equals_reference(small_chunks):
    module = _randomise(Activation1d(SnakeBeta(6, log_scale=True)).double())
    x = torch.randn(3, 6, 200, dtype=torch.float64)
    with torch.inference_mode():
        fast = module.forward_time_major(x.transpose(1, 2).contiguous()).transpose(1, 2)
        reference = module.reference_forward(x)
    assert _max_error(fast, reference) < EXACT


def test_snake_with_a_zero_frequency_still_matches():
    # α = 0 cannot be folded into the taps (the linear term divides by it): the unfolded path runs.
    module = _randomise(Activation1d(Snake(4)).double())
    with torch.no_grad():
        module.act.alpha[1] = 0.0
    fast, reference = _both(module, torch.randn(1, 4, 50, dtype=torch.float64))
    assert torch.isfinite(fast).all()
    assert _max_error(fast, reference) < EXACT


def test_changed_parameters_are_picked_up():
    module = _randomise(Activation1d(SnakeBeta(4, log_scale=True)))
    x = torch.randn(1, 4, 100)
    before, _ = _both(module, x)
    with torch.no_grad():
        module.act.beta.add_(1.0)
    after, reference = _both(module, x)
    assert _max_error(after, before) > 1e-3
    assert _max_error(after, reference) < 1e-5


def test_fast_path_needs_no_gradient_and_can_be_switched_off():
    module = _randomise(Activation1d(SnakeBeta(3, log_scale=True)))
    x = torch.randn(1, 3, 40, requires_grad=True)
    # Training: the official arithmetic, bit for bit, with gradients.
    out = module(x)
    assert torch.equal(out, module.reference_forward(x))
    out.sum().backward()
    assert x.grad is not None and module.act.alpha.grad is not None
    assert fast_paths_enabled()
    with reference_arithmetic():
        assert not fast_paths_enabled()
    assert fast_paths_enabled()


@pytest.mark.parametrize("activation", ["snakebeta", "leaky_relu"])
def test_time_major_resblock_equals_reference(activation):
    block = _randomise(ResBlock(6, 5, (1, 3, 5), activation).double(), scale=0.3)
    x = torch.randn(2, 6, 120, dtype=torch.float64)
    with torch.inference_mode(), reference_arithmetic():
        reference = block(x)
    with torch.inference_mode():
        fast = block.forward_time_major(x.transpose(1, 2).contiguous()).transpose(1, 2)
    assert _max_error(fast, reference) < EXACT


def test_resblock_halo_bounds_its_receptive_field():
    block = _randomise(ResBlock(3, 7, (1, 3), "snakebeta").double(), scale=0.3)
    x = torch.randn(1, 3, 400, dtype=torch.float64)
    bumped = x.clone()
    bumped[..., 200] += 1.0
    with torch.inference_mode(), reference_arithmetic():
        changed = (block(bumped) - block(x)).abs().amax(dim=(0, 1)).nonzero().flatten()
    assert changed.min() >= 200 - block.halo and changed.max() <= 200 + block.halo
    assert changed.max() - changed.min() > block.halo  # the bound is not vacuous


def test_conv1d_time_major_equals_conv1d():
    conv = _randomise(nn.Conv1d(5, 7, 5, stride=2, padding=3, dilation=2).double())
    x = torch.randn(2, 5, 41, dtype=torch.float64)
    out = conv1d_time_major(conv, x.transpose(1, 2).contiguous()).transpose(1, 2)
    assert _max_error(out, conv(x)) < EXACT


@pytest.mark.parametrize(
    "kwargs",
    [
        {"upsample_mode": "linear", "upsample_rates": (3,), "tanh_output": True},  # SpeechSR
        {"upsample_rates": (2, 2), "upsample_kernel_sizes": (4, 4), "cond_channels": 3},  # source network
        {
            "upsample_rates": (2, 2), "upsample_kernel_sizes": (4, 4), "cond_channels": 3,
            "activation": "leaky_relu", "weight_norm_pre": False, "post_bias": True,
        },  # TTV pitch predictor
    ],
)  # fmt: skip
def test_chunked_upsampler_equals_reference(small_chunks, kwargs):
    model = Upsampler(4, 8, resblock_kernel_sizes=(3, 5), resblock_dilations=((1, 3), (1, 2)), **kwargs)
    model = _randomise(model.double(), scale=0.3)
    style = torch.randn(2, 3, 1, dtype=torch.float64) if kwargs.get("cond_channels") else None
    x = torch.randn(2, 4, 90, dtype=torch.float64)
    fast, reference = _both(model, x, style)
    assert _max_error(fast, reference) < EXACT
    fast, reference = _both(model.features, x, style)
    assert _max_error(fast, reference) < EXACT
    with torch.inference_mode():
        stage_fast = model.stage(0, model.conv_pre(x))
        with reference_arithmetic():
            stage_reference = model.stage(0, model.conv_pre(x))
    assert _max_error(stage_fast, stage_reference) < EXACT


def test_chunked_generator_and_source_network_equal_reference(small_chunks):
    source = _randomise(SourceNetwork(6, 16, 5).double(), scale=0.2)
    generator = Generator(6, (3,), ((1, 3),), (4, 2), 16, (8, 4), 5, source_channels=4)
    generator = _randomise(generator.double(), scale=0.2)
    z, style = torch.randn(1, 6, 30, dtype=torch.float64), torch.randn(1, 5, 1, dtype=torch.float64)
    (hidden, log_f0), (hidden_ref, log_f0_ref) = _both(source, z, style)
    assert _max_error(hidden, hidden_ref) < EXACT and _max_error(log_f0, log_f0_ref) < EXACT
    fast, reference = _both(generator, z, hidden_ref, style)
    assert fast.shape == (1, 1, 240)
    assert _max_error(fast, reference) < EXACT


def test_released_speechsr_fast_path_within_parity(shared_dir, parity_cases):
    model = SpeechSR.from_official(shared_dir / "checkpoints" / "official" / "speechsr48k_G_100000.pth")
    fast, reference = _both(model, parity_cases["a.speechsr.audio"][..., :4000])
    assert _max_error(fast, reference) <= PARITY_ATOL


TINY_SR = {"channels": 4, "resblock_kernel_sizes": (3,), "resblock_dilations": ((1, 3),)}


def test_fused_weight_norm_gives_identical_outputs():
    model = _randomise(SpeechSR(upsample_ratio=1.5, **TINY_SR), scale=0.3)
    wav = torch.randn(1, 1, 300)
    with torch.inference_mode():
        before = model(wav)
    assert model.fuse_weight_norm() is model
    assert is_weight_norm_fused(model)
    assert not any("parametrizations" in name for name, _ in model.named_parameters())
    assert all(not hasattr(m, "parametrizations") for m in model.modules())
    with torch.inference_mode():
        assert torch.equal(model(wav), before)
    fuse_weight_norm(model)  # a second call is harmless
    with torch.inference_mode():
        assert torch.equal(model(wav), before)


def test_fused_model_refuses_to_export(tmp_path):
    model = SpeechSR(upsample_ratio=1.5, **TINY_SR).fuse_weight_norm()
    for export in (model.state_dict, model.official_state_dict):
        with pytest.raises(CheckpointError, match="fuse_weight_norm.*copy.deepcopy"):
            export()
    with pytest.raises(CheckpointError, match="folded for inference"):
        model.save_pretrained(tmp_path / "fused")


def test_fusing_a_copy_leaves_the_original_exportable():
    # torch's remove_parametrizations would delete `weight` from the class the copies share.
    original = _randomise(SpeechSR(upsample_ratio=1.5, **TINY_SR), scale=0.3)
    fused = fuse_weight_norm(copy.deepcopy(original))
    wav = torch.randn(1, 1, 200)
    with torch.inference_mode():
        assert torch.equal(fused(wav), original(wav))
    exported = original.official_state_dict()
    assert any(key.endswith("weight_g") for key in exported)
    assert not is_weight_norm_fused(original)


def test_inference_context_computes_each_weight_once_and_changes_nothing(monkeypatch):
    from torch.nn.utils.parametrizations import _WeightNorm

    from hierspeech2.nn.inference import inference

    model = _randomise(SpeechSR(upsample_ratio=1.5, **TINY_SR), scale=0.3)
    wav = torch.randn(1, 1, 300)
    with torch.inference_mode():
        expected = model(wav)
    calls = []
    original = _WeightNorm.forward
    monkeypatch.setattr(_WeightNorm, "forward", lambda self, g, v: calls.append(1) or original(self, g, v))

    @inference
    def twice(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert torch.is_inference_mode_enabled()
        return model(x), model(x)

    first, second = twice(wav)
    weight_normed = sum(hasattr(m, "parametrizations") for m in model.modules())
    assert weight_normed > 0 and len(calls) == weight_normed  # computed once, reused by the second call
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert any(key.endswith("weight_g") for key in model.official_state_dict())  # still exportable


@pytest.mark.parametrize(
    ("length", "target", "expected"),
    [(8402, 8192, 8402), (12_000, 8192, 12_000), (12_500, 8192, 6250), (100_000, 8192, 8334), (5, 8192, 5)],
)
def test_balanced_chunk_leaves_no_small_remainder(length, target, expected):
    from hierspeech2.nn.inference import balanced_chunk

    chunk = balanced_chunk(length, target)
    assert chunk == expected
    remainder = length % chunk
    assert remainder == 0 or remainder >= chunk * 0.9 or length // chunk == 0
