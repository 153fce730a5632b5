"""The fused C kernel of the polyphase snake activation: equal to the reference and to the
depthwise-convolution path, built once per cache, and replaced by that path where it cannot be."""

from __future__ import annotations

import copy
import logging
import shutil

import pytest
import torch

from hierspeech2.nn import fused_snake
from hierspeech2.nn.activations import Snake, SnakeBeta
from hierspeech2.nn.alias_free import Activation1d, PolyphaseActivation1d

pytestmark = pytest.mark.skipif(
    fused_snake._compiler() is None, reason="no C compiler on this machine: the depthwise path runs"
)


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """A kernel state of its own, built into an empty cache folder."""
    monkeypatch.setattr(fused_snake, "_state", {})
    monkeypatch.setenv("HIERSPEECH2_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(fused_snake.DISABLE_VARIABLE, raising=False)
    return tmp_path / "cache" / "kernels"


def _activation(channels: int, kind: str = "snakebeta", log_scale: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    act = (SnakeBeta if kind == "snakebeta" else Snake)(channels, log_scale=log_scale)
    with torch.no_grad():
        for parameter in act.parameters():
            if log_scale:
                parameter.normal_(0.0, 0.4)
            else:  # either sign, away from 0, as trained linear-scale parameters
                parameter.copy_(torch.randn(channels).sign() * (0.3 + torch.rand(channels)))
    reference = Activation1d(act)
    fast = PolyphaseActivation1d(copy.deepcopy(act))
    fast.load_state_dict(reference.state_dict(), strict=True)
    return reference, fast


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return ((a - b).abs().max() / b.abs().max()).item()


def _depthwise(monkeypatch, fast: PolyphaseActivation1d, x: torch.Tensor) -> torch.Tensor:
    with monkeypatch.context() as patch:
        patch.setenv(fused_snake.DISABLE_VARIABLE, "0")
        assert fused_snake.kernel() is None
        return fast(x)


def test_builds_here_and_says_where():
    assert fused_snake.kernel() is not None, fused_snake.kernel_status()
    assert fused_snake.kernel_status().startswith("loaded ")


# Widths of the released models (32: SpeechSR; 16 … 512: generator and source network), widths that
# are not a multiple of the 8-lane registers or that cross the kernel's 64-channel groups, and
# lengths shorter than the filters (every position an edge) up to several time blocks.
@pytest.mark.parametrize("channels", [1, 5, 16, 32, 37, 130, 512])
@pytest.mark.parametrize("length", [1, 2, 3, 6, 13, 100, 1500])
def test_equals_reference_and_depthwise_path(monkeypatch, channels, length):
    reference, fast = _activation(channels, seed=channels + length)
    x = 2 * torch.randn(2, channels, length, generator=torch.Generator().manual_seed(length))
    with torch.inference_mode():
        expected = reference(x)
        fused = fast(x)
        depthwise = _depthwise(monkeypatch, fast, x)
    assert _relative_error(fused, expected) < 2e-6
    assert _relative_error(fused, depthwise) < 2e-6
    assert not torch.equal(fused, depthwise)  # the kernel ran, not the depthwise path


@pytest.mark.parametrize(("kind", "log_scale"), [("snake", True), ("snake", False), ("snakebeta", False)])
def test_snake_variants(monkeypatch, kind, log_scale):
    reference, fast = _activation(24, kind, log_scale)
    x = torch.randn(1, 24, 333)
    with torch.inference_mode():
        assert _relative_error(fast(x), reference(x)) < 2e-6


def test_time_major_views_with_any_batch_and_time_strides():
    reference, fast = _activation(40)
    base = torch.randn(3, 500, 48)
    x = base[::2, 100:400:3, 4:44]  # channel stride 1, other strides arbitrary
    with torch.inference_mode():
        out = fast.forward_time_major(x)
        expected = reference(x.transpose(1, 2)).transpose(1, 2)
    assert out.shape == x.shape
    assert _relative_error(out, expected) < 2e-6
    transposed = x.transpose(1, 2).contiguous().transpose(1, 2)  # channel stride > 1: copied first
    with torch.inference_mode():
        assert torch.equal(fast.forward_time_major(transposed), out)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0, 1000.0])
