"""Tiny models, batches and trainers shared by the training tests (CPU, seconds)."""

from __future__ import annotations

import dataclasses

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from tiny_models import TTV_UNIT

from hierspeech2.audio import LogMelSpectrogram
from hierspeech2.models import SpeechSR, TextToVec
from hierspeech2.nn.discriminators import MultiDiscriminator
from hierspeech2.tasks import SpeechSRTask, TTVTask
from hierspeech2.tasks.base import SPEECHSR48K_OPTIMIZER, TTV_OPTIMIZER
from hierspeech2.tasks.synthetic import SyntheticSpeechSRDataModule, SyntheticTTVDataModule

TINY_TTV = TTV_UNIT
TINY_SR = {
    "upsample_ratio": 3.0,
    "channels": 8,
    "resblock_kernel_sizes": (3,),
    "resblock_dilations": ((1, 3),),
}
TINY_DISCRIMINATOR = {
    "periods": (2, 3),
    "resolutions": ((512, 128, 512), (256, 64, 256)),
    "period_channels": (8, 16),
    "stft_channels": 8,
}
TINY_MEL_48K = {
    "sample_rate": 48000,
    "n_fft": 640,
    "win_length": 640,
    "hop_length": 160,
    "n_mels": 64,
    "f_max": 24000.0,
}


def tiny_ttv_task(**kwargs) -> TTVTask:
    options = {
        "optimizer": dataclasses.replace(TTV_OPTIMIZER, learning_rate=2e-3),
        "pitch_window": 8,
    } | kwargs
    return TTVTask(TextToVec(**TINY_TTV), **options)


def tiny_ttv_data(**kwargs) -> SyntheticTTVDataModule:
    options = {
        "batch_size": 4,
        "train_size": 16,
        "val_size": 4,
        "n_vocab": 20,
        "semantic_channels": 24,
        "mel_channels": 12,
    }
    return SyntheticTTVDataModule(**(options | kwargs))


def tiny_speechsr_task(**kwargs) -> SpeechSRTask:
    options = {"optimizer": dataclasses.replace(SPEECHSR48K_OPTIMIZER, learning_rate=1e-3)} | kwargs
    return SpeechSRTask(
        SpeechSR(**TINY_SR),
        MultiDiscriminator(**TINY_DISCRIMINATOR),
        LogMelSpectrogram(**TINY_MEL_48K),
        **options,
    )


def tiny_speechsr_data(**kwargs) -> SyntheticSpeechSRDataModule:
    options = {"batch_size": 4, "train_size": 16, "val_size": 4, "segment": 4800}
    return SyntheticSpeechSRDataModule(**(options | kwargs))


def trainer(**kwargs) -> pl.Trainer:
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,
        "log_every_n_steps": 1,
    }
    return pl.Trainer(**(options | kwargs))


class LossHistory(Callback):
    """Records one logged metric after every training batch."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values.append(float(trainer.callback_metrics[self.key]))


def tiny_semantic_encoder():
    """A randomly initialised MMS-shaped encoder (hop 320, 32 channels): MMS-300m is not reachable offline."""
    from transformers import Wav2Vec2Config

    from hierspeech2.ssl import SemanticEncoder

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    return SemanticEncoder.from_config(config, layer=1)


def energy_f0(wav: torch.Tensor) -> torch.Tensor:
    """An instant stand-in for YAAPT, [1, 1, N / 80]: 100–300 Hz on frames with energy, 0 elsewhere."""
    frames = wav.reshape(-1, 80).pow(2).mean(dim=1)
    f0 = torch.where(frames > 1e-6, 100.0 + 200.0 * frames.sqrt().clamp(max=1.0), torch.zeros_like(frames))
    return f0[None, None]


def shared_corpus_caches(corpora, out) -> dict[str, str]:
    """Feature caches of the shared mini corpora for the tiny recipes.

    Keys: ``ttv`` (32-channel stand-in MMS), ``sr24k``, ``sr48k``.
    """
    from hierspeech2.data.corpora import read_corpus
    from hierspeech2.data.features import SemanticFeatures
    from hierspeech2.data.preprocess import preprocess

    libritts = read_corpus(corpora / "mini-libritts")
    semantic = SemanticFeatures(tiny_semantic_encoder(), name_or_path="tiny-random-mms", layer=1)
    caches = {"ttv": out / "ttv", "sr24k": out / "sr24k", "sr48k": out / "sr48k"}
    preprocess(libritts, caches["ttv"], "ttv", semantic=semantic, f0_extractor=energy_f0, progress=False)
    preprocess(libritts, caches["sr24k"], "speechsr", target_rate=24_000, progress=False)
    mms = read_corpus(corpora / "mini-mms" / "manifest.tsv")
    preprocess(mms, caches["sr48k"], "speechsr", target_rate=48_000, progress=False)
    return {name: str(path) for name, path in caches.items()}
