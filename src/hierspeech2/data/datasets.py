"""Datasets over a feature cache (or a litdata streaming dataset) and their collate functions.

Each model has an *example builder* (raw cached tensors → one training example) shared by the
map-style datasets over :class:`~hierspeech2.data.cache.FeatureCache` and by the streaming
datasets, and a collate function (examples → the batch types of :mod:`hierspeech2.data.batch`).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset

from hierspeech2.audio import LinearSpectrogram, LogMelSpectrogram, resample
from hierspeech2.constants import F0_FRAMES_PER_HOP, HOP_LENGTH, MODEL_SAMPLE_RATE
from hierspeech2.data.batch import BackboneBatch, SpeechSRBatch, TTVBatch, pad_stack
from hierspeech2.data.cache import CacheRecord, FeatureCache

__all__ = [
    "BackboneDataset",
    "BackboneExamples",
    "CachedDataset",
    "SpeechSRDataset",
    "SpeechSRExamples",
    "TTVDataset",
    "TTVExamples",
    "UtteranceFilter",
    "collate_backbone",
    "collate_speechsr",
    "collate_ttv",
]

# Official TTV file-list rules (ttv_v1/preprocessing/prepare_filelist.py).
MIN_FRAMES = 32
MAX_FRAMES = 600  # 600 hops = 192 000 samples, the TTV segment size
MAX_PHONEMES = 200
BACKBONE_SEGMENT_SAMPLES = 61_440  # hierspeechpp_eng_kor config: 192 frames
SPEECHSR_SEGMENT_SAMPLES = 9_600  # speechsr24k/48k configs, at the target rate


@dataclass(frozen=True)
class UtteranceFilter:
    """Which cached utterances a dataset keeps; the defaults are the official TTV rules.

    ``tokens_fit_frames`` drops utterances with more tokens (blanks included) than frames, which
    monotonic alignment cannot align (official: ``2 * phonemes + 1 > frames``).
    """

    min_frames: int = MIN_FRAMES
    max_frames: int | None = MAX_FRAMES
    max_phonemes: int | None = MAX_PHONEMES
    min_phonemes: int = 1
    require_voiced: bool = True
    tokens_fit_frames: bool = True

    def reason(self, num_frames: int, num_tokens: int = 0, voiced_frames: int = 1) -> str | None:
        """Why an utterance is left out, or None when it is kept."""
        if num_frames < self.min_frames:
            return f"shorter than {self.min_frames} frames"
        if self.max_frames is not None and num_frames > self.max_frames:
            return f"longer than {self.max_frames} frames"
        if self.require_voiced and voiced_frames <= 0:
            return "no voiced F0 frame"
        if self.max_phonemes is not None:
            phonemes = (num_tokens - 1) // 2
            if phonemes < self.min_phonemes or phonemes > self.max_phonemes:
                return f"{phonemes} phonemes, outside {self.min_phonemes}..{self.max_phonemes}"
            if self.tokens_fit_frames and num_tokens > num_frames:
                return f"{num_tokens} tokens for {num_frames} frames"
        return None

    def keeps(self, record: CacheRecord) -> bool:
        return self.reason(record.num_frames, record.num_tokens, record.voiced_frames) is None


TTV_FILTER = UtteranceFilter()
BACKBONE_FILTER = UtteranceFilter(max_frames=None, max_phonemes=None)
SPEECHSR_FILTER = UtteranceFilter(min_frames=0, max_frames=None, max_phonemes=None, require_voiced=False)


def _pcm_to_float(audio: Tensor) -> Tensor:
    return audio.float() / 32768.0 if audio.dtype == torch.int16 else audio.float()


def _as_tensor(value) -> Tensor:
    return value if isinstance(value, Tensor) else torch.as_tensor(value)


# ------------------------------------------------------------------------------------ examples


class TTVExamples:
    """Raw cached tensors → a TTV example: the whole utterance, as the official loader gives it."""

    def __init__(self) -> None:
        self.mel = LogMelSpectrogram()

    @torch.no_grad()
    def __call__(self, raw: dict) -> dict[str, Tensor]:
        audio = _pcm_to_float(_as_tensor(raw["audio"]))
        semantic = _as_tensor(raw["semantic"]).float()
        frames = semantic.shape[-1]
        audio = audio[: frames * HOP_LENGTH]
        return {
            "tokens": _as_tensor(raw["tokens"]).long(),
            "semantic": semantic,
            "f0": _as_tensor(raw["f0"]).float()[: frames * F0_FRAMES_PER_HOP],
            "mel": self.mel(audio),
            "audio": audio,
        }


class BackboneExamples:
    """Raw cached tensors → a backbone example: a random frame-aligned segment of ``segment_samples``.

    ``random_segment=False`` takes the segment from the start (validation). ``perturb`` (audio
    ``[N]`` → ``[N]``) adds ``perturbed_audio``, the input of the perturbed MMS path.
    """

    def __init__(
        self,
        segment_samples: int = BACKBONE_SEGMENT_SAMPLES,
        random_segment: bool = True,
        perturb: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if segment_samples % HOP_LENGTH:
            raise ValueError(f"segment_samples must be a multiple of {HOP_LENGTH}, got {segment_samples}")
        self.segment_frames = segment_samples // HOP_LENGTH
        self.random_segment = random_segment
        self.perturb = perturb
        self.mel = LogMelSpectrogram()
        self.linear = LinearSpectrogram()

    @torch.no_grad()
    def __call__(self, raw: dict) -> dict[str, Tensor]:
        semantic = _as_tensor(raw["semantic"]).float()
        frames = semantic.shape[-1]
        length = min(frames, self.segment_frames)
        start = random.randint(0, frames - length) if self.random_segment else 0
        audio = _pcm_to_float(_as_tensor(raw["audio"]))[start * HOP_LENGTH : (start + length) * HOP_LENGTH]
        f0 = _as_tensor(raw["f0"]).float()[start * F0_FRAMES_PER_HOP : (start + length) * F0_FRAMES_PER_HOP]
        example = {
            "audio": audio,
            "linear": self.linear(audio),
            "mel": self.mel(audio),
            "semantic": semantic[:, start : start + length],
            "f0": f0,
        }
        if self.perturb is not None:
            example["perturbed_audio"] = self.perturb(audio)
        return example


class SpeechSRExamples:
    """Raw cached target-rate audio → a (16 kHz, target) pair of ``segment_samples`` target samples."""

    def __init__(
        self,
        target_rate: int = 48_000,
        segment_samples: int = SPEECHSR_SEGMENT_SAMPLES,
        random_segment: bool = True,
    ) -> None:
        # Segments start and end on samples that exist at both rates (every 3 at 48 kHz, 3 at 24 kHz).
        self.step = target_rate // math.gcd(target_rate, MODEL_SAMPLE_RATE)
        if segment_samples % self.step:
            raise ValueError(f"segment_samples must be a multiple of {self.step} at {target_rate} Hz")
        self.target_rate = target_rate
        self.segment_samples = segment_samples
        self.random_segment = random_segment

    @torch.no_grad()
    def __call__(self, raw: dict) -> dict[str, Tensor]:
        audio = _pcm_to_float(_as_tensor(raw["audio"]))
        usable = audio.shape[-1] // self.step * self.step
        length = min(usable, self.segment_samples)
        start = random.randint(0, (usable - length) // self.step) * self.step if self.random_segment else 0
        high = audio[start : start + length]
        low = resample(high, self.target_rate, MODEL_SAMPLE_RATE)
        return {"high_rate": high, "low_rate": low}


# ------------------------------------------------------------------------------------ collation


def collate_ttv(examples: Sequence[dict[str, Tensor]]) -> TTVBatch:
    """TTV examples → :class:`TTVBatch` (padded with zeros; lengths say what is real)."""
    frames = torch.tensor([e["semantic"].shape[-1] for e in examples])
    max_frames = int(frames.max())
    return TTVBatch(
        tokens=pad_stack([e["tokens"] for e in examples]),
        token_lengths=torch.tensor([e["tokens"].shape[-1] for e in examples]),
        semantic=pad_stack([e["semantic"] for e in examples], max_frames),
        f0=pad_stack([e["f0"] for e in examples], max_frames * F0_FRAMES_PER_HOP).unsqueeze(1),
        mel=pad_stack([e["mel"] for e in examples], max_frames),
        audio=pad_stack([e["audio"] for e in examples], max_frames * HOP_LENGTH).unsqueeze(1),
        semantic_lengths=frames,
    )


def collate_backbone(examples: Sequence[dict[str, Tensor]]) -> BackboneBatch:
    """Backbone examples → :class:`BackboneBatch`."""
    frames = torch.tensor([e["semantic"].shape[-1] for e in examples])
    max_frames = int(frames.max())
    perturbed = None
    if all("perturbed_audio" in e for e in examples):
        perturbed = pad_stack([e["perturbed_audio"] for e in examples], max_frames * HOP_LENGTH).unsqueeze(1)
    return BackboneBatch(
        audio=pad_stack([e["audio"] for e in examples], max_frames * HOP_LENGTH).unsqueeze(1),
        linear=pad_stack([e["linear"] for e in examples], max_frames),
        mel=pad_stack([e["mel"] for e in examples], max_frames),
        semantic=pad_stack([e["semantic"] for e in examples], max_frames),
        f0=pad_stack([e["f0"] for e in examples], max_frames * F0_FRAMES_PER_HOP).unsqueeze(1),
        frame_lengths=frames,
        perturbed_audio=perturbed,
    )


def collate_speechsr(examples: Sequence[dict[str, Tensor]]) -> SpeechSRBatch:
    """SpeechSR examples → :class:`SpeechSRBatch`."""
    return SpeechSRBatch(
        low_rate=pad_stack([e["low_rate"] for e in examples]).unsqueeze(1),
        high_rate=pad_stack([e["high_rate"] for e in examples]).unsqueeze(1),
        low_rate_lengths=torch.tensor([e["low_rate"].shape[-1] for e in examples]),
        high_rate_lengths=torch.tensor([e["high_rate"].shape[-1] for e in examples]),
    )


# ------------------------------------------------------------------------------------ datasets


class CachedDataset(Dataset):
    """Map-style dataset over the records of a feature cache, through an example builder.

    ``lengths`` (frames, or samples for SpeechSR) feed :class:`~hierspeech2.data.samplers.BucketBatchSampler`.
    """

    def __init__(
        self,
        cache: FeatureCache | str | os.PathLike,
        records: Sequence[CacheRecord],
        examples: Callable[[dict], dict[str, Tensor]],
    ) -> None:
        self.cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        self.records = list(records)
        self.examples = examples

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.examples(self.cache.load(self.records[index]))

    @property
    def lengths(self) -> list[int]:
        return [record.num_frames or record.num_samples for record in self.records]


def _select(
    cache: FeatureCache, records: Sequence[CacheRecord] | None, keep: UtteranceFilter
) -> list[CacheRecord]:
    records = cache.records() if records is None else records
    return [record for record in records if keep.keeps(record)]


def _require_model(cache: FeatureCache, expected: str) -> None:
    config = cache.read_config() or {}
    if config.get("model") not in (None, expected):
        raise ValueError(
            f"{cache.root} holds {config['model']} features; preprocess the corpus with --model {expected}"
        )


class TTVDataset(CachedDataset):
    """Whole utterances for the text-to-vec model, filtered by the official rules by default."""

    def __init__(
        self,
        cache: FeatureCache | str | os.PathLike,
        records: Sequence[CacheRecord] | None = None,
        keep: UtteranceFilter = TTV_FILTER,
    ) -> None:
        cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        _require_model(cache, "ttv")
        super().__init__(cache, _select(cache, records, keep), TTVExamples())


class BackboneDataset(CachedDataset):
    """Random ``segment_samples`` segments for the backbone (TTV caches work too: same features)."""

    def __init__(
        self,
        cache: FeatureCache | str | os.PathLike,
        records: Sequence[CacheRecord] | None = None,
        keep: UtteranceFilter = BACKBONE_FILTER,
        segment_samples: int = BACKBONE_SEGMENT_SAMPLES,
        random_segment: bool = True,
        perturb: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        config = cache.read_config() or {}
        if config.get("model") == "speechsr":
            raise ValueError(f"{cache.root} holds SpeechSR audio only; preprocess with --model backbone")
        examples = BackboneExamples(segment_samples, random_segment, perturb)
        super().__init__(cache, _select(cache, records, keep), examples)


class SpeechSRDataset(CachedDataset):
    """(16 kHz, target-rate) segment pairs made on the fly from a SpeechSR cache."""

    def __init__(
        self,
        cache: FeatureCache | str | os.PathLike,
        records: Sequence[CacheRecord] | None = None,
        keep: UtteranceFilter = SPEECHSR_FILTER,
        segment_samples: int = SPEECHSR_SEGMENT_SAMPLES,
        random_segment: bool = True,
    ) -> None:
        cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        _require_model(cache, "speechsr")
        target_rate = int((cache.read_config() or {}).get("sample_rate", 48_000))
        examples = SpeechSRExamples(target_rate, segment_samples, random_segment)
        super().__init__(cache, _select(cache, records, keep), examples)
        self.target_rate = target_rate
