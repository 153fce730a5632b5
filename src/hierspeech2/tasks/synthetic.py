"""Small synthetic datamodules: learnable fake batches for smoke tests, step-time measurements and CI.

They need no corpus, MMS model or F0 extractor: every item is generated from a seed,
with structure a model can learn (semantic frames derived from the tokens they align to,
audio made of a few harmonics), so a training loss falls within a few steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torchaudio.functional as AF
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..constants import F0_FRAMES_PER_HOP, F0_HOP, HOP_LENGTH, MODEL_SAMPLE_RATE
from ..data.datasets import collate_speechsr, collate_ttv

__all__ = ["SyntheticSpeechSRDataModule", "SyntheticTTVDataModule", "collate_speechsr", "collate_ttv"]


class _SyntheticTTVDataset(Dataset):
    def __init__(
        self,
        size: int,
        seed: int,
        n_vocab: int,
        semantic_channels: int,
        mel_channels: int,
        min_phonemes: int,
        max_phonemes: int,
    ) -> None:
        self.size, self.seed = size, seed
        self.n_vocab, self.semantic_channels, self.mel_channels = n_vocab, semantic_channels, mel_channels
        self.min_phonemes, self.max_phonemes = min_phonemes, max_phonemes
        table = torch.Generator().manual_seed(12345)
        # every phoneme has a fixed semantic vector, mel colour and pitch
        self.semantic_table = torch.randn(n_vocab, semantic_channels, generator=table)
        self.mel_table = torch.randn(n_vocab, mel_channels, generator=table) - 4.0
        self.f0_table = 100.0 + 150.0 * torch.rand(n_vocab, generator=table)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + index)
        count = int(torch.randint(self.min_phonemes, self.max_phonemes + 1, (1,), generator=gen))
        phonemes = torch.randint(1, self.n_vocab, (count,), generator=gen)
        tokens = torch.zeros(2 * count + 1, dtype=torch.long)
        tokens[1::2] = phonemes
        # at least 3 frames per phoneme: the interspersed blanks need frames too (tokens ≤ frames)
        durations = torch.randint(3, 6, (count,), generator=gen)
        frame_ids = torch.repeat_interleave(phonemes, durations)
        frames = frame_ids.shape[0]
        noise = 0.1 * torch.randn(self.semantic_channels, frames, generator=gen)
        semantic = self.semantic_table[frame_ids].T + noise
        mel = self.mel_table[frame_ids].T + 0.1 * torch.randn(self.mel_channels, frames, generator=gen)
        f0 = self.f0_table[frame_ids].repeat_interleave(F0_FRAMES_PER_HOP)
        time = torch.arange(frames * HOP_LENGTH) / MODEL_SAMPLE_RATE
        audio = 0.3 * torch.sin(2 * math.pi * f0.repeat_interleave(F0_HOP) * time)
        return {"tokens": tokens, "semantic": semantic, "mel": mel, "f0": f0, "audio": audio}


class _SyntheticDataModule(pl.LightningDataModule):
    """Loaders over a training and a validation set of generated items, batched by ``collate``."""

    collate: Callable[[list[dict[str, Tensor]]], Any]

    def __init__(self, batch_size: int, train_set: Dataset, val_set: Dataset) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.train_set, self.val_set = train_set, val_set

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, self.batch_size, shuffle=True, collate_fn=type(self).collate)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.batch_size, collate_fn=type(self).collate)


class SyntheticTTVDataModule(_SyntheticDataModule):
    """Fake :class:`TTVBatch` utterances: ``train_size`` items, ``val_size`` more for validation.

    Channel counts follow the model being trained (``semantic_channels``, ``mel_channels``,
    ``n_vocab``); the defaults fit the released TextToVec.
    """

    collate = staticmethod(collate_ttv)

    def __init__(
        self,
        batch_size: int = 4,
        train_size: int = 32,
        val_size: int = 4,
        n_vocab: int = 178,
        semantic_channels: int = 1024,
        mel_channels: int = 80,
        min_phonemes: int = 8,
        max_phonemes: int = 24,
        seed: int = 0,
    ) -> None:
        options = (n_vocab, semantic_channels, mel_channels, min_phonemes, max_phonemes)
        super().__init__(
            batch_size,
            _SyntheticTTVDataset(train_size, seed, *options),
            _SyntheticTTVDataset(val_size, seed + 1, *options),
        )


class _SyntheticSpeechSRDataset(Dataset):
    def __init__(self, size: int, seed: int, output_rate: int, segment: int, input_rate: int) -> None:
        self.size, self.seed = size, seed
        self.output_rate, self.segment, self.input_rate = output_rate, segment, input_rate

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + index)
        f0 = 80.0 + 200.0 * torch.rand(1, generator=gen)
        time = torch.arange(self.segment) / self.output_rate
        harmonics = torch.arange(1, 40)
        harmonics = harmonics[harmonics * f0 < self.output_rate / 2]
        amplitudes = torch.rand(harmonics.shape[0], generator=gen) / harmonics
        phases = 2 * math.pi * torch.rand(harmonics.shape[0], generator=gen)
        high = (
            amplitudes[:, None] * torch.sin(2 * math.pi * f0 * harmonics[:, None] * time + phases[:, None])
        ).sum(0)
        high = 0.5 * high / high.abs().max()
        low = AF.resample(high, self.output_rate, self.input_rate)
        return {"high_rate": high, "low_rate": low}


class SyntheticSpeechSRDataModule(_SyntheticDataModule):
    """Fake :class:`SpeechSRBatch` segments: harmonic tones at ``output_rate`` and their 16 kHz versions."""

    collate = staticmethod(collate_speechsr)

    def __init__(
        self,
        batch_size: int = 4,
        train_size: int = 32,
        val_size: int = 4,
        output_rate: int = 48000,
        segment: int = 9600,
        input_rate: int = MODEL_SAMPLE_RATE,
        seed: int = 0,
    ) -> None:
        options = (output_rate, segment, input_rate)
        super().__init__(
            batch_size,
            _SyntheticSpeechSRDataset(train_size, seed, *options),
            _SyntheticSpeechSRDataset(val_size, seed + 1, *options),
        )
