"""``hierspeech2 serve`` under load, on loopback, and the time to first audio of streaming TTS.

Usage::

    python benchmarks/serve_load.py                         # both load phases, ~1 minute each
    python benchmarks/serve_load.py --clients 8 --seconds 30
    python benchmarks/serve_load.py --ttfa                  # + full-size TTS: time to first audio

Phase "steady": ``--clients`` threads send requests back to back for ``--seconds`` (a mix of
super-resolution of a 3 s clip with the packaged SpeechSR-48k, and TTS and VC with tiny models).
Phase "overload": four times as many clients against a queue of 2: the server must answer 429
(with ``Retry-After``) instead of queueing without bound, with no error and flat memory.
Per phase: requests, p50/p95 latency of the answered ones, throughput, 429s, errors (5xx and
transport), and the server's resident memory (min and max sampled every 0.2 s, and peak).

``--ttfa``: the released TTS architecture at full size (the deterministic weights of
``../shared/parity/fill.py``, as ``benchmarks/inference.py`` builds them) behind the same server:
time from sending ``POST /v1/audio/speech`` (a 3-sentence paragraph, ``response_format=pcm``, 48 kHz)
to the first audio bytes, and to the last. Untrained weights predict durations of their own, so the
request's ``speed`` is set to give the speaking rate of trained ones (about 3 semantic frames, 60 ms,
per token of phonemes with blanks), and the first piece lasts about as long as a trained model's.
"""

from __future__ import annotations

import argparse
import io
import math
import platform
import resource
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TRAINED_FRAMES_PER_TOKEN = 3.0
PARAGRAPH = (
    "The station was quiet when the last train pulled in. A few passengers stepped onto the platform, "
    "pulling their coats tight against the wind. Somewhere behind them, a clock struck eleven."
)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(app) -> tuple[str, object, threading.Thread]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def tiny_app(queue_size: int, voices_dir: Path):
    import tiny_models

    from hierspeech2.models import SpeechSR
    from hierspeech2.options import ServerOptions
    from hierspeech2.pipelines import SuperResolution, TextToSpeech, VoiceConversion
    from hierspeech2.serving import ServedModels, VoiceLibrary, create_app

    backbone = tiny_models.backbone()
    models = ServedModels(
        super_resolution={48_000: SuperResolution(SpeechSR.from_packaged(48_000))},
        tts=TextToSpeech(tiny_models.ttv(), backbone, output_rate=16_000),
        vc=VoiceConversion(
            backbone, tiny_models.semantic_encoder(), output_rate=16_000, f0_extractor="swift"
        ),
    )
    return create_app(models, ServerOptions(queue_size=queue_size), VoiceLibrary(voices_dir))


