import pytest
import torch

from hierspeech2.audio import LogMelSpectrogram, resample
from hierspeech2.data.cache import FeatureCache
from hierspeech2.data.datasets import (
    TTV_FILTER,
    BackboneDataset,
    SpeechSRDataset,
    TTVDataset,
    UtteranceFilter,
    collate_backbone,
    collate_speechsr,
    collate_ttv,
)
from hierspeech2.data.features import from_pcm16


@pytest.mark.parametrize(
    ("frames", "tokens", "voiced", "reason"),
    [
        (32, 11, 5, None),
        (31, 11, 5, "shorter than 32 frames"),
        (600, 401, 5, None),
        (601, 11, 5, "longer than 600 frames"),
        (500, 403, 5, "201 phonemes, outside 1..200"),
        (100, 1, 5, "0 phonemes, outside 1..200"),
        (100, 101, 5, "101 tokens for 100 frames"),
        (100, 11, 0, "no voiced F0 frame"),
    ],
)
def test_official_ttv_filter(frames, tokens, voiced, reason):
    assert TTV_FILTER.reason(frames, tokens, voiced) == reason


def test_ttv_examples_are_whole_utterances(ttv_cache):
    dataset = TTVDataset(ttv_cache)
    assert len(dataset) == 16
    example = dataset[0]
    record = dataset.records[0]
    frames = record.num_frames
    assert example["semantic"].shape == (32, frames) and example["semantic"].dtype == torch.float32
    assert example["f0"].shape == (4 * frames,) and example["audio"].shape == (320 * frames,)
    raw = FeatureCache(ttv_cache).load(record)
    torch.testing.assert_close(example["mel"], LogMelSpectrogram()(from_pcm16(raw["audio"])))
    assert example["mel"].shape == (80, frames)

    batch = collate_ttv([dataset[i] for i in range(3)])
    lengths = [dataset.records[i].num_frames for i in range(3)]
    assert batch.semantic_lengths.tolist() == lengths
    assert batch.semantic.shape == (3, 32, max(lengths)) and batch.f0.shape == (3, 1, 4 * max(lengths))
    assert batch.audio.shape == (3, 1, 320 * max(lengths)) and batch.mel.shape == (3, 80, max(lengths))
    assert batch.tokens.shape == (3, int(batch.token_lengths.max()))
    short = int(torch.tensor(lengths).argmin())
    assert batch.semantic[short, :, lengths[short] :].abs().sum() == 0  # zero padding
    assert (batch.semantic * batch.frame_mask).abs().sum() == batch.semantic.abs().sum()


def test_filters_drop_records(ttv_cache):
    keep = UtteranceFilter(max_frames=200)
    dataset = TTVDataset(ttv_cache, keep=keep)
    assert 0 < len(dataset) < 16 and all(r.num_frames <= 200 for r in dataset.records)


def test_backbone_segments_are_frame_aligned(backbone_cache):
    dataset = BackboneDataset(backbone_cache, segment_samples=19_200)
    torch.manual_seed(0)
    example = dataset[0]
    assert example["audio"].shape == (19_200,) and example["semantic"].shape == (32, 60)
    assert (
        example["f0"].shape == (240,)
        and example["linear"].shape == (641, 60)
        and example["mel"].shape == (80, 60)
    )
    # the segment's features are the cached features at the same offset
    raw = FeatureCache(backbone_cache).load(dataset.records[0])
    audio = from_pcm16(raw["audio"])
    start = next(
        s
        for s in range(0, audio.shape[0] - 19_200 + 1, 320)
        if torch.equal(audio[s : s + 19_200], example["audio"])
    )
    torch.testing.assert_close(
        example["semantic"], raw["semantic"][:, start // 320 : start // 320 + 60].float()
    )
    torch.testing.assert_close(example["f0"], raw["f0"][start // 80 : start // 80 + 240])
    perturbed = BackboneDataset(
        backbone_cache, segment_samples=19_200, random_segment=False, perturb=lambda a: -a
    )
    first = perturbed[0]
    assert torch.equal(first["audio"], audio[:19_200]) and torch.equal(
        first["perturbed_audio"], -audio[:19_200]
    )
    batch = collate_backbone([first, perturbed[1]])
    assert batch.perturbed_audio.shape == (2, 1, 19_200) and batch.frame_lengths.tolist() == [60, 60]


def test_speechsr_pairs_are_resampled_on_the_fly(speechsr_cache):
    dataset = SpeechSRDataset(speechsr_cache, random_segment=False)
    assert dataset.target_rate == 24_000 and len(dataset) == 16
    example = dataset[0]
    assert example["high_rate"].shape == (9_600,) and example["low_rate"].shape == (6_400,)
    torch.testing.assert_close(example["low_rate"], resample(example["high_rate"], 24_000, 16_000))
    batch = collate_speechsr([example, dataset[1]])
    assert batch.high_rate.shape == (2, 1, 9_600) and batch.low_rate.shape == (2, 1, 6_400)
    assert batch.high_rate_lengths.tolist() == [9_600, 9_600]
    with pytest.raises(ValueError, match="multiple of 3"):
        SpeechSRDataset(speechsr_cache, segment_samples=9_601)


def test_wrong_cache_kind_is_refused(speechsr_cache, backbone_cache):
    with pytest.raises(ValueError, match="preprocess the corpus with --model ttv"):
        TTVDataset(backbone_cache)
    with pytest.raises(ValueError, match="SpeechSR audio only"):
        BackboneDataset(speechsr_cache)
