"""Worker threads for the time-chunked stages against the same chunks in order, paired in one process.

Usage::

    python benchmarks/chunk_threads.py                     # SpeechSR-48k and the backbone, 12 s, 4 pairs
    python benchmarks/chunk_threads.py --seconds 30 --pairs 6 --stages sr48k

Each pair times one call with the chunks on :mod:`hierspeech2.nn.chunk_threads`' workers (one torch
thread each) and one inside ``sequential_chunks()`` (the same chunks in order on torch's threads),
alternating, so that both see the same machine load; the speed-up is per pair. It also prints the
largest difference between the two outputs (float rounding: the single- and multi-threaded
kernels sum in different orders). Weights: SpeechSR-48k's released ones, the backbone random
(speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def _timed(function: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = function()
    return time.perf_counter() - start, out


def stage_calls(stages: list[str], seconds: float) -> dict[str, Callable[[], torch.Tensor]]:
    """One call per stage on ``seconds`` of input at the default fast paths: ``sr48k`` (the packaged
    SpeechSR-48k) and ``backbone`` (voice conversion, random weights). Also used by breakdown.py."""
    from hierspeech2.models import HierSpeech2, SpeechSR
    from hierspeech2.nn.inference import fuse_weight_norm, use_fast_activations

    torch.manual_seed(0)
    samples, frames = int(seconds * 16000), int(seconds * 50)
    calls: dict[str, Callable[[], torch.Tensor]] = {}
    if "sr48k" in stages:
        speechsr = use_fast_activations(fuse_weight_norm(SpeechSR.from_packaged(48000)).requires_grad_(False))
        wav = torch.randn(1, 1, samples) * 0.1
        calls["sr48k"] = lambda: speechsr(wav)
    if "backbone" in stages:
        backbone = use_fast_activations(fuse_weight_norm(HierSpeech2().eval()).requires_grad_(False))
        semantic, log_f0 = torch.randn(1, 1024, frames), torch.randn(1, 1, 4 * frames)
        mel = torch.randn(2, 80, 150)

        def convert() -> torch.Tensor:
            torch.manual_seed(0)
            return backbone.voice_conversion(
                semantic, torch.tensor([frames]), mel, torch.tensor([150, 150]), log_f0
            )

        calls["backbone"] = convert
    return calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", choices=("sr48k", "backbone"), default=["sr48k", "backbone"])
    parser.add_argument("--seconds", type=float, default=12.0, help="input length")
    parser.add_argument("--pairs", type=int, default=4, help="timed pairs after one warm-up pair")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from hierspeech2.nn.chunk_threads import sequential_chunks

    calls = stage_calls(args.stages, args.seconds)

    print(
        f"chunk workers against in-order chunks — torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, ATen CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {args.seconds:g} s input"
    )
    print(f"{'stage':9} {'in order s':>11} {'workers s':>10} {'speed-up (per pair)':>28} {'max |diff|':>11}")
    with torch.inference_mode():
        for stage, call in calls.items():
            with sequential_chunks():
                _, in_order = _timed(call)
            _, threaded = _timed(call)
            difference = (in_order - threaded).abs().max().item()
            sequential_times, worker_times = [], []
            for _ in range(args.pairs):
                with sequential_chunks():
                    sequential_times.append(_timed(call)[0])
                worker_times.append(_timed(call)[0])
            ratios = [a / b for a, b in zip(sequential_times, worker_times)]
            spread = f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}–{max(ratios):.2f}]"
            in_order_s, workers_s = statistics.median(sequential_times), statistics.median(worker_times)
            print(f"{stage:9} {in_order_s:11.3f} {workers_s:10.3f} {spread:>28} {difference:11.2e}")


if __name__ == "__main__":
    main()