def load_phase(base: str, clients: int, seconds: float, clip: bytes) -> dict:
    latencies: list[float] = []
    counts = {"ok": 0, "429": 0, "errors": 0}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    memory: list[float] = []

    def client(index: int) -> None:
        with httpx.Client(timeout=120) as http:
            turn = index
            while time.perf_counter() < stop:
                turn += 1
                start_time = time.perf_counter()
                try:
                    if turn % 3 == 0:
                        answer = http.post(
                            f"{base}/v1/audio/super-resolution", files={"file": ("a.wav", clip)}
                        )
                    elif turn % 3 == 1:
                        answer = http.post(
                            f"{base}/v1/audio/speech",
                            json={
                                "input": "Hello there, how are you?",
                                "voice": "narrator",
                                "response_format": "wav",
                            },
                        )
                    else:
                        answer = http.post(
                            f"{base}/v1/audio/conversion",
                            files={"file": ("a.wav", clip)},
                            data={"voice": "narrator"},
                        )
                    status = answer.status_code
                except httpx.HTTPError:
                    status = 599
                elapsed = time.perf_counter() - start_time
                with lock:
                    if status == 200:
                        counts["ok"] += 1
                        latencies.append(elapsed)
                    elif status == 429:
                        counts["429"] += 1
                        time.sleep(float(answer.headers.get("retry-after", "1")) * 0.1)
                    else:
                        counts["errors"] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        memory.append(rss_mib())
        time.sleep(0.2)
    wall = time.perf_counter() - began
    latencies.sort()
    pick = lambda q: (
        latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    )
    return {
        "clients": clients,
        "requests": sum(counts.values()),
        **counts,
        "p50_s": pick(0.5),
        "p95_s": pick(0.95),
        "throughput_rps": counts["ok"] / wall,
        "rss_min_mib": min(memory),
        "rss_max_mib": max(memory),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def time_to_first_audio(voices_dir: Path, reps: int) -> list[tuple[float, float, float, float]]:
    """(first audio, last byte, audio seconds, least playback slack) of streamed full-size TTS at
    48 kHz, ``reps`` times.

    Slack: how far ahead of a player that starts at the first byte each chunk arrives (negative: the
    player would wait that long).
    """
    import inference

    from hierspeech2.options import ServerOptions
    from hierspeech2.pipelines import TextToSpeech
    from hierspeech2.serving import ServedModels, VoiceLibrary, create_app

    args = argparse.Namespace(device="cpu", parity_dir=SHARED / "parity", mms=None)
    models, _ = inference.build_models(args, None)
    tts = TextToSpeech(models.ttv, models.backbone, models.sr48, output_rate=48_000)
    served = ServedModels(super_resolution={48_000: None}, tts=tts)
    base, server, thread = start(create_app(served, ServerOptions(), VoiceLibrary(voices_dir)))
    from hierspeech2.text import text_to_tokens

    tokens = text_to_tokens(PARAGRAPH, "en")
    prompt = inference.speech(inference.PROMPT_SECONDS, SHARED / "audio", 1)
    with torch.inference_mode():
        mel = tts.encode_prompt(prompt, 16_000).mel
        semantic, _ = models.ttv.infer(
            tokens[None], torch.tensor([tokens.numel()]), mel, torch.tensor([mel.shape[-1]] * 2)
        )
    rate = semantic.shape[-1] / tokens.numel()
    speed = min(4.0, max(0.25, rate / TRAINED_FRAMES_PER_TOKEN))
    print(f"ttfa      untrained TTV: {rate:.2f} frames per token; speed {speed:.2f}")
    request = {"input": PARAGRAPH, "voice": "narrator", "response_format": "pcm", "speed": speed}
    results = []
    with httpx.Client(timeout=300) as http:
        for _ in range(reps + 1):  # the first call warms up (and encodes the voice once)
            began = time.perf_counter()
            first, size, slack = None, 0, math.inf
            with http.stream("POST", f"{base}/v1/audio/speech", json=request) as answer:
                for chunk in answer.iter_bytes():
                    now = time.perf_counter() - began
                    first = first or now
                    slack = min(slack, first + size / 2 / 48_000 - now)
                    size += len(chunk)
            results.append((first, time.perf_counter() - began, size / 2 / 48_000, slack))
    first_piece = tts._stream_pieces(PARAGRAPH, "en", ServerOptions.default("first_piece_chars"))[0][0].text
    print(f"ttfa      first piece: {first_piece!r}")
    server.should_exit = True
    thread.join(timeout=10)
    return results[1:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--ttfa", action="store_true", help="also time the first audio of full-size streaming TTS"
    )
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    import tempfile

    from hierspeech2.audio import load_audio

    voices = Path(tempfile.mkdtemp())
    sf.write(voices / "narrator.wav", load_audio(SHARED / "audio" / "reference_2.wav").numpy(), 16_000)
    buffer = io.BytesIO()
    sf.write(buffer, load_audio(SHARED / "audio" / "reference_1.wav").numpy(), 16_000, format="WAV")
    machine = platform.processor() or platform.machine()
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"hierspeech2 serve load test — torch {torch.__version__}, {machine}, "
          f"{torch.get_num_threads()} torch threads, ATen CPU capability {capability}")  # fmt: skip
    for name, queue_size, clients in (("steady", 16, args.clients), ("overload", 2, 4 * args.clients)):
        base, server, thread = start(tiny_app(queue_size, voices))
        result = load_phase(base, clients, args.seconds, buffer.getvalue())
        server.should_exit = True
        thread.join(timeout=10)
        cells = [
            f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
            for key, value in result.items()
        ]
        print(f"{name:9s} " + ", ".join(cells), flush=True)
    if args.ttfa:
        for first, last, audio, slack in time_to_first_audio(voices, args.reps):
            print(f"ttfa      first audio {first:.2f} s, whole {last:.2f} s for {audio:.1f} s of 48 kHz "
                  f"audio (real-time factor {last / audio:.2f}); least playback slack {slack:+.2f} s",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
