"""Peak memory of streamed conversions, run in a fresh process (not a test: tests/test_long_audio.py runs it).

    OMP_NUM_THREADS=1 python tests/memory_probe.py {vc,sr} PROMPT OUT_DIR SOURCE [SOURCE ...] [--real]

Converts each SOURCE in turn (file to file) and prints one JSON line per source: the process's
peak RSS so far (VmHWM, Linux), in MB, and the output's length. Give one SOURCE per process to
measure what that conversion needs (a second conversion in the same process also sees the
allocator's leftovers from the first).
The models are cheap stand-ins with the pipelines' interfaces (their activations are per window,
so bounded by construction); ``--real`` uses the tiny random models of tiny_models.py instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_models

from hierspeech2.chunking import ChunkPlan
from hierspeech2.pipelines import SuperResolution, VoiceConversion


def main() -> None:
    real = "--real" in sys.argv
    kind, prompt, out_dir, *sources = [arg for arg in sys.argv[1:] if arg != "--real"]
    torch.set_num_threads(1)
    if kind == "vc":
        backbone = tiny_models.backbone() if real else tiny_models.StandInBackbone()
        encoder = tiny_models.semantic_encoder() if real else tiny_models.StandInEncoder()
        plan = ChunkPlan.from_seconds(10.24, 1.28, 0.16, 16000, 1280)
        pipeline = VoiceConversion(
            backbone,
            encoder,
            output_rate=16000,
            f0_extractor=tiny_models.energy_f0,
            chunk_plan=plan,
            noise_scale=0.0,
        )
        convert = lambda source, output: pipeline.convert_file(source, prompt, output)
    else:
        pipeline = SuperResolution(tiny_models.speechsr(3.0) if real else tiny_models.StandInSpeechSR())
        convert = pipeline.process_file
    for source in sources:
        output = Path(out_dir) / f"{kind}_{Path(source).stem}.wav"
        convert(source, output)
        print(
            json.dumps({"source": source, "peak_rss_mb": peak_rss_mb(), "samples": sf.info(output).frames}),
            flush=True,
        )


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM; ru_maxrss would include the parent's from before
    exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


if __name__ == "__main__":
    main()
