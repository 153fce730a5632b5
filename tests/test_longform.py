"""Long-form and batched TTS with tiny random models: a 2 000-character chapter, batches vs one at a time."""

from __future__ import annotations

import pytest
import soundfile as sf
import tiny_models
import torch

from hierspeech2.audio import load_audio
from hierspeech2.errors import AudioFileNotFoundError, TextError
from hierspeech2.pipelines import TextToSpeech
from hierspeech2.pipelines.text_to_speech import FIRST_BLOCK_SECONDS
from hierspeech2.text.segment import split_text

RATE = 16_000
PARAGRAPH = (
    "Mr. Smith went to Washington on Jan. 5th, 1901, with $3.50 in his pocket. “It’s a fine day,” he said… "
    "Dr. Jones (the vet) disagreed; prices had risen 50% since 1899! "
)
CHAPTER = "\n\n".join([PARAGRAPH * 2] * 6)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def prompts(shared_dir) -> list[torch.Tensor]:
    return [load_audio(shared_dir / "audio" / f"reference_{i}.wav") for i in (2, 3)]


def deterministic_tts(**options) -> TextToSpeech:
    return TextToSpeech(
        tiny_models.ttv(),
        tiny_models.backbone(),
        output_rate=RATE,
        noise_scale_ttv=0.0,
        noise_scale_vc=0.0,
        noise_scale_w=0.0,
        **options,
    )


def zero_runs(audio: torch.Tensor) -> list[int]:
    """Lengths of the runs of exact zeros (the pauses between pieces)."""
    padded = torch.cat([torch.ones(1), audio, torch.ones(1)])
    edges = torch.diff((padded == 0).int())
    return (torch.nonzero(edges == -1).flatten() - torch.nonzero(edges == 1).flatten()).tolist()


