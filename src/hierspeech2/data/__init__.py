"""Corpora readers, preprocessing into a feature cache, datasets and Lightning datamodules.

Importing this package is cheap: the datamodules (Lightning) and litdata load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from hierspeech2.data.batch import BackboneBatch, SpeechSRBatch, TTVBatch
from hierspeech2.data.corpora import Utterance, read_corpus, read_librilight, read_libritts, read_manifest
from hierspeech2.nn.functional import length_mask

__all__ = [
    "BackboneBatch",
    "BackboneDataModule",
    "BackboneDataset",
    "BucketBatchSampler",
    "FeatureCache",
    "LoaderOptions",
    "SpeechSRBatch",
    "SpeechSRDataModule",
    "SpeechSRDataset",
    "TTVBatch",
    "TTVDataModule",
    "TTVDataset",
    "Utterance",
    "length_mask",
    "preprocess",
    "read_corpus",
    "read_librilight",
    "read_libritts",
    "read_manifest",
]

_LAZY = {
    "BackboneDataModule": "datamodules",
    "LoaderOptions": "datamodules",
    "SpeechSRDataModule": "datamodules",
    "TTVDataModule": "datamodules",
    "BackboneDataset": "datasets",
    "SpeechSRDataset": "datasets",
    "TTVDataset": "datasets",
    "BucketBatchSampler": "samplers",
    "FeatureCache": "cache",
    "preprocess": "preprocess",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"hierspeech2.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hierspeech2.data' has no attribute {name!r}")
