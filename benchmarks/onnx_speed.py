"""SpeechSR on torch vs onnxruntime, side by side: time, real-time factor and the largest difference.

Usage::

    python benchmarks/onnx_speed.py [--lengths 3 12 60] [--reps 5] [--threads 2]

Per rate (24k, 48k) and input length: the pipeline ``SuperResolution`` once on torch (its default
fast path) and once on the exported model (``hierspeech2.onnx.onnx_speechsr``), alternating call by
call so that both see the same machine load; medians, the median of the paired ratios, and
max |onnxruntime − torch| of the outputs. The export (once per weights, cached) is not timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"


def speech(seconds: float) -> torch.Tensor:
    from hierspeech2.audio import load_audio

    clips = torch.cat([load_audio(path) for path in sorted((SHARED / "audio").glob("*.wav"))])
    n = int(seconds * 16_000)
    return clips.repeat(n // clips.numel() + 1)[:n].contiguous()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", nargs="+", type=float, default=[3.0, 12.0, 60.0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from hierspeech2.models import SpeechSR
    from hierspeech2.onnx import onnx_speechsr
    from hierspeech2.pipelines import SuperResolution

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"ATen CPU capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    print(f"{'rate':>6} {'input s':>8} {'torch s':>8} {'ort s':>8} {'torch RTF':>9} {'ort RTF':>8} "
          f"{'ort speed-up':>12} {'max |diff|':>11}")  # fmt: skip
    for rate in (24_000, 48_000):
        model = SpeechSR.from_packaged(rate)
        engines = {"torch": SuperResolution(model), "ort": SuperResolution(onnx_speechsr(model))}
        for seconds in args.lengths:
            wav = speech(seconds)
            outputs = {name: engine(wav, 16_000)[0] for name, engine in engines.items()}  # warm-up
            times: dict[str, list[float]] = {"torch": [], "ort": []}
            for _ in range(args.reps):
                for name, engine in engines.items():
                    began = time.perf_counter()
                    engine(wav, 16_000)
                    times[name].append(time.perf_counter() - began)
            ratios = [t / o for t, o in zip(times["torch"], times["ort"])]
            torch_s, ort_s = statistics.median(times["torch"]), statistics.median(times["ort"])
            diff = (outputs["torch"] - outputs["ort"]).abs().max().item()
            speed_up = statistics.median(ratios)
            print(f"{rate:>6} {seconds:>8g} {torch_s:>8.3f} {ort_s:>8.3f} {torch_s / seconds:>9.3f} "
                  f"{ort_s / seconds:>8.3f} {speed_up:>11.2f}× {diff:>11.2e}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
