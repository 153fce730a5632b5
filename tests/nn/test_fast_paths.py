"""Fast inference paths against the official arithmetic they replace, and weight-norm folding.

In float64 the fast paths must agree with the reference to 1e-12 (they are the same function
with reordered operations); on the released SpeechSR weights in float32, to the parity bound 1e-5.
The polyphase activation is its own class, swapped in by ``use_fast_activations``; the reference
side of every comparison runs the reference classes under ``reference_arithmetic``.
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
from hierspeech2.nn.alias_free import Activation1d, PolyphaseActivation1d
from hierspeech2.nn.generator import Generator, SourceNetwork
from hierspeech2.nn.inference import (
    POLYPHASE_DEVICE_TYPES,
    fast_paths_enabled,
    fuse_weight_norm,
    is_weight_norm_fused,
    reference_arithmetic,
    use_fast_activations,
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


def _both(call, *inputs, **kwargs):
    """(fast, reference) outputs of ``call`` (a module or its method) under inference mode: polyphase
    activations and chunked stacks, then the reference activation class under ``reference_arithmetic``."""
    module = getattr(call, "__self__", call)
    with torch.inference_mode():
        use_fast_activations(module)
        fast = call(*inputs, **kwargs)
        use_fast_activations(module, enabled=False)
        with reference_arithmetic():
            reference = call(*inputs, **kwargs)
    return fast, reference


def _activation_classes(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules() if isinstance(m, Activation1d)}


def _polyphase_copy(reference: Activation1d) -> PolyphaseActivation1d:
    """A separately built polyphase activation loaded (strictly) with ``reference``'s state dict."""
    fast = PolyphaseActivation1d(copy.deepcopy(reference.act))
    fast.load_state_dict(reference.state_dict(), strict=True)
    return fast.to(reference.upsample.filter.dtype)


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
    fast_module = _polyphase_copy(module)
    x = torch.randn(2, 5, length, dtype=torch.float64) * 3
    with torch.inference_mode():
        fast, reference = fast_module(x), module(x)
        assert _max_error(fast_module.reference_forward(x), reference) == 0.0
    assert _max_error(fast, reference) < EXACT


# Every alias-free activation the released models build: SnakeBeta (log scale) at the widths of the
# generator (256 … 16), SpeechSR (32), the source network (128, 64) and the posterior encoder (192);
# plain Snake, linear-scale parameters and ratio 3 besides.
MODEL_ACTIVATIONS = [
    ("snakebeta", True, 256, 2),
    ("snakebeta", True, 192, 2),
    ("snakebeta", True, 32, 2),
    ("snakebeta", True, 16, 2),
    ("snakebeta", False, 8, 2),
    ("snake", True, 8, 2),
    ("snake", False, 8, 2),
    ("snakebeta", True, 8, 3),
]


@pytest.mark.parametrize(("kind", "log_scale", "channels", "ratio"), MODEL_ACTIVATIONS)
def test_polyphase_class_equals_reference_class(kind, log_scale, channels, ratio):
    act = (SnakeBeta if kind == "snakebeta" else Snake)(channels, log_scale=log_scale)
    reference = _randomise(Activation1d(act, ratio, ratio).double(), seed=channels)
    if not log_scale:  # α, β of either sign and away from 0, as trained linear-scale ones
        with torch.no_grad():
            for parameter in reference.act.parameters():
                parameter.copy_(parameter.sign() * (parameter.abs() + 0.2))
    fast = PolyphaseActivation1d(copy.deepcopy(act), ratio, ratio).double()
    fast.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, channels, 157, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    with torch.inference_mode():
        expected = reference(x)
        assert _max_error(fast(x), expected) < EXACT
        assert not torch.equal(fast(x), expected)  # the polyphase path did run, not the reference
        time_major = x.transpose(1, 2).contiguous()
        assert _max_error(fast.forward_time_major(time_major).transpose(1, 2), expected) < EXACT
        assert _max_error(reference.forward_time_major(time_major).transpose(1, 2), expected) == 0.0
        # float32 (the models' dtype): within the parity bound
        fast32, reference32 = fast.float(), reference.float()
        assert _max_error(fast32(x.float()), reference32(x.float())) < PARITY_ATOL


def test_polyphase_state_dict_is_the_reference_one_and_loads_both_ways():
    reference = _randomise(Activation1d(SnakeBeta(6, log_scale=True)))
    fast = PolyphaseActivation1d(SnakeBeta(6, log_scale=True))
    assert list(fast.state_dict()) == list(reference.state_dict())
    assert [name for name, _ in fast.named_parameters()] == [name for name, _ in reference.named_parameters()]
    assert [name for name, _ in fast.named_buffers()] == [name for name, _ in reference.named_buffers()]
    assert fast.load_state_dict(reference.state_dict(), strict=True).missing_keys == []
    back = Activation1d(SnakeBeta(6, log_scale=True))
    back.load_state_dict(fast.state_dict(), strict=True)
    x = torch.randn(1, 6, 80)
    with torch.inference_mode():
        assert torch.equal(back(x), reference(x))
        assert _max_error(fast(x), reference(x)) < PARITY_ATOL


