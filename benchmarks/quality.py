"""What the fast paths cost in the field's terms: WER, speaker similarity and F0 agreement.

Usage::

    python benchmarks/quality.py                      # VC and TTS, 12 s, every variant
    python benchmarks/quality.py --quick              # VC only, 4 s (a few minutes on 2 cores)
    python benchmarks/quality.py --variants int8 swift --tasks vc --seconds 8

Each variant's output is compared with the default output (float32, YAAPT, sampler seed 0) of
the same input, by the metrics of :mod:`hierspeech2.evaluation`:

- ``wer_vs_fp32``: WER of the variant's transcript against the default output's transcript;
- ``sim_vs_fp32``: speaker similarity of the two outputs; ``sim_to_prompt``: of the output and
  the voice prompt (the default row gives the reference value);
- ``f0_cents`` / ``f0_r`` / ``vuv_f1``: F0 agreement of the two outputs (swift F0, 16 kHz).

The row ``fp32 seed 1`` is the same comparison between two sampler seeds of float32: the model's
own sampling noise. A variant whose figures sit at or inside that row changes the output less
than sampling does. Variants: ``int8`` (the CLI's ``--int8``), ``bf16`` (``torch.autocast``),
``swift`` and ``praat`` (F0 extractor of VC in place of YAAPT; TTS predicts its F0).

Models and inputs are those of ``benchmarks/inference.py``: with ``../shared/parity/fill.py`` the
backbone and TTV get deterministic full-size weights (not trained, so their output is not speech
and the ASR and speaker figures only say how far apart two outputs are); pass ``--backbone`` and
``--ttv`` (registry names, official ``.pth`` or native folders) and ``--mms`` for the released
weights. ASR and speaker models default to the offline ones (PocketSphinx, Resemblyzer);
``--asr whisper --speaker wavlm`` for the field's.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inference  # the benchmark next door: models and inputs

VARIANTS = ("int8", "bf16", "swift", "praat")
SAMPLE_RATE = inference.SAMPLE_RATE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--tasks", nargs="+", choices=("vc", "tts"), default=["vc", "tts"])
    parser.add_argument("--seconds", type=float, default=12.0, help="source length (TTS: about as long)")
    parser.add_argument("--quick", action="store_true", help="VC only, 4 s")
    parser.add_argument("--asr", default="pocketsphinx", help="ASR model (default: pocketsphinx, offline)")
    parser.add_argument("--speaker", default="resemblyzer", help="speaker encoder (default: resemblyzer)")
    parser.add_argument("--backbone", default=None, help="backbone weights instead of the filled ones")
    parser.add_argument("--ttv", default=None, help="TextToVec weights instead of the filled ones")
    parser.add_argument("--mms", type=Path, default=None, help="local transformers mms-300m checkpoint")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--parity-dir", type=Path, default=inference.SHARED / "parity")
    parser.add_argument("--audio-dir", type=Path, default=inference.SHARED / "audio")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.seconds = ["vc"], 4.0
    args.device, args.dtype, args.compare = "cpu", "float32", False
    return args


def build(args: argparse.Namespace) -> tuple[inference.Models, inference.Models]:
    """(float32 models, int8 copies) with the benchmark's weights, or the ones given."""
    from hierspeech2 import load_model
    from hierspeech2.nn.quantization import int8_inference

    fp32, _ = inference.build_models(args, None)
    if args.backbone:
        fp32.backbone = load_model(args.backbone).eval()
    if args.ttv:
        fp32.ttv = load_model(args.ttv).eval()
    int8 = inference.Models(fp32.backbone, fp32.ttv, fp32.sr24, fp32.sr48, fp32.mms)
    int8.mms, int8.backbone = int8_inference(fp32.mms, fp32.backbone, copy=True)
    return fp32, int8


def synthesize(task: str, models: inference.Models, x: dict, seed: int, f0: str, bf16: bool) -> torch.Tensor:
    """One 16 kHz output of ``task`` (the 48 kHz chain, brought back to 16 kHz for the metrics)."""
    from hierspeech2.audio import resample
    from hierspeech2.pipelines import TextToSpeech, VoiceConversion

    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        if task == "vc":
            pipeline = VoiceConversion(models.backbone, models.mms, models.sr48, f0_extractor=f0)
            audio, rate = pipeline(
                x["source"], x["prompt"], source_rate=SAMPLE_RATE, target_rate=SAMPLE_RATE, seed=seed
            )
        else:
            torch.manual_seed(seed)
            tts = TextToSpeech(models.ttv, models.backbone, models.sr48)
            audio, rate = tts.synthesize_from_tokens(x["tokens"], x["prompt_mel"]), 48_000
    return resample(audio.float().reshape(-1), rate, SAMPLE_RATE)


