"""Speed and agreement of the fast F0 extractors (SwiftF0, Praat) with YAAPT, and what they change in
voice conversion.

Usage::

    python benchmarks/f0.py                       # the shared LibriTTS utterances, inference variant
    python benchmarks/f0.py --variant training    # f0_max 400, as in preprocessing
    python benchmarks/f0.py --vc-criterion        # also the sampler-noise criterion (minutes)
    python benchmarks/f0.py --threads 0           # torch's default threads (1 by default)

Per utterance (16 kHz, zero-padded to a multiple of 1280 samples as the official callers do) and
in total: the median wall time of ``--reps`` calls of each extractor, alternating so that all
see the same machine load, and the speed-up over YAAPT (in total also process CPU time, steadier
on a busy machine); voicing agreement with YAAPT (both voiced or both unvoiced, % of frames);
median and 95th-percentile absolute error in cents on the frames both call voiced. Praat is
skipped when praat-parselmouth (GPL-3, the ``praat`` extra) is not installed.

``--vc-criterion`` runs :class:`hierspeech2.pipelines.VoiceConversion` (full-size backbone with the
deterministic weights of ``../shared/parity/fill.py``, the released SpeechSR-48k, a randomly
initialised MMS-300m truncated to its 7 used layers) on ``--vc-pairs`` (source, prompt) pairs of
shared utterances and compares log-mel spectrograms (16 kHz) by mean L1: each fast extractor's F0
vs YAAPT F0 at the same seed, and YAAPT F0 at seed 0 vs seed 1 (the sampler's own noise,
``noise_scale`` 0.333). A fast extractor changes the output less than the sampler noise when its
L1 is the smaller.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_RATE = 16_000


def read_utterances(audio_dir: Path) -> dict[str, torch.Tensor]:
    """The 16 kHz WAV files of ``audio_dir`` by name → float32 ``[N]``."""
    utterances = {}
    for path in sorted(audio_dir.glob("*.wav")):
        samples, rate = sf.read(str(path), dtype="float32")
        if rate != SAMPLE_RATE or samples.ndim != 1:
            raise SystemExit(f"{path}: expected 16 kHz mono, got {rate} Hz, shape {samples.shape}")
        utterances[path.stem] = torch.from_numpy(samples)
    if not utterances:
        raise SystemExit(f"no .wav file in {audio_dir}")
    return utterances


def agreement(candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Voicing agreement (%) and cents error (median, p95) on frames both call voiced."""
    both = (candidate > 0) & (reference > 0)
    cents = np.abs(1200 * np.log2(candidate[both] / reference[both]))
    return {
        "voicing": 100 * float(np.mean((candidate > 0) == (reference > 0))),
        "median_cents": float(np.median(cents)) if cents.size else float("nan"),
        "p95_cents": float(np.percentile(cents, 95)) if cents.size else float("nan"),
        "frames": int(candidate.size),
        "both_voiced": int(both.sum()),
    }


def fast_extractors() -> dict[str, Callable[..., torch.Tensor]]:
    """The fast extractors to compare with YAAPT by label; Praat only where parselmouth is installed."""
    from hierspeech2.pitch import praat_f0, swift_f0

    extractors = {"SwiftF0": swift_f0}
    if importlib.util.find_spec("parselmouth") is not None:
        extractors["Praat"] = praat_f0
    else:
        print('(Praat skipped: praat-parselmouth is GPL-3 and optional; pip install "hierspeech2[praat]")')
    return extractors


