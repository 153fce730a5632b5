"""What lower precision buys on this machine, layer by layer: float32 vs bfloat16 vs int8.

Usage::

    python benchmarks/precision.py [--threads 2] [--reps 7]

Times layers shaped like the models' heaviest ones, for 12 s of speech (600 MMS frames, the
backbone's 50 Hz and 16 kHz stacks, SpeechSR's 32-channel stack), in one run:

- float32 (the default path);
- bfloat16 under ``torch.autocast`` (what ``--dtype bfloat16`` / the benchmark's ``--dtype`` run);
- int8: :class:`hierspeech2.nn.quantization.Int8Linear` / ``Int8Conv1d`` (the CLI's ``--int8``).

and prints each time, its ratio to float32 and the relative error of the output. Whether
the CPU has native bfloat16 (AVX-512 BF16 or AMX) decides the bfloat16 column: without it
oneDNN emulates bfloat16 and it is many times slower than float32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from hierspeech2.nn.quantization import Int8Conv1d, Int8Linear

# (name, layer, input) shaped like the released models' layers at 12 s of 16 kHz speech.
LAYERS: list[tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = [
    ("MMS attention projection 1024→1024", lambda: nn.Linear(1024, 1024), (1, 600, 1024)),
    ("MMS feed-forward 1024→4096", lambda: nn.Linear(1024, 4096), (1, 600, 1024)),
    ("backbone WaveNet conv 192→384, k5", lambda: nn.Conv1d(192, 384, 5, padding=2), (1, 192, 600)),
    ("generator AMP conv 256→256, k11", lambda: nn.Conv1d(256, 256, 11, padding=5), (1, 256, 1300)),
    ("generator AMP conv 64→64, k7", lambda: nn.Conv1d(64, 64, 7, padding=3), (1, 64, 4200)),
    ("SpeechSR AMP conv 32→32, k11", lambda: nn.Conv1d(32, 32, 11, padding=5), (1, 32, 8400)),
]


def median_seconds(function: Callable[[], object], reps: int) -> float:
    function()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(name: str, layer: nn.Module, x: torch.Tensor, reps: int) -> str:
    """One table row: ``layer`` on ``x`` in float32, bfloat16 (autocast) and int8."""
    int8 = Int8Linear(layer) if isinstance(layer, nn.Linear) else Int8Conv1d(layer)

    def bf16() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return layer(x)

    fp32_s = median_seconds(lambda: layer(x), reps)
    bf16_s = median_seconds(bf16, max(1, reps // 3))
    int8_s = median_seconds(lambda: int8(x), reps)
    reference = layer(x)
    error = ((int8(x) - reference).norm() / reference.norm()).item()
    return (f"{name:38s} {fp32_s * 1e3:8.2f} {bf16_s * 1e3:9.2f} {bf16_s / fp32_s:8.1f}× "
            f"{int8_s * 1e3:8.2f} {fp32_s / int8_s:8.2f}× {error:13.4f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--reps", type=int, default=7, help="timed calls per layer and precision")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    native_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ATen CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, "
          f"native bfloat16: {'yes' if native_bf16 else 'no'}")  # fmt: skip
    print(f"{'layer':38s} {'fp32 ms':>8s} {'bf16 ms':>9s} {'bf16/fp32':>9s} {'int8 ms':>8s} "
          f"{'fp32/int8':>9s} {'int8 rel. err':>13s}")  # fmt: skip
    torch.manual_seed(0)
    with torch.inference_mode():
        for name, build, shape in LAYERS:
            print(compare(name, build().eval(), torch.randn(shape), args.reps))


if __name__ == "__main__":
    main()