def compare(output: torch.Tensor, default: dict, prompt: torch.Tensor, args: argparse.Namespace) -> dict:
    """The metrics of ``output`` against the default output (whose transcript and F0 are in ``default``)."""
    from hierspeech2.evaluation import f0_metrics, speaker_similarity, transcribe, word_error_rate
    from hierspeech2.pitch import extract_f0

    length = min(output.numel(), default["audio"].numel())
    hypothesis = transcribe(output, SAMPLE_RATE, args.asr)[0]
    similarity = speaker_similarity([output, output], [default["audio"], prompt], SAMPLE_RATE, args.speaker)
    pitch = f0_metrics(extract_f0(output[:length], "swift").reshape(-1), default["f0"][: length // 80 + 1])
    return {
        "wer_vs_fp32": word_error_rate(hypothesis, default["text"])
        if default["text"].strip()
        else float("nan"),
        "sim_vs_fp32": similarity[0].item(),
        "sim_to_prompt": similarity[1].item(),
        "f0_cents": pitch.rmse_cents,
        "f0_r": pitch.pearson,
        "vuv_f1": pitch.vuv_f1,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # untrained (filled) weights give unvoiced output: the F0 columns then read nan, said once here
    warnings.filterwarnings("ignore", message="SwiftF0 found no voiced frame")
    from hierspeech2.audio import LogMelSpectrogram
    from hierspeech2.evaluation import speaker_similarity, transcribe
    from hierspeech2.pitch import extract_f0

    fp32, int8 = build(args)
    args.base_tokens = torch.randint(1, 178, (1, 300), generator=torch.Generator().manual_seed(0))
    args.frames_per_token = 3.0
    source = inference.speech(args.seconds, args.audio_dir, 0)
    prompt = inference.speech(inference.PROMPT_SECONDS, args.audio_dir, 1)
    x = {
        "source": source,
        "prompt": prompt,
        "prompt_mel": LogMelSpectrogram()(torch.stack([prompt, prompt])),
        "tokens": inference.tokens_for(args.seconds, args.frames_per_token, args.base_tokens),
    }
    machine = platform.processor() or platform.machine()
    print(
        f"hierspeech2 quality benchmark — torch {torch.__version__}, {machine}, "
        f"{torch.get_num_threads()} threads, ATen CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}; {args.seconds:g} s; "
        f"ASR {args.asr}, speaker {args.speaker}"
    )
    columns = ("WER vs fp32", "SIM vs fp32", "SIM prompt", "F0 cents", "F0 r", "V/UV F1", "seconds")
    print(f"{'task':4s} {'variant':12s} " + " ".join(f"{name:>11s}" for name in columns))

    def line(task: str, name: str, values: list[float | None], seconds: float) -> None:
        cells = ["—" if value is None else f"{value:.3f}" for value in values] + [f"{seconds:.1f}"]
        print(f"{task:4s} {name:12s} " + " ".join(f"{cell:>11s}" for cell in cells), flush=True)

    for task in args.tasks:
        start = time.perf_counter()
        audio = synthesize(task, fp32, x, seed=0, f0="yaapt", bf16=False)
        default = {
            "audio": audio,
            "text": transcribe(audio, SAMPLE_RATE, args.asr)[0],
            "f0": extract_f0(audio, "swift").reshape(-1),
        }
        own = speaker_similarity(audio, prompt, SAMPLE_RATE, args.speaker).item()
        line(task, "fp32 seed 0", [None, None, own, None, None, None], time.perf_counter() - start)
        rows = [("fp32 seed 1", fp32, 1, "yaapt", False)]
        for name in args.variants:
            if task == "tts" and name in ("swift", "praat"):
                continue  # TTS predicts its F0
            f0 = name if name in ("swift", "praat") else "yaapt"
            rows.append((name, int8 if name == "int8" else fp32, 0, f0, name == "bf16"))
        for name, models, seed, f0, bf16 in rows:
            start = time.perf_counter()
            m = compare(synthesize(task, models, x, seed, f0, bf16), default, prompt, args)
            keys = ("wer_vs_fp32", "sim_vs_fp32", "sim_to_prompt", "f0_cents", "f0_r", "vuv_f1")
            line(task, name, [m[key] for key in keys], time.perf_counter() - start)


if __name__ == "__main__":
    main()