def compare_extractors(utterances: dict[str, torch.Tensor], variant: str, reps: int) -> None:
    from hierspeech2.audio import pad_to_multiple
    from hierspeech2.pitch import yaapt

    extractors = {"YAAPT": yaapt, **fast_extractors()}
    fast = [label for label in extractors if label != "YAAPT"]
    print(f"F0 extractors vs YAAPT, variant={variant!r}, median of {reps} alternating calls each")
    print(
        f"{'utterance':<14}{'audio s':>8}{'extractor':>10}{'wall s':>9}{'speed-up':>9}"
        f"{'voicing %':>11}{'median ¢':>10}{'p95 ¢':>8}{'frames':>8}"
    )
    f0s: dict[str, list[np.ndarray]] = {label: [] for label in extractors}
    wall = dict.fromkeys(extractors, 0.0)
    cpu = dict.fromkeys(extractors, 0.0)
    seconds = 0.0
    for name, samples in utterances.items():
        wav = pad_to_multiple(samples[None], 1280)[0]
        times: dict[str, list[float]] = {label: [] for label in extractors}
        cpu_times: dict[str, list[float]] = {label: [] for label in extractors}
        f0 = {}
        for _ in range(reps):
            for label, fn in extractors.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                f0[label] = fn(wav, variant=variant)[0, 0].double().numpy()
                times[label].append(time.perf_counter() - start)
                cpu_times[label].append(time.process_time() - cpu_start)
        audio_seconds = samples.numel() / SAMPLE_RATE
        seconds += audio_seconds
        for label in extractors:
            wall[label] += statistics.median(times[label])
            cpu[label] += statistics.median(cpu_times[label])
            f0s[label].append(f0[label])
        t_yaapt = statistics.median(times["YAAPT"])
        print(f"{name:<14}{audio_seconds:8.2f}{'YAAPT':>10}{t_yaapt:9.4f}")
        for label in fast:
            t = statistics.median(times[label])
            row = agreement(f0[label], f0["YAAPT"])
            print(
                f"{'':<14}{'':>8}{label:>10}{t:9.4f}{t_yaapt / t:8.1f}x{row['voicing']:11.1f}"
                f"{row['median_cents']:10.1f}{row['p95_cents']:8.1f}{row['frames']:8d}"
            )
    reference = np.concatenate(f0s["YAAPT"])
    print(f"{'total':<14}{seconds:8.2f}{'YAAPT':>10}{wall['YAAPT']:9.4f}")
    for label in fast:
        total = agreement(np.concatenate(f0s[label]), reference)
        print(
            f"{'':<14}{'':>8}{label:>10}{wall[label]:9.4f}{wall['YAAPT'] / wall[label]:8.1f}x"
            f"{total['voicing']:11.1f}{total['median_cents']:10.1f}{total['p95_cents']:8.1f}{total['frames']:8d}"
            f"  ({total['both_voiced']} frames voiced in both)"
        )
    print(
        "real-time factor (compute s per audio s): "
        + ", ".join(f"{label} {wall[label] / seconds:.4f}" for label in extractors)
    )
    print(
        "process CPU time (less sensitive to machine load): "
        + ", ".join(f"{label} {cpu[label]:.3f} s" for label in extractors)
        + "; speed-up "
        + ", ".join(f"{label} {cpu['YAAPT'] / cpu[label]:.1f}x" for label in fast)
    )