def test_chapter_of_2000_characters_from_one_prompt_encoding(prompts, tmp_path, capsys) -> None:
    assert len(CHAPTER) >= 2000
    pieces = split_text(CHAPTER)
    tts = deterministic_tts(batch_size=16)
    encodings, prompt_rows, ttv_rows = [], [], []
    encode, convert, infer = tts.encode_prompt, tts.backbone.voice_conversion, tts.ttv.infer_with_lengths
    tts.encode_prompt = lambda *a, **k: encodings.append(1) or encode(*a, **k)
    tts.backbone.voice_conversion = lambda *a, **k: prompt_rows.append(a[2]) or convert(*a, **k)
    tts.ttv.infer_with_lengths = lambda tokens, *a, **k: (
        ttv_rows.append(tokens.shape[0]) or infer(tokens, *a, **k)
    )
    try:
        with pytest.warns(UserWarning, match="pieces lost symbols"):  # "(" and ")": one summary warning
            path = tts.synthesize_to_file(
                CHAPTER, (prompts[0], RATE), tmp_path / "chapter.flac", progress=True
            )
    finally:
        del tts.encode_prompt, tts.backbone.voice_conversion, tts.ttv.infer_with_lengths
    audio, rate = sf.read(path, dtype="float32")
    assert rate == RATE and 0.99 < abs(audio).max() <= 1.0
    assert encodings == [1]  # the prompt was loaded, denoised and encoded once
    assert ttv_rows == [16, 16, len(pieces) - 32]  # pieces go through the text-to-vec model in batches
    first = prompt_rows[0][:2]
    assert all(torch.equal(rows.reshape(-1, 2, *rows.shape[1:])[i], first)
               for rows in prompt_rows for i in range(rows.shape[0] // 2))  # fmt: skip
    # (above: one voice throughout)
    pauses = [run for run in zero_runs(torch.from_numpy(audio)) if run >= 0.1 * RATE]
    assert len(pauses) >= len(pieces) - 1  # every piece is followed by its pause (paragraphs: longer ones)
    assert sum(run >= 0.6 * RATE for run in pauses) >= 5
    assert "piece" in capsys.readouterr().err  # the progress bar counts pieces


def test_batched_tts_equals_one_at_a_time_and_bad_jobs_fail_alone(prompts, tmp_path) -> None:
    sf.write(tmp_path / "voice.wav", prompts[1].numpy(), RATE)
    texts = ["Hello there.", "The quick brown fox jumps over the lazy dog, twice.", "Yes? No! Maybe…"]
    jobs = [
        (texts[0], (prompts[0], RATE), None),
        ("", (prompts[0], RATE), None),
        (texts[1], tmp_path / "voice.wav", tmp_path / "fox.wav"),
        (texts[2], tmp_path / "missing.wav", None),
        (texts[2], (prompts[0], RATE), None),
    ]
    tts = deterministic_tts(batch_size=8)
    results = tts.synthesize_many(jobs)
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert isinstance(results[1].error, TextError) and isinstance(results[3].error, AudioFileNotFoundError)
    for result, (text, prompt, _) in zip(results, jobs):
        if not result.ok:
            continue
        alone, _ = tts(text, prompt[0] if isinstance(prompt, tuple) else prompt, prompt_rate=RATE)
        got = (
            result.audio
            if result.path is None
            else torch.from_numpy(sf.read(result.path, dtype="float32")[0])
        )
        tolerance = 1e-4 if result.path is None else 1 / 2**15 + 1e-4  # 16-bit WAV
        assert got.shape == alone.shape and (got - alone).abs().max().item() <= tolerance


def test_stream_yields_pieces_in_order_with_a_short_first_piece(prompts) -> None:
    tts = deterministic_tts()
    pieces = tts._stream_pieces(PARAGRAPH, "en", 30)
    assert len(pieces[0][0].text) <= 30 and len(pieces) > len(split_text(PARAGRAPH))
    assert " ".join(piece.text for piece, _ in pieces).split() == PARAGRAPH.split()
    blocks = list(
        tts.stream(PARAGRAPH, prompts[0], prompt_rate=RATE, first_piece_chars=30, first_block_seconds=None)
    )
    speech = blocks[0::2]
    assert len(speech) == len(pieces) and len(blocks) == 2 * len(pieces) - 1
    assert all(block.abs().max() == 0 for block in blocks[1::2])  # the pauses
    assert max(float(block.abs().max()) for block in speech) <= 0.999 + 1e-6
    # the first piece as spoken alone from its tokens (same prompt, no noise, the same peak gain),
    # but for the 5 ms fades at its edges
    alone = tts.synthesize_from_tokens(pieces[0][1], tts.encode_prompt(prompts[0], RATE).mel)
    first, edge = blocks[0], round(0.005 * RATE)
    torch.testing.assert_close(first[edge:-edge], alone[edge:-edge], atol=1e-5, rtol=0)


def test_stream_renders_pieces_in_growing_windows_that_join_to_the_whole(prompts) -> None:
    tts = deterministic_tts(scale_norm="none")  # no gain: block and piece peaks differ
    windowed = list(tts.stream(PARAGRAPH, prompts[0], prompt_rate=RATE, first_piece_chars=30))
    whole = list(
        tts.stream(PARAGRAPH, prompts[0], prompt_rate=RATE, first_piece_chars=30, first_block_seconds=None)
    )
    # the first block: the first window's core less half a cross-fade (held back to blend the next)
    assert windowed[0].numel() == round((FIRST_BLOCK_SECONDS - 0.08) * RATE) < whole[0].numel() / 2
    assert len(windowed) > len(whole)
    joined, alone = torch.cat(windowed), torch.cat(whole)
    assert joined.shape == alone.shape
    # no noise: the windows (0.24 s of context each side) rebuild the whole rendering
    difference = (joined - alone).abs().max().item()
    print(f"windowed stream vs whole pieces: max |diff| {difference:.2e}, peak {alone.abs().max():.3f}")
    assert difference < 5e-3 * alone.abs().max()  # a window off by one frame would miss by ~ the peak
    with pytest.raises(ValueError, match="first_block_seconds must be a positive number"):
        next(tts.stream(PARAGRAPH, prompts[0], prompt_rate=RATE, first_block_seconds=0.0))


def test_stream_is_reproducible_and_refuses_unwritable_text_before_audio(prompts) -> None:
    tts = TextToSpeech(tiny_models.ttv(), tiny_models.backbone(), output_rate=RATE)
    first = torch.cat(list(tts.stream(PARAGRAPH, prompts[0], prompt_rate=RATE, seed=3)))
    again = torch.cat(list(tts.stream(PARAGRAPH, prompts[0], prompt_rate=RATE, seed=3)))
    assert torch.equal(first, again)
    with pytest.raises(TextError):
        next(tts.stream("   ", prompts[0], prompt_rate=RATE))
    with pytest.raises(ValueError, match="first_piece_chars"):
        next(tts.stream(PARAGRAPH, prompts[0], prompt_rate=RATE, first_piece_chars=0))