def test_sine_over_a_wide_range_of_arguments(scale):
    # The kernel's sin² reduces its argument by multiples of π; large arguments must stay accurate.
    reference, fast = _activation(16)
    x = scale * torch.randn(1, 16, 2000)
    with torch.inference_mode():
        assert _relative_error(fast(x), reference(x)) < 2e-6


def test_splits_large_calls_over_the_chunk_workers():
    reference, fast = _activation(32)
    x = torch.randn(2, 32, 9000)  # above two workers' share of fused_snake.MIN_VALUES_PER_THREAD
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.inference_mode():
            split = fast(x)
        torch.set_num_threads(1)
        with torch.inference_mode():
            whole = fast(x)
    finally:
        torch.set_num_threads(threads)
    # Each output time step is computed by exactly one call with the same arithmetic.
    assert torch.equal(split, whole)
    assert _relative_error(split, reference(x)) < 2e-6


def test_float64_and_gradients_keep_their_paths():
    reference, fast = _activation(8)
    x = torch.randn(1, 8, 64, dtype=torch.float64)
    reference64, fast64 = copy.deepcopy(reference).double(), copy.deepcopy(fast).double()
    with torch.inference_mode():
        assert _relative_error(fast64(x), reference64(x)) < 1e-12  # depthwise path, float64 taps
    with pytest.raises(RuntimeError, match="is for inference"):
        fast(torch.randn(1, 8, 64, requires_grad=True))


def test_built_once_into_the_cache_then_loaded(fresh_kernel):
    assert fused_snake.kernel() is not None
    libraries = list(fresh_kernel.glob("polyphase_snake-*.so"))
    assert len(libraries) == 1
    built_at = libraries[0].stat().st_mtime_ns
    fused_snake._state.clear()
    assert fused_snake.kernel() is not None
    assert list(fresh_kernel.glob("polyphase_snake-*.so")) == libraries
    assert libraries[0].stat().st_mtime_ns == built_at
    assert not [p for p in fresh_kernel.iterdir() if p.is_dir()]  # no build folder left behind


def test_without_a_compiler_the_depthwise_path_runs(fresh_kernel, monkeypatch, caplog):
    monkeypatch.setenv("CC", "")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reference, fast = _activation(8)
    x = torch.randn(1, 8, 300)
    with caplog.at_level(logging.INFO, logger=fused_snake.__name__), torch.inference_mode():
        out = fast(x)
        fast(x)
    assert fused_snake.kernel() is None
    assert "no C compiler" in fused_snake.kernel_status()
    assert sum("no C compiler" in record.getMessage() for record in caplog.records) == 1
    assert _relative_error(out, reference(x)) < 2e-6
    with pytest.raises(RuntimeError, match="unavailable: no C compiler"):
        fused_snake.polyphase_snake(x, torch.ones(2, 7, 8), -3, torch.ones(2, 7, 8), -3, torch.ones(8))


def test_a_failing_compiler_is_reported(fresh_kernel, monkeypatch, tmp_path):
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'cc: fatal error: out of licences' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    assert fused_snake.kernel() is None
    assert "out of licences" in fused_snake.kernel_status()
    assert not list(fresh_kernel.glob("*.so"))


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(fused_snake.DISABLE_VARIABLE, "0")
    assert fused_snake.kernel() is None
    assert fused_snake.DISABLE_VARIABLE in fused_snake.kernel_status()


def test_refuses_taps_that_do_not_fit():
    x = torch.randn(1, 10, 8)
    gain = torch.ones(8)
    with pytest.raises(ValueError, match="taps do not fit"):
        fused_snake.polyphase_snake(x, torch.ones(2, 7, 8), -3, torch.ones(3, 7, 8), -3, gain)
    with pytest.raises(ValueError, match="taps do not fit"):
        fused_snake.polyphase_snake(x, torch.ones(2, 7, 8), -3, torch.ones(2, 40, 8), -3, gain)
    with pytest.raises(TypeError, match="float32 CPU"):
        fused_snake.polyphase_snake(x.double(), torch.ones(2, 7, 8), -3, torch.ones(2, 7, 8), -3, gain)
    assert fused_snake.takes(2, 7, 7) and not fused_snake.takes(2, 7, 33) and not fused_snake.takes(0, 7, 7)