def test_polyphase_needs_equal_ratios():
    with pytest.raises(ValueError, match="equal up and down ratios.*up_ratio=2, down_ratio=3.*Activation1d"):
        PolyphaseActivation1d(Snake(2), up_ratio=2, down_ratio=3)
    unequal = Activation1d(Snake(2), up_ratio=2, down_ratio=3)
    assert not unequal.has_polyphase_form
    assert type(use_fast_activations(unequal)) is Activation1d  # left as the reference


def test_polyphase_refuses_to_train_and_the_reference_trains():
    reference = _randomise(Activation1d(SnakeBeta(3, log_scale=True)))
    fast = _polyphase_copy(reference)
    x = torch.randn(1, 3, 40, requires_grad=True)
    for needs_grad in (x, x.detach()):  # through the input, or through the snake's parameters
        with pytest.raises(RuntimeError, match=r"for inference.*use_fast_activations\(model, enabled=Fal"):
            fast(needs_grad)
        with pytest.raises(RuntimeError, match="for inference"):
            fast.forward_time_major(needs_grad.transpose(1, 2))
    # The reference class trains; with no gradient needed, both agree.
    reference(x).square().sum().backward()
    assert x.grad.abs().sum() > 0 and reference.act.alpha.grad.abs().sum() > 0
    with torch.no_grad():
        assert _max_error(fast(x), reference(x)) < PARITY_ATOL
    fast.requires_grad_(False)  # frozen parameters and an input needing no gradient: nothing to refuse
    assert _max_error(fast(x.detach()), reference(x).detach()) < PARITY_ATOL


def test_reference_class_ignores_gradient_mode():
    module = _randomise(Activation1d(SnakeBeta(4, log_scale=True)))
    x = torch.randn(2, 4, 64)
    with torch.inference_mode():
        inference = module(x)
    assert torch.equal(inference, module.reference_forward(x))  # bit for bit: no fast path inside
    assert torch.equal(module(x.requires_grad_()), inference)


def test_use_fast_activations_swaps_in_place_and_back():
    model = _randomise(SpeechSR(upsample_ratio=1.5, **TINY_SR), scale=0.3)
    before = {name: module for name, module in model.named_modules()}
    tensors = {name: t.data_ptr() for name, t in model.state_dict(keep_vars=True).items()}
    wav = torch.randn(1, 1, 300)
    with torch.inference_mode():
        expected = model(wav)
    assert _activation_classes(model) == {Activation1d}
    assert use_fast_activations(model) is model
    assert _activation_classes(model) == {PolyphaseActivation1d}
    # The same module objects, parameters, buffers and keys: only the arithmetic class changed.
    assert all(module is before[name] for name, module in model.named_modules())
    assert {name: t.data_ptr() for name, t in model.state_dict(keep_vars=True).items()} == tensors
    with torch.inference_mode():
        assert _max_error(model(wav), expected) < PARITY_ATOL
    with torch.no_grad():
        model.generator.activation_post.act.beta.add_(0.5)  # the swapped module sees parameter changes
    with torch.inference_mode():
        changed = model(wav)
    assert use_fast_activations(model, enabled=False) is model
    assert _activation_classes(model) == {Activation1d}
    with torch.inference_mode():
        assert _max_error(model(wav), changed) < PARITY_ATOL
        assert _max_error(changed, expected) > 1e-4
    model(wav).sum().backward()  # trainable again


def test_use_fast_activations_keeps_the_reference_off_the_measured_devices():
    # CUDA: the reference, until the polyphase path is measured faster there
    assert POLYPHASE_DEVICE_TYPES == {"cpu"}
    model = SpeechSR(upsample_ratio=1.5, **TINY_SR).to("meta")
    assert _activation_classes(use_fast_activations(model)) == {Activation1d}
    use_fast_activations(model.to_empty(device="cpu"))
    assert _activation_classes(model) == {PolyphaseActivation1d}
    # moved to a device without a measurement: asking again restores the reference
    assert _activation_classes(use_fast_activations(model.to("meta"))) == {Activation1d}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_use_fast_activations_keeps_the_reference_on_cuda():
    model = use_fast_activations(SpeechSR(upsample_ratio=1.5, **TINY_SR).to("cuda"))
    assert _activation_classes(model) == {Activation1d}


def test_pipelines_switch_their_models_to_the_fast_activations():
    from hierspeech2.pipelines import SuperResolution

    model = SpeechSR(upsample_ratio=1.5, **TINY_SR)
    SuperResolution(model)
    assert _activation_classes(model) == {PolyphaseActivation1d}


def test_time_major_activation_equals_reference(small_chunks):
    module = _randomise(Activation1d(SnakeBeta(6, log_scale=True)).double())
    x = torch.randn(3, 6, 200, dtype=torch.float64)
    with torch.inference_mode():
        fast = _polyphase_copy(module).forward_time_major(x.transpose(1, 2).contiguous()).transpose(1, 2)
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
        # the polyphase class computes the reference here, gradients included
        fast = _polyphase_copy(module)
        assert torch.equal(fast(x), module.reference_forward(x))
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
        stage_fast = use_fast_activations(model).stage(0, model.conv_pre(x))
        with reference_arithmetic():
            stage_reference = use_fast_activations(model, enabled=False).stage(0, model.conv_pre(x))
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