def _fill(model: str, parity_dir: Path) -> dict[str, torch.Tensor]:
    if not (parity_dir / "fill.py").is_file():
        raise SystemExit(f"--vc-criterion needs {parity_dir / 'fill.py'} (full-size deterministic weights)")
    spec = importlib.util.spec_from_file_location("_parity_fill", parity_dir / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.official_state_dict(model, str(parity_dir))


def vc_criterion(utterances: dict[str, torch.Tensor], parity_dir: Path, pairs: int) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from hierspeech2.audio import LogMelSpectrogram, resample
    from hierspeech2.models import HierSpeech2, SpeechSR
    from hierspeech2.pipelines import VoiceConversion
    from hierspeech2.pitch import yaapt
    from hierspeech2.ssl import SemanticEncoder

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from inference import MMS_300M, MMS_LAYER  # the mms-300m architecture, no download

    backbone = HierSpeech2.from_official(_fill("backbone", parity_dir)).eval()
    speechsr = SpeechSR.from_packaged(48000).eval()
    torch.manual_seed(0)
    mms = Wav2Vec2Model(Wav2Vec2Config(**{**MMS_300M, "num_hidden_layers": MMS_LAYER})).eval()
    semantic_encoder = SemanticEncoder(mms, layer=MMS_LAYER)

    # The pipeline's F0 extractor maps 16 kHz audio [N] to Hz [N / 80] (pitch.F0Track).
    def per_utterance(fn: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda wav: fn(wav, variant="inference").reshape(-1)

    extractors = {"YAAPT": yaapt, **fast_extractors()}
    fast = [label for label in extractors if label != "YAAPT"]
    pipelines = {
        label: VoiceConversion(backbone, semantic_encoder, speechsr, f0_extractor=per_utterance(fn))
        for label, fn in extractors.items()
    }
    mel = LogMelSpectrogram()
    names = list(utterances)
    print("\nVC criterion: log-mel L1 (16 kHz), full-size backbone, SpeechSR-48k, noise_scale 0.333")
    columns = [f"{label} vs YAAPT (seed 0)" for label in fast] + ["YAAPT seed 0 vs 1"]
    print(f"{'source → prompt':<28}" + "".join(f"{column:>26}" for column in columns) + f"{'VC s':>7}")
    l1: dict[str, list[float]] = {column: [] for column in columns}
    for i in range(min(pairs, len(names))):
        source, prompt = names[(2 * i) % len(names)], names[(2 * i + 1) % len(names)]

        def log_mel(label: str, seed: int, source: str = source, prompt: str = prompt) -> torch.Tensor:
            with torch.inference_mode():
                audio, rate = pipelines[label](
                    utterances[source], utterances[prompt], source_rate=SAMPLE_RATE, target_rate=SAMPLE_RATE,
                    seed=seed,
                )  # fmt: skip
            return mel(resample(audio.float(), rate, SAMPLE_RATE))

        start = time.perf_counter()
        reference = log_mel("YAAPT", 0)
        elapsed = time.perf_counter() - start
        for label in fast:
            l1[f"{label} vs YAAPT (seed 0)"].append((log_mel(label, 0) - reference).abs().mean().item())
        l1["YAAPT seed 0 vs 1"].append((log_mel("YAAPT", 1) - reference).abs().mean().item())
        print(
            f"{source + ' → ' + prompt:<28}" + "".join(f"{l1[column][-1]:26.4f}" for column in columns)
            + f"{elapsed:7.1f}"
        )  # fmt: skip
    means = {column: statistics.mean(values) for column, values in l1.items()}
    print(f"{'mean':<28}" + "".join(f"{means[column]:26.4f}" for column in columns))
    noise = means["YAAPT seed 0 vs 1"]
    for label in fast:
        change = means[f"{label} vs YAAPT (seed 0)"]
        verdict = "met" if change < noise else "NOT met"
        print(
            f"criterion ({label}-vs-YAAPT L1 {change:.4f} < seed-0-vs-seed-1 L1 {noise:.4f}): {verdict}"
            + (f"; {label} F0 changes the output less than the sampler noise" if change < noise else "")
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio-dir", type=Path, default=SHARED / "audio", help="16 kHz mono WAV files")
    parser.add_argument("--parity-dir", type=Path, default=SHARED / "parity", help="folder with fill.py")
    parser.add_argument("--variant", choices=("inference", "training"), default="inference")
    parser.add_argument("--reps", type=int, default=5, help="timed calls of each extractor per utterance")
    parser.add_argument("--vc-criterion", action="store_true", help="also run the sampler-noise criterion")
    parser.add_argument("--vc-pairs", type=int, default=2, help="(source, prompt) pairs for --vc-criterion")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: as in preprocessing workers; 0: torch's default)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        # The extractors validate their input with torch; on a busy machine a multi-threaded
        # torch.isfinite alone can take longer than Praat's whole analysis.
        torch.set_num_threads(args.threads)
    utterances = read_utterances(args.audio_dir)
    compare_extractors(utterances, args.variant, args.reps)
    if args.vc_criterion:
        vc_criterion(utterances, args.parity_dir, args.vc_pairs)


if __name__ == "__main__":
    main()
