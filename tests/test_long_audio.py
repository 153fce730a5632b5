"""Long audio: windowed VC/SR against one pass, batches against one-at-a-time, memory flat in the input
length.

Tiny random models (tests/tiny_models.py) on real speech from ../shared/audio, one CPU thread.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tiny_models
import torch

from hierspeech2.audio import load_audio
from hierspeech2.chunking import ChunkPlan
from hierspeech2.errors import AudioFileNotFoundError
from hierspeech2.pipelines import SuperResolution, VoiceConversion

HERE = Path(__file__).resolve().parent
RATE = 16_000
WHOLE = ChunkPlan.from_seconds(60, 1.28, 0.16, RATE, 1280)  # one window for anything under a minute
VC_TEST_CHUNKS = ChunkPlan.from_seconds(8.96, 1.28, 0.16, RATE, 1280)  # 30 s → 4 windows
MEMORY_GROWTH_LIMIT_MB = 16  # 9 more minutes of 16 kHz float32 audio alone would be 33 MB


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def speech(shared_dir) -> list[torch.Tensor]:
    return [load_audio(shared_dir / "audio" / f"reference_{i}.wav") for i in range(1, 5)]


@pytest.fixture(scope="module")
def source_30s(speech) -> torch.Tensor:
    return torch.cat([speech[i % 4] for i in range(10)])[: 30 * RATE]


@pytest.fixture(scope="module")
def tiny_vc_parts():
    return tiny_models.backbone(), tiny_models.semantic_encoder()


def vc_pipeline(parts, plan: ChunkPlan, **options) -> VoiceConversion:
    backbone, encoder = parts
    options = {"output_rate": RATE, "noise_scale": 0.0, "f0_extractor": tiny_models.energy_f0, **options}
    return VoiceConversion(backbone, encoder, chunk_plan=plan, scale_norm="none", **options)


def boundary_jumps(audio: torch.Tensor, plan: ChunkPlan, span: int = 1280) -> list[float]:
    """Largest sample-to-sample step within ``span`` samples of each window boundary."""
    return [
        audio[w.core_start - span : w.core_start + span].diff().abs().max().item()
        for w in plan.windows(audio.numel())[1:]
    ]


def test_vc_of_30_s_in_windows_matches_one_pass_without_clicks(tiny_vc_parts, source_30s, speech) -> None:
    prompt = speech[1]
    whole, _ = vc_pipeline(tiny_vc_parts, WHOLE)(source_30s, prompt, source_rate=RATE, target_rate=RATE)
    windowed, _ = vc_pipeline(tiny_vc_parts, VC_TEST_CHUNKS)(
        source_30s, prompt, source_rate=RATE, target_rate=RATE
    )
    assert len(VC_TEST_CHUNKS.windows(whole.numel())) == 4
    assert windowed.shape == whole.shape == ((30 * RATE // 1280 + 1) * 1280,)
    error = windowed - whole
    snr_db = 10 * math.log10(whole.pow(2).sum() / error.pow(2).sum())
    assert snr_db > 60  # measured: 109 dB, max |error| 3.5e-6 for a peak of 0.44
    # no clicks: near every boundary the largest step is that of the one-pass output
    for step, reference in zip(
        boundary_jumps(windowed, VC_TEST_CHUNKS), boundary_jumps(whole, VC_TEST_CHUNKS)
    ):
        assert step <= reference * 1.01 + 1e-4
    # the same windows cut without context or cross-fade click (the check above would fail)
    naive_plan = ChunkPlan.from_seconds(8.96, 0, 0, RATE, 1280)
    naive, _ = vc_pipeline(tiny_vc_parts, naive_plan)(source_30s, prompt, source_rate=RATE, target_rate=RATE)
    naive_steps = boundary_jumps(naive, VC_TEST_CHUNKS)
    assert any(s > r * 1.1 for s, r in zip(naive_steps, boundary_jumps(whole, VC_TEST_CHUNKS)))


def test_sr_of_30_s_in_windows_equals_one_pass(source_30s) -> None:
    # float64: SpeechSR's float32 interpolation positions (j + 0.5) / ratio lose precision as the
    # absolute index j grows, so a one-pass float32 run drifts by up to ~5e-3 late in a 30 s
    # input; windows restart j and are the more accurate. In float64 both are exact.
    model = tiny_models.speechsr(3.0).double()
    plan = ChunkPlan(chunk=4 * RATE, context=1600, crossfade=640, multiple=320)
    whole, rate = SuperResolution(model, scale_norm="none", chunk_plan=WHOLE)(source_30s, RATE)
    windowed, _ = SuperResolution(model, scale_norm="none", chunk_plan=plan, batch_size=3)(source_30s, RATE)
    assert rate == 48_000 and windowed.shape == whole.shape == (3 * source_30s.numel(),)
    assert len(plan.windows(source_30s.numel())) == 8
    assert (windowed - whole).abs().max().item() < 1e-6
    assert whole.abs().max().item() > 0.1


def test_batched_vc_equals_one_at_a_time_and_a_bad_job_fails_alone(tiny_vc_parts, speech, tmp_path) -> None:
    plan = ChunkPlan.from_seconds(2.56, 0.64, 0.16, RATE, 1280)
    long_source = torch.cat(speech[:3])  # 9 s: 4 windows of equal length
    sf.write(tmp_path / "long.wav", long_source.numpy(), RATE)
    sf.write(tmp_path / "prompt_a.wav", speech[2].numpy(), RATE)
    jobs = [
        ((speech[0][:24_000], RATE), (speech[3], RATE), None),  # two 1.5 s sources: batched together
        (tmp_path / "long.wav", tmp_path / "prompt_a.wav", tmp_path / "out" / "long.flac"),
        (tmp_path / "missing.wav", (speech[3], RATE), None),
        ((speech[1][:24_000], RATE), tmp_path / "prompt_a.wav", None),
    ]
    batched = vc_pipeline(tiny_vc_parts, plan, batch_size=4)
    rows_per_call = []
    convert = batched.backbone.voice_conversion
    batched.backbone.voice_conversion = lambda semantic, *args, **kwargs: (
        rows_per_call.append(semantic.shape[0]) or convert(semantic, *args, **kwargs)
    )
    try:
        results = batched.convert_many(jobs)
    finally:
        del batched.backbone.voice_conversion
    assert sorted(rows_per_call) == [
        2,
        4,
    ]  # the two short sources together, the long one's 4 windows together
    assert [r.ok for r in results] == [True, True, False, True]
    assert isinstance(results[2].error, AudioFileNotFoundError)
    assert results[1].path == tmp_path / "out" / "long.flac" and results[1].audio is None
    single = vc_pipeline(tiny_vc_parts, plan, batch_size=1)
    for result, (source, target, _) in zip(results, jobs):
        if not result.ok:
            continue
        (alone,) = [r.audio for r in single.convert_many([(source, target, None)])]
        got = result.audio if result.audio is not None else torch.from_numpy(sf.read(result.path)[0]).float()
        tolerance = 1e-4 if result.audio is not None else 1 / 2**15 + 1e-4  # 16-bit FLAC
        assert got.shape == alone.shape
        assert (got - alone).abs().max().item() <= tolerance


def test_f0_statistics_are_those_of_the_whole_source(speech) -> None:
    from hierspeech2.pipelines import transfer_log_f0

    plan = ChunkPlan.from_seconds(2.56, 0.64, 0.16, RATE, 1280)
    quiet_then_loud = torch.cat([0.05 * speech[0], speech[1], 3.0 * speech[2]])  # F0 statistics drift
    backbone = tiny_models.StandInBackbone()
    vc = VoiceConversion(
        backbone,
        tiny_models.StandInEncoder(),
        output_rate=RATE,
        chunk_plan=plan,
        f0_extractor=tiny_models.energy_f0,
    )
    seen = []
    convert = backbone.voice_conversion
    backbone.voice_conversion = lambda semantic, lengths, mel, mel_lengths, log_f0, **kw: (
        seen.append(log_f0[:, 0].clone()) or convert(semantic, lengths, mel, mel_lengths, log_f0, **kw)
    )
    vc(quiet_then_loud, speech[3], source_rate=RATE, target_rate=RATE)
    padded = torch.nn.functional.pad(quiet_then_loud, (0, 1280 - quiet_then_loud.numel() % 1280))
    prompt_f0 = tiny_models.energy_f0(speech[3]).numpy()
    expected = transfer_log_f0(
        tiny_models.energy_f0(padded).numpy(), prompt_f0
    )  # one track, one set of stats
    windows = plan.windows(padded.numel())
    assert len(seen) == len(windows) == 4
    for window, log_f0 in zip(windows, seen):
        torch.testing.assert_close(log_f0[0], expected[window.start // 80 : window.end // 80])


def test_prompt_denoiser_weights_the_two_styles(tiny_vc_parts, speech) -> None:
    backbone, encoder = tiny_vc_parts
    denoiser = tiny_models.denoiser()
    calls = []
    denoiser.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    plain = VoiceConversion(backbone, encoder, output_rate=RATE, f0_extractor=tiny_models.energy_f0)
    assert plain.denoise_ratio == 0.0
    vc = VoiceConversion(
        backbone,
        encoder,
        denoiser=denoiser,
        output_rate=RATE,
        f0_extractor=tiny_models.energy_f0,
        noise_scale=0.0,
    )
    assert vc.denoise_ratio == 0.8  # the official default once a denoiser is loaded
    prompt = speech[1][:20_000]  # padded to 20 800 (a multiple of 1600) for the denoiser, as official
    encoded = vc.encode_prompt(prompt, RATE)
    assert calls == [(1, 20_800)]
    denoised = denoiser(torch.nn.functional.pad(prompt, (0, 800))[None])[0, :20_000]
    calls.clear()
    torch.testing.assert_close(encoded.mel[1], vc.mel(denoised), atol=1e-4, rtol=0)
    assert (encoded.mel[1] - encoded.mel[0]).abs().max() > 0.1
    source = (speech[0][:16_000], speech[1][:20_000])
    outputs = {
        r: vc(*source, source_rate=RATE, target_rate=RATE, denoise_ratio=r)[0] for r in (0.0, 0.8, 1.0)
    }
    assert len(calls) == 2  # ratio 0 skips the denoiser
    assert not torch.allclose(outputs[0.0], outputs[0.8]) and not torch.allclose(outputs[0.8], outputs[1.0])
    with pytest.raises(ValueError, match=r"denoise_ratio must be in \[0, 1\]"):
        vc(*source, source_rate=RATE, target_rate=RATE, denoise_ratio=1.5)


def write_tone(path: Path, minutes: float) -> None:
    """Speech-like on/off tone written block by block (the test process never holds it)."""
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as file:
        for second in range(round(minutes * 60)):
            t = np.arange(RATE) / RATE + second
            file.write(
                (0.3 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)).astype(np.float32)
            )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc (Linux)")
def test_peak_memory_of_streamed_vc_and_sr_does_not_grow_from_1_to_10_minutes(tmp_path) -> None:
    for minutes in (1, 10):
        write_tone(tmp_path / f"source_{minutes}min.wav", minutes)
    write_tone(tmp_path / "prompt.wav", 0.05)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # one fresh process per conversion: its peak RSS is what that conversion needed
    probes = {
        (kind, minutes): subprocess.Popen(
            [
                sys.executable,
                str(HERE / "memory_probe.py"),
                kind,
                str(tmp_path / "prompt.wav"),
                str(tmp_path),
                str(tmp_path / f"source_{minutes}min.wav"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for kind in ("vc", "sr")
        for minutes in (1, 10)
    }
    figures = {}
    for key, probe in probes.items():
        out, err = probe.communicate(timeout=300)
        assert probe.returncode == 0, err
        figures[key] = json.loads(out)
    for kind, rate in (("vc", RATE), ("sr", 48_000)):
        short, long = figures[kind, 1], figures[kind, 10]
        assert long["samples"] >= 10 * 60 * rate > short["samples"]  # both sources were converted whole
        print(
            f"{kind}: peak RSS {short['peak_rss_mb']:.1f} MB for 1 min, "
            f"{long['peak_rss_mb']:.1f} MB for 10 min"
        )
        assert long["peak_rss_mb"] - short["peak_rss_mb"] < MEMORY_GROWTH_LIMIT_MB, (kind, short, long)


def test_vc_stream_yields_the_whole_conversion_window_by_window(tiny_vc_parts, speech) -> None:
    plan = ChunkPlan.from_seconds(2.56, 0.64, 0.16, RATE, 1280)
    source = torch.cat(speech[:3])  # 9 s: 4 windows
    vc = vc_pipeline(tiny_vc_parts, plan)
    whole, _ = vc(source, speech[3], source_rate=RATE, target_rate=RATE)
    blocks = list(vc.stream(source, speech[3], source_rate=RATE, target_rate=RATE))
    assert len(blocks) >= len(plan.windows(source.numel()))
    streamed = torch.cat(blocks)
    assert streamed.shape == whole.shape and (streamed - whole).abs().max() < 1e-5
    loud = VoiceConversion(
        *tiny_vc_parts, chunk_plan=plan, output_rate=RATE, noise_scale=0.0, f0_extractor=tiny_models.energy_f0
    )
    peaks = [
        float(block.abs().max())
        for block in loud.stream(source, speech[3], source_rate=RATE, target_rate=RATE)
    ]
    assert max(peaks) <= 0.999 + 1e-6 and peaks[0] == pytest.approx(0.999, abs=1e-6)
