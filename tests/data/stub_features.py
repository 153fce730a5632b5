"""Fast stand-ins for the slow feature extractors, importable by subprocesses (PYTHONPATH=tests/data)."""

from __future__ import annotations

import os
import time

import torch
from torch import Tensor
from transformers import Wav2Vec2Config

from hierspeech2.ssl import SemanticEncoder

TINY_LAYER = 2


def tiny_encoder(seed: int = 0) -> SemanticEncoder:
    """A randomly initialised MMS-shaped encoder (hop 320, 32 channels), identical for a given seed."""
    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=TINY_LAYER,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    return SemanticEncoder.from_config(config, layer=TINY_LAYER)


def energy_f0(wav: Tensor) -> Tensor:
    """A deterministic, instant 'F0' [1, 1, N / 80]: 100-300 Hz where the 5 ms frame has energy, else 0.

    ``STUB_F0_DELAY`` (seconds) slows it down, so that a subprocess can be killed mid-run.
    """
    delay = float(os.environ.get("STUB_F0_DELAY", "0"))
    if delay:
        time.sleep(delay)
    frames = wav.reshape(-1, 80).pow(2).mean(dim=1)
    f0 = torch.where(frames > 1e-6, 100.0 + 200.0 * frames.sqrt().clamp(max=1.0), torch.zeros_like(frames))
    return f0[None, None]
