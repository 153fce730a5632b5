"""benchmarks/breakdown.py: its kinds of operation and FLOPs agree with torch's own counter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]


def _breakdown():
    spec = importlib.util.spec_from_file_location("breakdown", ROOT / "benchmarks" / "breakdown.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kinds_and_conv_flops_match_torch_flop_counter():
    breakdown = _breakdown()
    x = torch.randn(1, 8, 1, 50)
    dense, depthwise = torch.randn(6, 8, 1, 3), torch.randn(8, 1, 1, 7)
    a, b = torch.randn(5, 4), torch.randn(4, 3)

    def work():
        F.conv2d(x, dense)
        F.conv2d(x, depthwise, groups=8)
        F.conv1d(x[:, :, 0], dense[:, :, 0], padding=1)
        torch.sin(x)
        (a @ b).permute(1, 0)
        return x + 1

    timer, counter = breakdown.KindTimer(), FlopCounterMode(display=False)
    with torch.inference_mode():
        with timer:
            work()
        with counter:
            work()
    assert dict(timer.calls) == {"dense conv": 2, "depthwise conv": 1, "sin": 1, "matmul": 1, "other": 1}
    conv_flops = timer.flops["dense conv"] + timer.flops["depthwise conv"]
    assert conv_flops == counter.get_total_flops() - 2 * 5 * 4 * 3
    assert timer.flops["depthwise conv"] == 2 * 8 * 44 * 7
    assert timer.values["sin"] == x.numel()


def test_prints_every_kind_of_a_short_speechsr_run(capsys, monkeypatch):
    from hierspeech2.nn import fused_snake

    monkeypatch.setenv(fused_snake.DISABLE_VARIABLE, "0")
    _breakdown().main(["--stages", "sr48k", "--seconds", "0.5"])
    out = capsys.readouterr().out
    for kind in ("dense conv", "depthwise conv", "sin", "other", "floor"):
        assert kind in out
    assert "sr48k:" in out and "fused snake" not in out


def test_the_fused_kernel_is_one_kind_that_replaces_filters_and_sine(capsys, monkeypatch):
    from hierspeech2.nn import fused_snake

    if fused_snake.kernel() is None:
        pytest.skip(f"the fused snake kernel is not built here: {fused_snake.kernel_status()}")
    breakdown = _breakdown()
    breakdown.main(["--stages", "sr48k", "--seconds", "0.5"])
    out = capsys.readouterr().out
    rows = {
        kind: line for line in out.splitlines() for kind in breakdown.KINDS if line.startswith(f"  {kind} ")
    }
    assert {"dense conv", "fused snake", "other"} <= rows.keys()
    assert "depthwise conv" not in rows and "sin" not in rows  # both are inside the kernel now
    assert "M sines at" in rows["fused snake"]
    assert fused_snake.polyphase_snake.__name__ == "polyphase_snake"  # the timer put it back
