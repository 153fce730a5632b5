"""SpeechSR and the backbone on torch vs onnxruntime, side by side: time, real-time factor and the
largest difference.

Usage::

    python benchmarks/onnx_speed.py [--lengths 3 12 60] [--reps 5] [--threads 2] [--backbone]

Per rate (24k, 48k) and input length: the pipeline ``SuperResolution`` once on torch (its default
fast path) and once on the exported model (``hierspeech2.onnx.onnx_speechsr``), alternating call by
call so that both see the same machine load; medians, the median of the paired ratios, and
max |onnxruntime − torch| of the outputs. The export (once per weights, cached) is not timed.
``--backbone`` also times the full-size backbone's conversion path (``voice_conversion`` at noise 0,
random weights, 3 s prompt) on torch's fast paths against its ONNX export (exported once, timed);
``--ttv`` the full-size text-to-vec model (``infer_with_lengths`` at default noise under one seed,
so both engines draw the same durations; random weights, 3 s prompt), with ``--tokens`` phoneme
ids per call (the output length in frames is printed with it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"


def speech(seconds: float) -> torch.Tensor:
    from hierspeech2.audio import load_audio

    clips = torch.cat([load_audio(path) for path in sorted((SHARED / "audio").glob("*.wav"))])
    n = int(seconds * 16_000)
    return clips.repeat(n // clips.numel() + 1)[:n].contiguous()


def super_resolve(engine: Callable, wav: torch.Tensor) -> torch.Tensor:
    return engine(wav, 16_000)[0]


def side_by_side(runs: dict[str, Callable[[], torch.Tensor]], reps: int) -> tuple[float, float, float, float]:
    """Time ``runs["torch"]`` and ``runs["ort"]`` alternately after one warm-up each →
    (torch median s, onnxruntime median s, median of the paired torch/ort ratios, max |difference|)."""
    outputs = {name: run() for name, run in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            began = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - began)
    ratios = [t / o for t, o in zip(times["torch"], times["ort"])]
    difference = (outputs["torch"] - outputs["ort"]).abs().max().item()
    return (
        statistics.median(times["torch"]),
        statistics.median(times["ort"]),
        statistics.median(ratios),
        difference,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", nargs="+", type=float, default=[3.0, 12.0, 60.0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backbone", action="store_true", help="also the backbone's conversion path")
    parser.add_argument("--ttv", action="store_true", help="also the text-to-vec model")
    parser.add_argument("--tokens", nargs="+", type=int, default=[60, 240], help="token counts for --ttv")
    parser.add_argument("--skip-sr", action="store_true", help="only the backbone / text-to-vec model")
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
    for rate in () if args.skip_sr else (24_000, 48_000):
        model = SpeechSR.from_packaged(rate)
        engines = {"torch": SuperResolution(model), "ort": SuperResolution(onnx_speechsr(model))}
        for seconds in args.lengths:
            wav = speech(seconds)
            runs = {name: partial(super_resolve, engine, wav) for name, engine in engines.items()}
            torch_s, ort_s, speed_up, diff = side_by_side(runs, args.reps)
            print(f"{rate:>6} {seconds:>8g} {torch_s:>8.3f} {ort_s:>8.3f} {torch_s / seconds:>9.3f} "
                  f"{ort_s / seconds:>8.3f} {speed_up:>11.2f}× {diff:>11.2e}", flush=True)  # fmt: skip

    if args.backbone:
        backbone_speed(args.lengths, args.reps)
    if args.ttv:
        ttv_speed(args.tokens, args.reps)


def backbone_speed(lengths: list[float], reps: int) -> None:
    import tempfile

    from hierspeech2.models import HierSpeech2
    from hierspeech2.nn.inference import inference_context, use_fast_activations
    from hierspeech2.onnx import OnnxBackbone, export_backbone

    torch.manual_seed(0)
    model = HierSpeech2().eval()
    began = time.perf_counter()
    folder = export_backbone(model, Path(tempfile.mkdtemp()) / "backbone")
    print(f"backbone exported in {time.perf_counter() - began:.0f} s")
    engines = {"torch": use_fast_activations(model), "ort": OnnxBackbone(folder)}
    prompt = torch.randn(2, 80, 150)  # 3 s
    prompt_lengths = torch.full((2,), 150)
    for seconds in lengths:
        frames = int(seconds * 50)
        semantic = torch.randn(1, 1024, frames)
        log_f0 = torch.rand(1, 1, 4 * frames) + 4.0
        arguments = (semantic, torch.tensor([frames]), prompt, prompt_lengths, log_f0)

        def convert(engine: torch.nn.Module, arguments: tuple = arguments) -> torch.Tensor:
            with inference_context():
                return engine.voice_conversion(*arguments, noise_scale=0.0)

        runs = {name: partial(convert, engine) for name, engine in engines.items()}
        torch_s, ort_s, speed_up, diff = side_by_side(runs, reps)
        print(f"backbone {seconds:>6g} s: torch {torch_s:.3f} s, onnxruntime {ort_s:.3f} s, "
              f"onnxruntime speed-up {speed_up:.2f}×, max |diff| {diff:.2e}", flush=True)  # fmt: skip


def ttv_speed(token_counts: list[int], reps: int) -> None:
    import tempfile

    from hierspeech2.models import TextToVec
    from hierspeech2.onnx import OnnxTextToVec, export_ttv

    torch.manual_seed(0)
    model = TextToVec().eval()
    began = time.perf_counter()
    folder = export_ttv(model, Path(tempfile.mkdtemp()) / "ttv")
    print(f"text-to-vec exported in {time.perf_counter() - began:.0f} s")
    engines = {"torch": model, "ort": OnnxTextToVec(folder)}
    prompt = torch.randn(2, 80, 150)  # 3 s
    prompt_lengths = torch.full((2,), 150)
    for count in token_counts:
        tokens = torch.randint(1, model.n_vocab, (1, count))
        arguments = (tokens, torch.tensor([count]), prompt, prompt_lengths)

        def infer(engine: torch.nn.Module, arguments: tuple = arguments) -> torch.Tensor:
            torch.manual_seed(1)  # the same duration and prior draws on both engines
            return engine.infer_with_lengths(*arguments)[0]

        runs = {name: partial(infer, engine) for name, engine in engines.items()}
        torch_s, ort_s, speed_up, diff = side_by_side(runs, reps)
        frames = runs["torch"]().shape[-1]
        print(f"text-to-vec {count:>4} tokens, {frames} frames ({frames / 50:.1f} s): torch {torch_s:.3f} s, "
              f"onnxruntime {ort_s:.3f} s, onnxruntime speed-up {speed_up:.2f}×, max |diff| {diff:.2e}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
