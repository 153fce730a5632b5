"""Error rates by hand; ASR, speaker similarity and predicted MOS on real speech with offline models.

PocketSphinx (English ASR), Resemblyzer (GE2E speaker encoder) and DNSMOS ship their models in their
wheels; the transformers paths (Whisper aside) run on tiny random models saved here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hierspeech2.audio import load_audio, resample
from hierspeech2.evaluation import (
    character_error_rate,
    normalize_text,
    predicted_mos,
    speaker_embeddings,
    speaker_similarity,
    transcribe,
    word_error_rate,
)

SHARED_AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "audio"


@pytest.fixture(scope="module")
def utterances() -> list[tuple[torch.Tensor, str]]:
    if not SHARED_AUDIO.is_dir():
        pytest.skip(f"shared test utterances not found at {SHARED_AUDIO}")
    return [
        (load_audio(SHARED_AUDIO / f"reference_{i}.wav"), (SHARED_AUDIO / f"reference_{i}.txt").read_text())
        for i in range(1, 5)
    ]


def test_normalisation_is_the_fields():
    assert normalize_text("Don't STOP—now, “please”!") == "don't stop now please"
    assert normalize_text("  Ünïcode   ＦＵＬＬ width ") == "ünïcode full width"
    assert normalize_text("Mr. Smith has two dogs.", "whisper") == normalize_text(
        "mister smith has 2 dogs", "whisper"
    )
    assert normalize_text("Keep, As-Is.", "none") == "Keep, As-Is."
    with pytest.raises(ValueError, match="normalization must be one of"):
        normalize_text("x", "lower")  # type: ignore[arg-type]


def test_error_rates_by_hand():
    # one substitution + one deletion over 4 reference words
    assert word_error_rate("the cat sat", "The cat, sat down!") == pytest.approx(1 / 4)
    assert word_error_rate("a cat sat", "the cat sat down") == pytest.approx(2 / 4)
    # corpus level: (0 + 2) errors over (2 + 4) words, not the mean of 0 and 1/2
    assert word_error_rate(
        ["hello world", "a cat sat"], ["Hello, world.", "the cat sat down"]
    ) == pytest.approx(2 / 6)
    assert word_error_rate("", "three words here") == 1.0
    assert word_error_rate("one two three four", "one") == 3.0  # insertions can push past 1
    # CER counts characters with spaces: "abd" vs "abc d"-> edits: c deleted, space deleted = 2 / 5
    assert character_error_rate("abd", "abc d") == pytest.approx(2 / 5)
    assert character_error_rate("你好世界", "你好世间") == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty after normalisation"):
        word_error_rate("a", "?!")


def test_pocketsphinx_transcribes_real_speech_offline(utterances):
    audio = [wav for wav, _ in utterances]
    texts = [text for _, text in utterances]
    hypotheses = transcribe(audio, 16_000, "pocketsphinx")
    assert len(hypotheses) == 4 and all(hypothesis.split() for hypothesis in hypotheses)
    # The clips are 3 s cuts of longer LibriTTS sentences and PocketSphinx's generic model is weak:
    # scored against each clip's words only, its CER is high but it must hear speech, not noise.
    cut = [
        " ".join(normalize_text(text).split()[: len(hyp.split()) + 1]) for hyp, text in zip(hypotheses, texts)
    ]
    cer = character_error_rate(hypotheses, cut)
    print(f"PocketSphinx on the shared clips: WER {word_error_rate(hypotheses, cut):.2f}, CER {cer:.2f}")
    assert cer < 0.9
    # the rate is handled: the same clip given at 48 kHz is heard (almost) the same way
    at_48k = transcribe(resample(audio[0], 16_000, 48_000), 48_000, "pocketsphinx")
    assert word_error_rate(at_48k, hypotheses[0]) <= 0.25
    assert transcribe(audio[1], 16_000, "pocketsphinx", batch_size=1) == [hypotheses[1]]
    with pytest.raises(ValueError, match="English only"):
        transcribe(audio[0], 16_000, "pocketsphinx", language="fr")


def test_resemblyzer_scores_the_same_speaker_above_others(utterances):
    first_halves = [wav[..., :24_000] for wav, _ in utterances]
    second_halves = [wav[..., 24_000:] for wav, _ in utterances]
    a = speaker_embeddings(first_halves, 16_000, "resemblyzer")
    b = speaker_embeddings(second_halves, 16_000, "resemblyzer")
    assert a.shape == (4, 256) and torch.allclose(a.norm(dim=-1), torch.ones(4), atol=1e-5)
    similarity = a @ b.T
    same = similarity.diagonal()
    different = similarity.masked_fill(torch.eye(4, dtype=torch.bool), -1).amax(dim=1)
    assert (same > different + 0.05).all(), similarity
    pairwise = speaker_similarity(first_halves, second_halves, 16_000, "resemblyzer")
    torch.testing.assert_close(pairwise, same)
    upsampled = resample(second_halves[0], 16_000, 24_000)
    across_rates = speaker_similarity(first_halves[0], upsampled, 16_000, "resemblyzer", sample_rate_b=24_000)
    assert across_rates.item() == pytest.approx(same[0].item(), abs=0.02)


def test_dnsmos_prefers_clean_speech(utterances):
    clean = utterances[0][0]
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    scores = predicted_mos([clean, noisy.clamp(-1, 1)], 16_000)
    assert scores.shape == (2,) and ((scores > 1) & (scores < 5)).all()
    assert scores[0] > scores[1] + 0.5, scores
    with pytest.raises(ValueError, match="MOS model must be one of"):
        predicted_mos(clean, 16_000, "pesq")


@pytest.fixture(scope="module")
def tiny_ctc(tmp_path_factory) -> Path:
    from transformers import (
        HubertConfig,
        HubertForCTC,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Processor,
    )

    folder = tmp_path_factory.mktemp("tiny-hubert-ctc")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{char: 3 + i for i, char in enumerate("ABCDE")}}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    config = HubertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )  # fmt: skip
    torch.manual_seed(0)
    HubertForCTC(config).save_pretrained(folder)
    return folder


def test_ctc_transcriber_batches_like_one_at_a_time(tiny_ctc, utterances):
    audio = [utterances[0][0][..., :16_000], utterances[1][0][..., :32_000]]
    batched = transcribe(audio, 16_000, str(tiny_ctc), batch_size=2)
    single = [transcribe(wav, 16_000, str(tiny_ctc))[0] for wav in audio]
    # random weights leave near-ties between labels, so a few may flip with the padded batch's arithmetic
    assert character_error_rate(batched, single, "none") < 0.02
    assert all(set(text) <= set("ABCDE <unk>") for text in batched)


@pytest.fixture(scope="module")
def tiny_xvector(tmp_path_factory) -> Path:
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    folder = tmp_path_factory.mktemp("tiny-wavlm-sv")
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, return_attention_mask=True
    ).save_pretrained(folder)
    config = WavLMConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        tdnn_dim=(16, 16), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1), xvector_output_dim=12, num_buckets=32,
    )  # fmt: skip
    torch.manual_seed(0)
    WavLMForXVector(config).save_pretrained(folder)
    return folder


def test_xvector_encoder_gives_unit_embeddings(tiny_xvector, utterances):
    audio = [wav for wav, _ in utterances[:2]]
    embeddings = speaker_embeddings(audio, 16_000, str(tiny_xvector))
    assert embeddings.shape == (2, 12) and torch.allclose(embeddings.norm(dim=-1), torch.ones(2), atol=1e-5)
    self_similarity = speaker_similarity(audio, audio, 16_000, str(tiny_xvector))
    torch.testing.assert_close(self_similarity, torch.ones(2), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="2 waveforms in a but 1 in b"):
        speaker_similarity(audio, audio[:1], 16_000, str(tiny_xvector))
