"""LightningDataModules for the backbone, the text-to-vec model and SpeechSR.

``data_dir`` is a feature cache written by ``hierspeech2 preprocess`` (map-style datasets,
length-bucketed batches, validation split by speaker, id list or count) or a litdata streaming
dataset (a folder with ``index.json`` or an ``s3://`` URL; then ``val_dir`` names the
validation set, and filtering happened when it was written).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from hierspeech2.data.cache import CacheRecord, FeatureCache
from hierspeech2.data.datasets import (
    BACKBONE_FILTER,
    BACKBONE_SEGMENT_SAMPLES,
    MAX_FRAMES,
    MAX_PHONEMES,
    MIN_FRAMES,
    SPEECHSR_FILTER,
    SPEECHSR_SEGMENT_SAMPLES,
    BackboneDataset,
    BackboneExamples,
    SpeechSRDataset,
    SpeechSRExamples,
    TTVDataset,
    TTVExamples,
    UtteranceFilter,
    collate_backbone,
    collate_speechsr,
    collate_ttv,
)
from hierspeech2.data.samplers import BucketBatchSampler
from hierspeech2.data.streaming import is_streaming_dataset

__all__ = ["BackboneDataModule", "SpeechSRDataModule", "TTVDataModule", "split_records"]


def split_records(
    records: Sequence[CacheRecord],
    val_speakers: Sequence[str] = (),
    val_list: str | os.PathLike | None = None,
    val_size: int = 0,
) -> tuple[list[CacheRecord], list[CacheRecord]]:
    """(train, validation) records: validation = the given speakers, the ids listed one per line
    in ``val_list``, and ``val_size`` more utterances picked by a hash of their id (stable across runs)."""
    held = {record.id for record in records if record.speaker in set(val_speakers)}
    if val_list is not None:
        listed = {
            line.strip() for line in Path(val_list).read_text(encoding="utf-8").splitlines() if line.strip()
        }
        unknown = listed - {record.id for record in records}
        if unknown:
            raise ValueError(
                f"{val_list} lists {len(unknown)} ids that are not in the cache (e.g. {sorted(unknown)[:3]}); "
                "use the ids of manifest.jsonl"
            )
        held |= listed
    if val_size:
        rest = [record for record in records if record.id not in held]
        if val_size >= len(rest):
            raise ValueError(f"val_size={val_size} would leave no training data ({len(rest)} utterances)")
        rest.sort(key=lambda record: hashlib.sha1(record.id.encode()).hexdigest())
        held |= {record.id for record in rest[:val_size]}
    train = [record for record in records if record.id not in held]
    val = [record for record in records if record.id in held]
    if not train:
        raise ValueError("the validation split takes every utterance; hold out fewer speakers or ids")
    return train, val


class _FeatureDataModule(L.LightningDataModule):
    """Shared plumbing: split, datasets, bucketed loaders, streaming fallback."""

    collate: Callable

    def __init__(
        self,
        data_dir: str,
        batch_size: int,
        val_batch_size: int,
        num_workers: int,
        pin_memory: bool,
        persistent_workers: bool,
        val_speakers: Sequence[str],
        val_list: str | None,
        val_size: int,
        val_dir: str | None,
        bucket_batches: int,
        drop_last: bool,
        seed: int,
    ) -> None:
        super().__init__()
        self.data_dir = str(data_dir)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.val_speakers = tuple(val_speakers)
        self.val_list = val_list
        self.val_size = val_size
        self.val_dir = val_dir
        self.bucket_batches = bucket_batches
        self.drop_last = drop_last
        self.seed = seed
        self.train_dataset: Any = None
        self.val_dataset: Any = None

    # hooks the subclasses fill in
    def _cached_dataset(self, cache: FeatureCache, records: list[CacheRecord], training: bool) -> Any:
        raise NotImplementedError

    def _examples(self, training: bool) -> Callable[[dict], dict]:
        raise NotImplementedError

    @property
    def streaming(self) -> bool:
        return is_streaming_dataset(self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        if self.streaming:
            from hierspeech2.data.streaming import open_streaming_dataset

            self.train_dataset = open_streaming_dataset(
                self.data_dir, shuffle=True, seed=self.seed, drop_last=True, transform=self._examples(True)
            )
            if self.val_dir:
                self.val_dataset = open_streaming_dataset(
                    self.val_dir, shuffle=False, transform=self._examples(False)
                )
            return
        cache = FeatureCache(self.data_dir)
        train, val = split_records(cache.records(), self.val_speakers, self.val_list, self.val_size)
        self.train_dataset = self._cached_dataset(cache, train, training=True)
        if not len(self.train_dataset):
            raise ValueError(
                f"no utterance of {self.data_dir} passes the filters ({len(train)} before filtering); "
                "check the cache's manifest.jsonl against the filter settings"
            )
        if val:
            self.val_dataset = self._cached_dataset(cache, val, training=False)

    def _loader_options(self) -> dict:
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
            "collate_fn": type(self).collate,
        }

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        if self.streaming:
            from litdata import StreamingDataLoader

            return StreamingDataLoader(
                self.train_dataset,
                batch_size=self.batch_size,
                drop_last=self.drop_last,
                **self._loader_options(),
            )
        generator = torch.Generator().manual_seed(self.seed)
        sampler = BucketBatchSampler(
            RandomSampler(self.train_dataset, generator=generator),
            self.batch_size,
            self.drop_last,
            lengths=self.train_dataset.lengths,
            bucket_batches=self.bucket_batches,
            seed=self.seed,
        )
        return DataLoader(self.train_dataset, batch_sampler=sampler, **self._loader_options())

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        if self.val_dataset is None:
            return []
        if self.streaming:
            from litdata import StreamingDataLoader

            return StreamingDataLoader(
                self.val_dataset, batch_size=self.val_batch_size, **self._loader_options()
            )
        sampler = BucketBatchSampler(
            SequentialSampler(self.val_dataset),
            self.val_batch_size,
            lengths=self.val_dataset.lengths,
            shuffle_batches=False,
        )
        return DataLoader(self.val_dataset, batch_sampler=sampler, **self._loader_options())


class TTVDataModule(_FeatureDataModule):
    """Text-to-vec batches (:class:`~hierspeech2.data.batch.TTVBatch`): whole utterances, official filters.

    Defaults follow ``ttv_libritts_v1``: the official rules keep 32–600 frames, 1–200 phonemes,
    no more tokens than frames and at least one voiced F0 frame.
    """

    collate = staticmethod(collate_ttv)

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 32,
        val_batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        min_frames: int = MIN_FRAMES,
        max_frames: int = MAX_FRAMES,
        max_phonemes: int = MAX_PHONEMES,
        require_voiced: bool = True,
        val_speakers: Sequence[str] = (),
        val_list: str | None = None,
        val_size: int = 0,
        val_dir: str | None = None,
        bucket_batches: int = 32,
        drop_last: bool = True,
        seed: int = 1234,
    ) -> None:
        super().__init__(
            data_dir, batch_size, val_batch_size, num_workers, pin_memory, persistent_workers,
            val_speakers, val_list, val_size, val_dir, bucket_batches, drop_last, seed,
        )  # fmt: skip
        self.save_hyperparameters()
        self.keep = UtteranceFilter(
            min_frames=min_frames,
            max_frames=max_frames,
            max_phonemes=max_phonemes,
            require_voiced=require_voiced,
        )

    def _examples(self, training: bool) -> Callable[[dict], dict]:
        return TTVExamples()

    def _cached_dataset(self, cache: FeatureCache, records: list[CacheRecord], training: bool) -> TTVDataset:
        return TTVDataset(cache, records, keep=self.keep)


class BackboneDataModule(_FeatureDataModule):
    """Backbone batches (:class:`~hierspeech2.data.batch.BackboneBatch`): random 61 440-sample segments.

    Works on backbone and TTV caches. ``perturb`` (16 kHz audio ``[N]`` → ``[N]``) fills
    ``perturbed_audio``; None leaves it out.
    """

    collate = staticmethod(collate_backbone)

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 20,
        val_batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        segment_samples: int = BACKBONE_SEGMENT_SAMPLES,
        min_frames: int = BACKBONE_FILTER.min_frames,
        require_voiced: bool = True,
        perturb: Callable | None = None,
        val_speakers: Sequence[str] = (),
        val_list: str | None = None,
        val_size: int = 0,
        val_dir: str | None = None,
        bucket_batches: int = 32,
        drop_last: bool = True,
        seed: int = 1234,
    ) -> None:
        super().__init__(
            data_dir, batch_size, val_batch_size, num_workers, pin_memory, persistent_workers,
            val_speakers, val_list, val_size, val_dir, bucket_batches, drop_last, seed,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["perturb"])
        self.segment_samples = segment_samples
        self.perturb = perturb
        self.keep = UtteranceFilter(
            min_frames=min_frames, max_frames=None, max_phonemes=None, require_voiced=require_voiced
        )

    def _examples(self, training: bool) -> Callable[[dict], dict]:
        return BackboneExamples(self.segment_samples, random_segment=training, perturb=self.perturb)

    def _cached_dataset(
        self, cache: FeatureCache, records: list[CacheRecord], training: bool
    ) -> BackboneDataset:
        return BackboneDataset(
            cache, records, keep=self.keep, segment_samples=self.segment_samples,
            random_segment=training, perturb=self.perturb,
        )  # fmt: skip


class SpeechSRDataModule(_FeatureDataModule):
    """SpeechSR batches (:class:`~hierspeech2.data.batch.SpeechSRBatch`): 9 600-sample target segments
    and their 16 kHz versions (torchaudio's Kaiser-window resampler), made on the fly."""

    collate = staticmethod(collate_speechsr)

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 32,
        val_batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        segment_samples: int = SPEECHSR_SEGMENT_SAMPLES,
        target_rate: int | None = None,
        val_speakers: Sequence[str] = (),
        val_list: str | None = None,
        val_size: int = 0,
        val_dir: str | None = None,
        bucket_batches: int = 32,
        drop_last: bool = True,
        seed: int = 1234,
    ) -> None:
        super().__init__(
            data_dir, batch_size, val_batch_size, num_workers, pin_memory, persistent_workers,
            val_speakers, val_list, val_size, val_dir, bucket_batches, drop_last, seed,
        )  # fmt: skip
        self.save_hyperparameters()
        self.segment_samples = segment_samples
        self.target_rate = target_rate

    def _examples(self, training: bool) -> Callable[[dict], dict]:
        if self.target_rate is None:
            raise ValueError(
                "give target_rate (24000 or 48000) when training SpeechSR from a streaming dataset"
            )
        return SpeechSRExamples(self.target_rate, self.segment_samples, random_segment=training)

    def _cached_dataset(
        self, cache: FeatureCache, records: list[CacheRecord], training: bool
    ) -> SpeechSRDataset:
        dataset = SpeechSRDataset(
            cache,
            records,
            keep=SPEECHSR_FILTER,
            segment_samples=self.segment_samples,
            random_segment=training,
        )
        if self.target_rate is not None and dataset.target_rate != self.target_rate:
            raise ValueError(
                f"{cache.root} holds {dataset.target_rate} Hz audio, but target_rate={self.target_rate}; "
                f"preprocess with --model speechsr --target-rate {self.target_rate}"
            )
        return dataset
