"""Where a stage's time goes, operation by operation, on one thread: what stands between it and the floor.

Usage::

    python benchmarks/breakdown.py                         # backbone and SpeechSR-48k, 12 s
    python benchmarks/breakdown.py --stages sr48k --seconds 30

Each stage runs on one torch thread with its time chunks in order (``sequential_chunks()``), so that
every operation runs on the timing thread; a ``TorchDispatchMode`` times each ATen call (views
aside: they do no work) and sorts it into a kind: dense convolutions (with their FLOPs), depthwise
convolutions (the polyphase anti-aliasing filters), ``sin`` (the snake), matrix products, and the
rest (elementwise work, copies, concatenation). Where the fused snake kernel is built
(:mod:`hierspeech2.nn.fused_snake`), the whole anti-aliased snake is one call of its own kind,
which replaces the depthwise convolutions and ``sin`` (``HIERSPEECH2_FUSED_KERNELS=0`` shows
them). Next to them: the same thread's fp32 matmul peak (2048²) and ``sin``'s cost per value on a
cache-sized tensor, and the stage's floor if its dense convolutions ran at that peak and its
``sin`` (the kernel's sines included) at that cost with nothing else to do. One thread is
the unit: on two cores the chunk workers (:mod:`hierspeech2.nn.chunk_threads`) run two such threads
side by side.

Weights: SpeechSR-48k's released ones, the backbone random (speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chunk_threads import stage_calls  # the benchmark next door builds the same two stages

if TYPE_CHECKING:
    from typing_extensions import Self

MATMUL_OPS = {"addmm", "baddbmm", "bmm", "linear", "matmul", "mm"}
CONV_OPS = {"convolution": 8, "conv1d": 6, "conv2d": 6}  # ATen convolution → index of its ``groups``
VIEW_OPS = {
    "alias", "as_strided", "detach", "expand", "narrow", "permute", "select", "slice", "split",
    "squeeze", "t", "transpose", "unbind", "unsqueeze", "view", "_unsafe_view",
}  # fmt: skip
KINDS = ("dense conv", "depthwise conv", "sin", "fused snake", "matmul", "attention", "other")


def kind_of(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The kind of one ATen call (see :data:`KINDS`); None for a view, which does no work."""
    name = func.overloadpacket.__name__
    if name in VIEW_OPS:
        return None
    if name in CONV_OPS:
        index = CONV_OPS[name]
        groups = args[index] if len(args) > index else kwargs.get("groups", 1)
        return "depthwise conv" if groups > 1 and args[1].shape[1] == 1 else "dense conv"
    if name == "sin":
        return "sin"
    if name in MATMUL_OPS:
        return "matmul"
    if "scaled_dot_product" in name:
        return "attention"
    return "other"


def conv_flops(args: tuple[Any, ...], out: torch.Tensor) -> float:
    """Multiply-adds × 2 of a convolution call: output elements × input channels per group × taps."""
    weight = args[1]
    return 2.0 * out.numel() * weight.shape[1] * weight[0, 0].numel()


class KindTimer(TorchDispatchMode):
    """Seconds, calls, FLOPs (dense convolutions) and values (``sin``; the fused kernel's sines)
    per kind of ATen call, and of the fused snake kernel's calls."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)
        self.flops: dict[str, float] = collections.defaultdict(float)
        self.values: dict[str, int] = collections.defaultdict(int)
        self._in_kernel = False

    def __enter__(self) -> Self:
        from hierspeech2.nn import fused_snake

        self._kernel = fused_snake.polyphase_snake

        def timed_kernel(x: torch.Tensor, up: torch.Tensor, *args: Any) -> torch.Tensor:
            self._in_kernel = True
            start = time.perf_counter()
            try:
                out = self._kernel(x, up, *args)
            finally:
                self._in_kernel = False
            self.seconds["fused snake"] += time.perf_counter() - start
            self.calls["fused snake"] += 1
            self.values["fused snake"] += up.shape[0] * out.numel()  # one sine per upsampled value
            return out

        fused_snake.polyphase_snake = timed_kernel
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        from hierspeech2.nn import fused_snake

        fused_snake.polyphase_snake = self._kernel
        super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = kind_of(func, args, kwargs)
        if kind is None or self._in_kernel:  # the kernel's own allocations are part of its time
            return func(*args, **kwargs)
        start = time.perf_counter()
        out = func(*args, **kwargs)
        self.seconds[kind] += time.perf_counter() - start
        self.calls[kind] += 1
        if kind.endswith("conv"):
            self.flops[kind] += conv_flops(args, out)
        if kind == "sin":
            self.values[kind] += out.numel()
        return out


def matmul_peak_gflops(size: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(reps))
    return 2 * size**3 / best / 1e9


def sin_ns_per_value(values: int = 1 << 18, reps: int = 50) -> float:
    x = torch.randn(values) * 3
    torch.sin(x)
    return min(_seconds(lambda: torch.sin(x)) for _ in range(reps)) / values * 1e9


def _seconds(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def report(stage: str, untimed: float, timer: KindTimer, peak: float, sin_cost: float) -> None:
    """Print one stage's time by kind, each kind's rate, and the stage's floor."""
    work = sum(timer.seconds.values())
    print(f"\n{stage}: {untimed:.3f} s untimed; the timed calls sum to {work:.3f} s")
    print(f"  {'kind':15} {'s':>7} {'share':>6} {'calls':>6}  rate")
    for kind in KINDS:
        if not timer.calls[kind]:
            continue
        spent, flops, values = timer.seconds[kind], timer.flops[kind], timer.values[kind]
        rate = ""
        if flops:
            rate = f"{flops / 1e9:.1f} GFLOP at {flops / spent / 1e9:.1f} GFLOP/s"
        if values:
            rate = f"{values / 1e6:.0f} M sines at {spent / values * 1e9:.2f} ns each"
        print(f"  {kind:15} {spent:7.3f} {spent / work:6.1%} {timer.calls[kind]:6d}  {rate}")
    sines = timer.values["sin"] + timer.values["fused snake"]
    floor = timer.flops["dense conv"] / peak / 1e9 + sines * sin_cost / 1e9
    print(f"  floor: dense convolutions at the matmul peak + sin at {sin_cost:.2f} ns/value = {floor:.3f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", choices=("backbone", "sr48k"), default=["backbone", "sr48k"])
    parser.add_argument("--seconds", type=float, default=12.0, help="input length")
    args = parser.parse_args(argv)

    from hierspeech2.nn.chunk_threads import sequential_chunks

    torch.set_num_threads(1)
    peak, sin_cost = matmul_peak_gflops(), sin_ns_per_value()
    print(
        f"time by kind of operation — torch {torch.__version__}, 1 thread, ATen CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {args.seconds:g} s input; fp32 matmul peak "
        f"{peak:.1f} GFLOP/s, sin {sin_cost:.2f} ns/value (2^18 values)"
    )
    with torch.inference_mode(), sequential_chunks():
        for stage, call in stage_calls(args.stages, args.seconds).items():
            call()
            untimed = _seconds(call)
            timer = KindTimer()
            with timer:
                call()
            report(stage, untimed, timer, peak, sin_cost)


if __name__ == "__main__":
    main()
