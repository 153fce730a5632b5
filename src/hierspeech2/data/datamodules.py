"""LightningDataModules for the backbone, the text-to-vec model and SpeechSR.

``data_dir`` is a feature cache written by ``hierspeech2 preprocess`` (map-style datasets,
length-bucketed batches, validation split by speaker, id list or count) or a litdata streaming
dataset (a folder with ``index.json`` or an ``s3://`` URL; then ``val_dir`` names the
validation set, and filtering happened when it was written).

With ``corpus_dir`` set, ``prepare_data`` (Lightning calls it once per node, before ``setup``)
builds a missing cache from that corpus with the datamodule's preprocessing settings
(``semantic_encoder``, ``f0_extractor``, ``target_rate``), atomically: ``data_dir`` is then a
finished cache or absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from hierspeech2.constants import SEMANTIC_LAYER
from hierspeech2.data.cache import CacheRecord, FeatureCache
from hierspeech2.data.corpora import read_corpus, split_long_utterances
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
from hierspeech2.data.features import ModelKind, SemanticFeatures
from hierspeech2.data.preprocess import DEFAULT_MAX_SECONDS, build_cache
from hierspeech2.data.samplers import BucketBatchSampler
from hierspeech2.data.streaming import is_streaming_dataset
from hierspeech2.errors import DataNotFoundError, SettingError
from hierspeech2.text.tables import SYMBOLS_FILE, read_symbols

MMS_REPO_ID = "facebook/mms-300m"  # the semantic encoder of the released models (hidden state 7)

log = logging.getLogger(__name__)

__all__ = ["BackboneDataModule", "LoaderOptions", "SpeechSRDataModule", "TTVDataModule", "split_records"]


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
                f"{val_list} lists {len(unknown)} ids that are not in the cache "
                f"(e.g. {sorted(unknown)[:3]}); use the ids of manifest.jsonl"
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


@dataclass(frozen=True)
class LoaderOptions:
    """How a datamodule splits its feature cache and batches it: ``loader:`` in a recipe's data ``init_args``.

    Args:
        batch_size: training batch size (per device).
        val_batch_size: validation batch size.
        num_workers: DataLoader worker processes (0 loads in the training process).
        pin_memory: page-locked batches, for faster copies to a GPU.
        persistent_workers: keep the workers alive between epochs (only with ``num_workers`` > 0).
        val_speakers, val_list, val_size: the validation split of a feature cache, see
            :func:`split_records` (a streaming dataset is validated on ``val_dir`` instead).
        bucket_batches: batches per length-sorted window of :class:`BucketBatchSampler`.
        drop_last: drop the last incomplete training batch.
        seed: seed of the training order.
    """

    batch_size: int = 32
    val_batch_size: int = 1
    num_workers: int = 4
    pin_memory: bool = True
    persistent_workers: bool = True
    val_speakers: tuple[str, ...] = ()
    val_list: str | None = None
    val_size: int = 0
    bucket_batches: int = 32
    drop_last: bool = True
    seed: int = 1234

    def __post_init__(self) -> None:
        object.__setattr__(self, "val_speakers", tuple(self.val_speakers))

    @classmethod
    def coerce(cls, value: LoaderOptions | Mapping[str, Any]) -> LoaderOptions:
        """``value`` itself, or the options a mapping describes (as checkpoint hyper-parameters hold them)."""
        return value if isinstance(value, cls) else cls(**value)

    def dataloader_kwargs(self, collate_fn: Callable) -> dict[str, Any]:
        """The keywords every DataLoader of the datamodule shares."""
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
            "collate_fn": collate_fn,
        }


DEFAULT_LOADER = LoaderOptions()  # ttv_v1 and speechsr24k/48k: 32 per GPU
BACKBONE_LOADER = LoaderOptions(batch_size=20)  # hierspeechpp_eng_kor: 20 per GPU


class _FeatureDataModule(L.LightningDataModule):
    """Shared plumbing: cache building, split, datasets, bucketed loaders, streaming fallback."""

    collate: Callable
    model_kind: ModelKind  # the ``--model`` of ``hierspeech2 preprocess`` this datamodule reads

    def __init__(
        self,
        data_dir: str,
        loader: LoaderOptions | Mapping[str, Any],
        val_dir: str | None = None,
        corpus_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = str(data_dir)
        self.loader = LoaderOptions.coerce(loader)
        self.val_dir = val_dir
        self.corpus_dir = corpus_dir or None  # "" in a recipe means none
        self.train_dataset: Any = None
        self.val_dataset: Any = None

    def _save_settings(self, *unsaved: str) -> None:
        """``save_hyperparameters`` of the calling ``__init__`` without ``unsaved`` (modules).

        The loader options are kept as a plain dict, as the CLI's config holds them, so that
        checkpoints load with ``torch.load(weights_only=True)``.
        """
        frame = inspect.currentframe()
        self.save_hyperparameters(ignore=list(unsaved), frame=frame.f_back if frame is not None else None)
        if isinstance(self.hparams.get("loader"), LoaderOptions):
            self.save_hyperparameters(
                {"loader": json.loads(json.dumps(dataclasses.asdict(self.loader), default=str))}
            )

    # hooks the subclasses fill in
    def _cached_dataset(self, cache: FeatureCache, records: list[CacheRecord], training: bool) -> Any:
        raise NotImplementedError

    def _examples(self, training: bool) -> Callable[[dict], dict]:
        raise NotImplementedError

    def _semantic_features(self, device: str | torch.device = "cpu") -> SemanticFeatures | None:
        """The semantic encoder the cache is built with, on ``device`` (None: this cache needs none)."""
        return None

    def _preprocess_options(self) -> dict[str, Any]:
        """Keywords of :func:`~hierspeech2.data.preprocess.preprocess` beyond the semantic encoder."""
        return {}

    def _preprocess_command(self) -> str:
        """The ``hierspeech2 preprocess`` command line that makes ``data_dir``."""
        return f"hierspeech2 preprocess CORPUS --model {self.model_kind} --out {self.data_dir}"

    @property
    def streaming(self) -> bool:
        return is_streaming_dataset(self.data_dir)

    def prepare_data(self) -> None:
        """Build ``data_dir`` from ``corpus_dir`` when it holds no finished cache (once per node)."""
        if self.streaming:
            return
        cache = FeatureCache(self.data_dir)
        if cache.finished:
            self._warn_if_made_otherwise(cache)
            return
        if self.corpus_dir is None:
            raise DataNotFoundError(self._missing_cache_message(cache))
        if cache.root.is_dir() and any(cache.root.iterdir()):
            raise DataNotFoundError(
                f"{self.data_dir} holds an unfinished feature cache: finish it with "
                f"`{self._preprocess_command()}` (it resumes where it stopped) or delete it so that "
                f"corpus_dir {self.corpus_dir} rebuilds it"
            )
        corpus = Path(self.corpus_dir)
        if not corpus.exists():
            raise DataNotFoundError(
                f"corpus_dir {self.corpus_dir} not found (relative paths start at the working directory, "
                f"{Path.cwd()}): run from the folder the recipe expects or give an absolute path"
            )
        try:
            utterances = read_corpus(corpus)
        except (OSError, ValueError) as error:  # not a corpus layout, an unreadable manifest
            raise DataNotFoundError(f"cannot read corpus_dir {self.corpus_dir}: {error}") from error
        if self.model_kind != "ttv":  # as `hierspeech2 preprocess`: cut untranscribed long recordings
            utterances = split_long_utterances(utterances, DEFAULT_MAX_SECONDS)
        if not utterances:
            raise DataNotFoundError(f"corpus_dir {self.corpus_dir} holds no utterances")
        # the Trainer's device (its environment is set up before prepare_data): MMS-300m on a GPU
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        semantic = self._semantic_features(device)
        options = self._preprocess_options()
        if semantic is not None:
            options["semantic"] = semantic
        log.info("building the feature cache %s from %s", self.data_dir, self.corpus_dir)
        build_cache(
            utterances, self.data_dir, self.model_kind, num_workers=self.loader.num_workers, **options
        )

    def _missing_cache_message(self, cache: FeatureCache) -> str:
        state = "is an unfinished feature cache" if cache.config_path.is_file() else "holds no feature cache"
        return (
            f"{self.data_dir} {state}: make it with `{self._preprocess_command()}` (it resumes where it "
            "stopped), or set data.init_args.corpus_dir to build it before training"
        )

    def _warn_if_made_otherwise(self, cache: FeatureCache) -> None:
        """Warn when the cache was made with another semantic encoder than this datamodule builds with."""
        semantic = self._semantic_features() if self.corpus_dir is not None else None
        made_with = (cache.read_config() or {}).get("semantic")
        if semantic is None or made_with in (None, semantic.describe()):
            return
        log.warning(
            "%s was made with the semantic encoder %s, not %s as this datamodule would build it; "
            "delete it to rebuild it from %s",
            self.data_dir,
            made_with,
            semantic.describe(),
            self.corpus_dir,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        if self.streaming:
            from hierspeech2.data.streaming import open_streaming_dataset

            self.train_dataset = open_streaming_dataset(
                self.data_dir,
                shuffle=True,
                seed=self.loader.seed,
                drop_last=True,
                transform=self._examples(True),
            )
            if self.val_dir:
                self.val_dataset = open_streaming_dataset(
                    self.val_dir, shuffle=False, transform=self._examples(False)
                )
            return
        cache = FeatureCache(self.data_dir)
        if not cache.finished:
            raise DataNotFoundError(self._missing_cache_message(cache))
        loader = self.loader
        train, val = split_records(cache.records(), loader.val_speakers, loader.val_list, loader.val_size)
        self.train_dataset = self._cached_dataset(cache, train, training=True)
        if not len(self.train_dataset):
            raise ValueError(
                f"no utterance of {self.data_dir} passes the filters ({len(train)} before filtering); "
                "check the cache's manifest.jsonl against the filter settings"
            )
        if val:
            self.val_dataset = self._cached_dataset(cache, val, training=False)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        loader = self.loader
        options = loader.dataloader_kwargs(type(self).collate)
        if self.streaming:
            from litdata import StreamingDataLoader

            return StreamingDataLoader(
                self.train_dataset, batch_size=loader.batch_size, drop_last=loader.drop_last, **options
            )
        generator = torch.Generator().manual_seed(loader.seed)
        sampler = BucketBatchSampler(
            RandomSampler(self.train_dataset, generator=generator),
            loader.batch_size,
            loader.drop_last,
            lengths=self.train_dataset.lengths,
            bucket_batches=loader.bucket_batches,
            seed=loader.seed,
        )
        return DataLoader(self.train_dataset, batch_sampler=sampler, **options)

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        if self.val_dataset is None:
            return []
        batch_size, options = self.loader.val_batch_size, self.loader.dataloader_kwargs(type(self).collate)
        if self.streaming:
            from litdata import StreamingDataLoader

            return StreamingDataLoader(self.val_dataset, batch_size=batch_size, **options)
        sampler = BucketBatchSampler(
            SequentialSampler(self.val_dataset),
            batch_size,
            lengths=self.val_dataset.lengths,
            shuffle_batches=False,
        )
        return DataLoader(self.val_dataset, batch_sampler=sampler, **options)


class _SemanticCacheDataModule(_FeatureDataModule):
    """A datamodule whose ``prepare_data`` builds a cache with semantic features and F0 (TTV, backbone).

    These settings, which :class:`TTVDataModule` and :class:`BackboneDataModule` take by name (their
    ``cache_options``; recipes and the CLI list them with the subclass's own): ``val_dir`` (a separate
    validation cache or streaming dataset), ``corpus_dir`` (the corpus ``prepare_data`` builds
    ``data_dir`` from); ``semantic_encoder`` a Hub id or local transformers folder read to
    ``semantic_layer`` layers (default ``facebook/mms-300m`` layer 7), or a module such as
    :class:`~hierspeech2.ssl.RandomSemanticEncoder` (the tiny recipes); ``f0_extractor`` an F0 method of
    :data:`~hierspeech2.pitch.F0_METHODS` (training variant unless named, e.g. ``yaapt-inference``) or
    ``package.module:function``.
    """

    def __init__(
        self,
        data_dir: str,
        loader: LoaderOptions | Mapping[str, Any],
        val_dir: str | None = None,
        corpus_dir: str | None = None,
        semantic_encoder: str | nn.Module = MMS_REPO_ID,
        semantic_layer: int = SEMANTIC_LAYER,
        f0_extractor: str = "yaapt",
    ) -> None:
        super().__init__(data_dir, loader, val_dir, corpus_dir)
        self.semantic_encoder = semantic_encoder
        self.semantic_layer = semantic_layer
        self.f0_extractor = f0_extractor

    def _semantic_features(self, device: str | torch.device = "cpu") -> SemanticFeatures:
        encoder = self.semantic_encoder
        if isinstance(encoder, nn.Module):
            layer = getattr(encoder, "layer", self.semantic_layer)
            return SemanticFeatures(encoder, layer=layer, device=device)
        return SemanticFeatures(name_or_path=encoder, layer=self.semantic_layer, device=device)

    def _preprocess_options(self) -> dict[str, Any]:
        return {"f0_extractor": self.f0_extractor}

    def _preprocess_command(self) -> str:
        command = f"hierspeech2 preprocess CORPUS --model {self.model_kind} --out {self.data_dir}"
        if isinstance(self.semantic_encoder, str) and self.semantic_encoder != MMS_REPO_ID:
            command += f" --semantic-model {self.semantic_encoder}"
        if self.semantic_layer != SEMANTIC_LAYER:
            command += f" --semantic-layer {self.semantic_layer}"
        return command + ("" if self.f0_extractor == "yaapt" else f" --f0 {self.f0_extractor}")


class TTVDataModule(_SemanticCacheDataModule):
    """Text-to-vec batches (:class:`~hierspeech2.data.batch.TTVBatch`): whole utterances, official filters.

    Defaults follow ``ttv_libritts_v1``: the official rules keep 32–600 frames, 1–200 phonemes,
    no more tokens than frames and at least one voiced F0 frame. ``loader`` sets batches, workers
    and the validation split (:class:`LoaderOptions`). A cache built from ``corpus_dir`` maps text
    to ids of ``symbols`` (a ``symbols.json``; default: the released table), extended by the
    corpus's missing phonemes with ``extend_symbols``; the task checks that its model reads the
    table the cache was made with (:attr:`symbol_table`). ``cache_options``: the validation set,
    corpus, semantic encoder and F0 extractor, by name (see :class:`_SemanticCacheDataModule`).
    """

    collate = staticmethod(collate_ttv)
    model_kind = "ttv"

    def __init__(
        self,
        data_dir: str,
        loader: LoaderOptions = DEFAULT_LOADER,
        min_frames: int = MIN_FRAMES,
        max_frames: int = MAX_FRAMES,
        max_phonemes: int = MAX_PHONEMES,
        require_voiced: bool = True,
        symbols: str | None = None,
        extend_symbols: bool = False,
        **cache_options: Any,
    ) -> None:
        super().__init__(data_dir, loader, **cache_options)
        self._save_settings("semantic_encoder")
        self.symbols = symbols
        self.extend_symbols = extend_symbols
        self.keep = UtteranceFilter(
            min_frames=min_frames,
            max_frames=max_frames,
            max_phonemes=max_phonemes,
            require_voiced=require_voiced,
        )

    def _examples(self, training: bool) -> Callable[[dict], dict]:
        return TTVExamples()

    def _preprocess_options(self) -> dict[str, Any]:
        return super()._preprocess_options() | {
            "symbols": self.symbols,
            "extend_symbols": self.extend_symbols,
        }

    def _preprocess_command(self) -> str:
        command = super()._preprocess_command()
        command += f" --symbols {self.symbols}" if self.symbols else ""
        return command + (" --extend-symbols" if self.extend_symbols else "")

    @property
    def symbol_table(self) -> tuple[str, ...] | None:
        """The symbol table the cache's tokens index (its ``symbols.json``); None when unknown.

        A cache made before tables were recorded, or a streaming dataset, has none: its tokens index
        the released table.
        """
        if self.streaming:
            return None
        path = FeatureCache(self.data_dir).root / SYMBOLS_FILE
        return read_symbols(path) if path.is_file() else None

    def _cached_dataset(self, cache: FeatureCache, records: list[CacheRecord], training: bool) -> TTVDataset:
        return TTVDataset(cache, records, keep=self.keep)


class BackboneDataModule(_SemanticCacheDataModule):
    """Backbone batches (:class:`~hierspeech2.data.batch.BackboneBatch`): random 61 440-sample segments.

    Works on backbone and TTV caches. ``perturb`` (16 kHz audio ``[N]`` → ``[N]``) fills
    ``perturbed_audio``; None leaves it out. ``loader`` sets batches (20 per device by default,
    as official), workers and the validation split (:class:`LoaderOptions`). ``cache_options``: the
    validation set, corpus, semantic encoder and F0 extractor, by name (see
    :class:`_SemanticCacheDataModule`).
    """

    collate = staticmethod(collate_backbone)
    model_kind = "backbone"

    def __init__(
        self,
        data_dir: str,
        loader: LoaderOptions = BACKBONE_LOADER,
        segment_samples: int = BACKBONE_SEGMENT_SAMPLES,
        min_frames: int = BACKBONE_FILTER.min_frames,
        require_voiced: bool = True,
        perturb: Callable | None = None,
        **cache_options: Any,
    ) -> None:
        super().__init__(data_dir, loader, **cache_options)
        self._save_settings("perturb", "semantic_encoder")
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
    and their 16 kHz versions (torchaudio's Kaiser-window resampler), made on the fly. ``loader``
    sets batches, workers and the validation split (:class:`LoaderOptions`)."""

    collate = staticmethod(collate_speechsr)
    model_kind = "speechsr"

    def __init__(
        self,
        data_dir: str,
        loader: LoaderOptions = DEFAULT_LOADER,
        segment_samples: int = SPEECHSR_SEGMENT_SAMPLES,
        target_rate: int | None = None,
        val_dir: str | None = None,
        corpus_dir: str | None = None,
    ) -> None:
        super().__init__(data_dir, loader, val_dir, corpus_dir)
        self._save_settings()
        self.segment_samples = segment_samples
        self.target_rate = target_rate

    def _preprocess_options(self) -> dict[str, Any]:
        if self.target_rate is None:
            raise SettingError("give target_rate (24000 or 48000) to build a SpeechSR cache from corpus_dir")
        return {"target_rate": self.target_rate}

    def _preprocess_command(self) -> str:
        rate = self.target_rate or 48_000
        return f"hierspeech2 preprocess CORPUS --model speechsr --target-rate {rate} --out {self.data_dir}"

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
