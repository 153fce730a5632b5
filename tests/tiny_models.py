"""Tiny, fully random, pipeline-compatible models for the inference tests (80 mel bins, hop 320, 16 kHz).

Not a test module: imported by tests/test_longform.py, tests/test_chunking.py, tests/test_cli_batch.py …
and run as a script by the memory probe.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from hierspeech2.models import HierSpeech2, MPSENet, SpeechSR, TextToVec

SEMANTIC = 16
TINY_BACKBONE = {
    "spec_channels": 9,
    "semantic_channels": SEMANTIC,
    "inter_channels": 8,
    "hidden_channels": 8,
    "filter_channels": 16,
    "resblock_kernel_sizes": (3,),
    "resblock_dilation_sizes": ((1, 3),),
    "upsample_rates": (4, 10, 8),
    "upsample_initial_channel": 16,
    "upsample_kernel_sizes": (8, 20, 16),
    "gin_channels": 8,
    "prosody_size": 4,
    "style_hidden_channels": 8,
    "posterior_layers": 1,
    "prior_layers": 1,
    "flow_layers": 1,
    "n_flows": 1,
    "audio_encoder_channels": (4, 4, 4, 8),
    "audio_downsample_rates": (8, 5, 8),
    "audio_downsample_kernel_sizes": (16, 10, 16),
}
TINY_TTV = {
    "semantic_channels": SEMANTIC,
    "inter_channels": 16,
    "hidden_channels": 16,
    "style_channels": 8,
    "style_hidden_channels": 16,
    "text_filter_channels": 32,
    "text_heads": 2,
    "text_layers": 1,
    "text_kernel_size": 3,
    "posterior_layers": 1,
    "flow_layers": 1,
    "flow_count": 1,
    "flow_heads": 2,
    "decoder_hidden_channels": 16,
    "decoder_layers": 1,
    "duration_filter_channels": 16,
    "duration_flows": 2,
    "pitch_channels": 16,
    "pitch_resblock_kernel_sizes": (3,),
    "pitch_resblock_dilations": ((1, 3),),
}
# A TextToVec with its own vocabulary and mel size (unit tests of the model and its training).
TTV_UNIT = {
    "n_vocab": 20,
    "mel_channels": 12,
    "semantic_channels": 24,
    "inter_channels": 16,
    "hidden_channels": 16,
    "style_channels": 8,
    "style_hidden_channels": 16,
    "text_filter_channels": 32,
    "text_heads": 2,
    "text_layers": 1,
    "text_kernel_size": 3,
    "posterior_layers": 2,
    "flow_layers": 1,
    "flow_count": 2,
    "flow_heads": 2,
    "decoder_hidden_channels": 16,
    "decoder_layers": 2,
    "duration_filter_channels": 16,
    "duration_flows": 2,
    "pitch_channels": 16,
    "pitch_resblock_kernel_sizes": (3,),
    "pitch_resblock_dilations": ((1, 3),),
}
TINY_DENOISER = {"dense_channel": 8, "num_tsconformers": 1, "n_fft": 64, "hop_length": 16, "win_length": 64}
TINY_SPEECHSR = {"channels": 2, "resblock_kernel_sizes": (3,), "resblock_dilations": ((1,),)}
MMS_LAYERS = 2


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: on 2 shared cores, 2 OpenMP threads make tiny models many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values for every parameter (default inits leave flows and some projections at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(0.5 + 0.1 * noise.abs() if name.endswith("original0") else 0.2 * noise)
    return model.eval()


def backbone(seed: int = 0) -> HierSpeech2:
    return randomise(HierSpeech2(**TINY_BACKBONE), seed)


def ttv(seed: int = 1) -> TextToVec:
    return randomise(TextToVec(**TINY_TTV), seed)


def denoiser(seed: int = 2) -> MPSENet:
    model = MPSENet(**TINY_DENOISER)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # keep norms and slopes near 1 so the denoised prompt stays speech-like
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(1.0 + 0.1 * noise if parameter.dim() <= 1 and "weight" in name else 0.2 * noise)
    return model.eval()


def speechsr(ratio: float = 3.0, seed: int = 3) -> SpeechSR:
    return randomise(SpeechSR(upsample_ratio=ratio, **TINY_SPEECHSR), seed)


def wav2vec2_config():
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=SEMANTIC,
        num_hidden_layers=MMS_LAYERS,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )


def semantic_encoder(seed: int = 4):
    from hierspeech2.ssl import SemanticEncoder

    torch.manual_seed(seed)
    return SemanticEncoder.from_config(wav2vec2_config(), layer=MMS_LAYERS).eval()


def save_all(folder: Path) -> dict[str, Path]:
    """Native folders of every tiny model (what the CLI loads with --backbone/--ttv/--mms/--denoiser)."""
    from transformers import Wav2Vec2Model

    paths = {}
    for name, model in (("backbone", backbone()), ("ttv", ttv()), ("denoiser", denoiser())):
        paths[name] = folder / name
        model.save_pretrained(paths[name])
    config = wav2vec2_config()
    config.num_hidden_layers = 7  # the MMS loader builds 7 layers (hidden state 7)
    torch.manual_seed(4)
    paths["mms"] = folder / "mms"
    Wav2Vec2Model(config).save_pretrained(paths["mms"])
    return paths


def energy_f0(wav: torch.Tensor) -> torch.Tensor:
    """A cheap deterministic F0 stand-in for YAAPT: 80-sample frames, 120–220 Hz when loud, else 0."""
    frames = wav[: wav.numel() // 80 * 80].reshape(-1, 80)
    energy = frames.pow(2).mean(dim=1)
    voiced = energy > 1e-4
    return torch.where(voiced, 120.0 + 100.0 * energy / (energy + 1e-2), torch.zeros_like(energy))


class StandInBackbone(torch.nn.Module):
    """The HierSpeech2 inference interface at almost no cost: a tone following log F0, scaled by the style."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.full((1,), 0.1))

    def voice_conversion(
        self,
        semantic,
        semantic_lengths,
        prompt_mel,
        prompt_mel_lengths,
        log_f0,
        noise_scale=0.333,
        denoise_ratio=0.0,
    ):
        phase = torch.cumsum(torch.repeat_interleave(torch.exp(log_f0) - 1, 80, dim=-1), dim=-1) / 16000
        loudness = torch.repeat_interleave(semantic.mean(dim=1, keepdim=True).tanh(), 320, dim=-1)
        return self.gain * loudness * torch.sin(2 * torch.pi * phase)


class StandInEncoder(torch.nn.Module):
    """The SemanticEncoder interface at almost no cost: frame energies, [B, N] → [B, SEMANTIC, N // 320]."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(SEMANTIC, 1))

    def forward(self, wav):
        energy = torch.nn.functional.avg_pool1d(wav.unsqueeze(1).abs(), 320)
        return self.scale * energy


class StandInSpeechSR(torch.nn.Module):
    """The SpeechSR interface at almost no cost: sample repetition ×3 (48 kHz)."""

    output_rate = 48000

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1))

    def forward(self, wav):
        return self.gain * torch.repeat_interleave(wav, 3, dim=-1)
