"""Window plans, cross-fades, windowed audio reads and streamed writes (no models)."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
import soundfile as sf
import torch

from hierspeech2.audio import load_audio
from hierspeech2.audio_stream import AudioReader, FileSink, MemorySink
from hierspeech2.chunking import ChunkPlan, CrossFader, fade_in_weights
from hierspeech2.errors import AudioError, AudioFileNotFoundError


def join(signal: torch.Tensor, plan: ChunkPlan, model=lambda x: x, ratio: float = 1.0) -> torch.Tensor:
    """Run ``model`` window by window over ``signal`` and join the kept outputs with a CrossFader."""
    fader = CrossFader(round(plan.crossfade * ratio))
    padded = torch.nn.functional.pad(signal, (0, plan.window_length))
    parts = [fader.push(w.crop(model(padded[w.start : w.end]), ratio)) for w in plan.windows(signal.numel())]
    return torch.cat([*parts, fader.finish()])


@pytest.mark.parametrize("total", [1, 999, 1000, 1001, 4096, 10_000, 12_345])
def test_windows_tile_the_signal_with_equal_lengths(total: int) -> None:
    plan = ChunkPlan(chunk=600, context=100, crossfade=100, multiple=50)
    windows = plan.windows(total)
    if total <= plan.window_length:
        assert [(w.start, w.end, w.keep_start, w.keep_end) for w in windows] == [(0, total, 0, total)]
        return
    assert {w.length for w in windows} == {plan.window_length}
    assert windows[0].core_start == 0 and windows[-1].core_end == total
    for before, after in pairwise(windows):
        assert before.core_end == after.core_start  # cores partition the signal
        assert before.keep_end - after.keep_start == plan.crossfade  # neighbours overlap by one fade
        assert after.start % plan.multiple == 0
    for w in windows:
        assert w.start <= w.keep_start and w.keep_end <= w.end  # the kept part is inside the window
        assert w.end - total < plan.multiple  # only the last window may pass the end, by less than a multiple


def test_identity_model_is_reconstructed_exactly() -> None:
    torch.manual_seed(0)
    signal = torch.randn(12_345, dtype=torch.float64)
    plan = ChunkPlan(chunk=1000, context=200, crossfade=200, multiple=100)
    assert len(plan.windows(signal.numel())) == 13
    torch.testing.assert_close(join(signal, plan), signal, rtol=0, atol=1e-12)
    # an upsampling "model": the ratio maps every position, fades included
    upsampled = join(signal, plan, lambda x: x.repeat_interleave(3), ratio=3.0)
    torch.testing.assert_close(upsampled, signal.repeat_interleave(3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("total", [1, 640, 641, 1_000, 1_001, 4_321, 20_000, 100_003])
def test_growing_windows_double_from_the_first_and_rebuild_the_signal(total: int) -> None:
    plan = ChunkPlan(chunk=400, context=100, crossfade=200, multiple=100)
    windows = plan.growing_windows(total, largest=3_200)
    if total <= 400 + 100:
        assert [(w.start, w.end, w.keep_start, w.keep_end) for w in windows] == [(0, total, 0, total)]
        return
    cores = [w.core_end - w.core_start for w in windows]
    assert windows[0].core_start == 0 and windows[-1].core_end == total and windows[-1].end == total
    assert cores[:-1] == [min(3_200, 400 * 2**i) for i in range(len(cores) - 1)]
    assert 100 < cores[-1] <= min(3_200, 400 * 2 ** (len(cores) - 1)) + 100  # the tail: past one context
    for before, after in pairwise(windows):
        assert before.core_end == after.core_start and after.start % 100 == 0
        assert before.keep_end - after.keep_start == 200 and after.keep_end - after.keep_start > 200
        assert after.start == after.core_start - 100
    signal = torch.randn(total, dtype=torch.float64)
    fader = CrossFader(200)
    parts = [fader.push(w.crop(signal[w.start : w.end])) for w in windows]
    torch.testing.assert_close(torch.cat([*parts, fader.finish()]), signal, rtol=0, atol=1e-12)


def test_growing_windows_refuse_bad_geometry() -> None:
    plan = ChunkPlan(chunk=400, context=100, crossfade=200, multiple=100)
    with pytest.raises(ValueError, match="cannot plan windows over 0"):
        plan.growing_windows(0, 3_200)
    with pytest.raises(
        ValueError, match="largest \\(300\\) must be a multiple of 100 of at least chunk \\(400\\)"
    ):
        plan.growing_windows(5_000, 300)
    with pytest.raises(ValueError, match="largest \\(3250\\)"):
        plan.growing_windows(5_000, 3_250)
    # the first core, context and cross-fade are checked by the plan itself
    with pytest.raises(ValueError, match="chunk \\(450\\) must be a non-negative multiple of 100"):
        ChunkPlan(chunk=450, context=100, crossfade=200, multiple=100)
    with pytest.raises(ValueError, match="crossfade \\(400\\) must not exceed 2 × context \\(200\\)"):
        ChunkPlan(chunk=400, context=100, crossfade=400, multiple=100)


def test_crossfade_blends_disagreeing_windows_without_steps() -> None:
    plan = ChunkPlan(chunk=1000, context=200, crossfade=200)
    offsets = iter(range(100))
    out = join(torch.zeros(5000), plan, lambda x: x + next(offsets))  # each window outputs its own constant
    assert out[:900].eq(0).all() and out[-900:].eq(4).all()
    assert out.diff().abs().max() < 2 * math.pi / 200  # a raised-cosine ramp, not a jump of 1
    ramp = fade_in_weights(200, torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(ramp + ramp.flip(0), torch.ones(200, dtype=torch.float64))


def test_plan_validation_and_seconds() -> None:
    plan = ChunkPlan.from_seconds(20.48, 1.28, 0.16, 16_000, 1280)
    assert (plan.chunk, plan.context, plan.crossfade) == (327_680, 20_480, 2_560)
    with pytest.raises(ValueError, match="crossfade"):
        ChunkPlan(chunk=1000, context=10, crossfade=100)
    with pytest.raises(ValueError, match="multiple of 50"):
        ChunkPlan(chunk=1010, context=100, crossfade=100, multiple=50)
    with pytest.raises(ValueError, match="cannot plan"):
        plan.windows(0)


@pytest.mark.parametrize("file_rate", [16_000, 22_050, 44_100])
def test_windowed_reads_equal_whole_file_resampling(tmp_path, shared_dir, file_rate: int) -> None:
    speech = load_audio(shared_dir / "audio" / "reference_1.wav", file_rate)
    stereo = torch.stack([speech, -0.5 * speech])
    path = tmp_path / f"speech_{file_rate}.flac"
    sf.write(path, stereo.T.numpy(), file_rate, subtype="PCM_24")
    whole = load_audio(path, 16_000)
    reader = AudioReader(path)
    assert reader.num_samples == whole.numel()
    for start, end in [(0, 1000), (777, 20_000), (whole.numel() - 1234, whole.numel())]:
        torch.testing.assert_close(reader.read(start, end), whole[start:end], rtol=0, atol=2e-6)
    padded = reader.read(-10, 10)
    assert padded[:10].eq(0).all() and torch.allclose(padded[10:], whole[:10], atol=2e-6)
    assert reader.read(whole.numel(), whole.numel() + 5).eq(0).all()


def test_reader_errors_are_actionable(tmp_path) -> None:
    with pytest.raises(AudioFileNotFoundError, match="not found"):
        AudioReader(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(AudioError, match="cannot read"):
        AudioReader(tmp_path / "bad.wav")
    with pytest.raises(AudioError, match="sample rate"):
        AudioReader(np.zeros(10, dtype=np.float32))


def test_file_sink_normalises_in_two_passes_and_cleans_up(tmp_path) -> None:
    sink = FileSink(tmp_path / "out.flac", 24_000, "max", 0.999)
    blocks = [torch.linspace(-0.1, 0.2, 1000), torch.linspace(0.2, -0.5, 3000)]
    for block in blocks:
        sink.write(block)
    path = sink.close()
    data, rate = sf.read(path, dtype="float32")
    expected = torch.cat(blocks) / 0.5 * 0.999
    assert rate == 24_000 and data.shape == (4000,)
    assert np.abs(data - expected.numpy()).max() < 1e-4  # 16-bit FLAC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.flac"]  # no scratch files left
    discarded = FileSink(tmp_path / "never.wav", 16_000)
    discarded.write(torch.ones(10))
    discarded.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.flac"]
    memory = MemorySink("prompt", 0.5)
    memory.write(torch.tensor([0.25, -1.0]))
    assert torch.equal(memory.close(), torch.tensor([0.125, -0.5]))
    with pytest.raises(AudioError, match="extension"):
        FileSink(tmp_path / "out.xyz", 16_000)
