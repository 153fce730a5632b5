"""HierSpeech2: HierSpeech++'s hierarchical variational backbone
(semantic + F0 + voice prompt → 16 kHz speech).

Latents, as in the paper and the official ``SynthesizerTrn``:

* ``posterior_encoder`` (``enc_q``): linear spectrogram + waveform → acoustic posterior z_a.
* ``prior_encoder`` (``enc_p``): clean semantic features + log F0 → semantic prior;
  ``posterior_flow`` (``flow``) maps z_a to it.
* ``perturbed_prior_encoder`` (``enc_p_l``): perturbed semantic features + log F0 →
  a second prior; ``perturbed_flow`` (``flow_l``) maps the semantic latent to it.
* ``source_network`` (``sn``) upsamples a latent to 4 frames per hop and predicts log F0;
  ``generator`` (``dec``) turns the latent plus the source features into a waveform.
* ``style_encoder`` (``emb_g``) turns a voice-prompt mel into the style vector every part is
  conditioned on; ``null_style`` (``emb``) is the learned unconditional style (classifier-free guidance).
* ``prosody_decoder`` (``mel_decoder``) predicts the first mel bins (a training target only).

Only inference (:meth:`HierSpeech2.voice_conversion`) is implemented here; the parts are
public so that a training task can call them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import NativeCheckpointMixin, OfficialCheckpointMixin
from ..constants import F0_FRAMES_PER_HOP, HOP_LENGTH
from ..nn.encoders import MelDecoder, PosteriorAudioEncoder, SourceFilterEncoder
from ..nn.flows import TransformerCouplingBlock
from ..nn.functional import length_mask, sample_gaussian
from ..nn.generator import Generator, SourceNetwork
from ..nn.inference import WeightNormFusionMixin
from ..nn.style import StyleEncoder
from ..options import DEFAULT_NOISE_SCALE

PROSODY_DECODER_LAYERS = 2  # official MelDecoder(n_layers=2, kernel_size=5)
PROSODY_DECODER_KERNEL_SIZE = 5


class HierSpeech2(nn.Module, OfficialCheckpointMixin, NativeCheckpointMixin, WeightNormFusionMixin):
    """HierSpeech++ backbone; defaults are the released 97M "hierspeechpp_eng_kor" configuration.

    Args:
        spec_channels: linear-spectrogram bins of the posterior encoder (n_fft 1280 → 641).
        semantic_channels: semantic feature channels (MMS-300m: 1024).
        inter_channels: latent channels.
        hidden_channels: width of the encoders and flows.
        filter_channels: feed-forward width of the prosody decoder.
        n_heads: attention heads of the flows and the prosody decoder.
        p_dropout: dropout of the flows and the prosody decoder.
        resblock_kernel_sizes, resblock_dilation_sizes, upsample_rates, upsample_initial_channel,
            upsample_kernel_sizes: the waveform generator (∏ upsample_rates = hop = 320).
        gin_channels: style vector size.
        prosody_size: mel bins predicted by the prosody decoder.
        cfg: build the null style embedding for classifier-free guidance.
        mel_channels: mel bins of the voice prompt.
        style_hidden_channels: width of the style encoder.
        posterior_layers: WaveNet layers of the posterior encoder.
        prior_layers: layers of each of the three WaveNets in a prior encoder.
        flow_layers, n_flows: transformer blocks per coupling layer, coupling layers per flow.
        audio_encoder_channels, audio_downsample_rates, audio_downsample_kernel_sizes: the posterior
            encoder's waveform path (∏ rates = hop).
    """

    OFFICIAL_PREFIXES = (
        ("enc_p_l.", "perturbed_prior_encoder."),
        ("flow_l.", "perturbed_flow."),
        ("enc_p.", "prior_encoder."),
        ("enc_q.", "posterior_encoder."),
        ("flow.", "posterior_flow."),
        ("mel_decoder.", "prosody_decoder."),
        ("dec.", "generator."),
        ("sn.", "source_network."),
        ("emb_g.", "style_encoder."),
        ("emb.", "null_style."),
    )

    def __init__(
        self,
        spec_channels: int = 641,
        semantic_channels: int = 1024,
        inter_channels: int = 192,
        hidden_channels: int = 192,
        filter_channels: int = 768,
        n_heads: int = 2,
        p_dropout: float = 0.1,
        resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11),
        resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        upsample_rates: tuple[int, ...] = (4, 5, 4, 2, 2),
        upsample_initial_channel: int = 512,
        upsample_kernel_sizes: tuple[int, ...] = (8, 11, 8, 4, 4),
        gin_channels: int = 256,
        prosody_size: int = 20,
        cfg: bool = True,
        mel_channels: int = 80,
        style_hidden_channels: int = 256,
        posterior_layers: int = 16,
        prior_layers: int = 8,
        flow_layers: int = 3,
        n_flows: int = 4,
        audio_encoder_channels: tuple[int, ...] = (16, 32, 64, 128, 192),
        audio_downsample_rates: tuple[int, ...] = (8, 5, 4, 2),
        audio_downsample_kernel_sizes: tuple[int, ...] = (17, 10, 8, 4),
    ) -> None:
        super().__init__()
        self.gin_channels = gin_channels
        self.hop_length = math.prod(upsample_rates)
        if math.prod(audio_downsample_rates) != self.hop_length:
            raise ValueError(
                f"audio_downsample_rates {audio_downsample_rates} must multiply to the hop length "
                f"{self.hop_length} = prod(upsample_rates {upsample_rates})"
            )

        def prior() -> SourceFilterEncoder:
            return SourceFilterEncoder(
                semantic_channels,
                inter_channels,
                hidden_channels,
                n_layers=prior_layers,
                gin_channels=gin_channels,
            )

        def flow() -> TransformerCouplingBlock:
            return TransformerCouplingBlock(
                inter_channels,
                hidden_channels,
                flow_layers,
                n_flows,
                gin_channels,
                n_heads,
                p_dropout=p_dropout,
            )

        self.perturbed_prior_encoder = prior()
        self.perturbed_flow = flow()
        self.prior_encoder = prior()
        self.posterior_encoder = PosteriorAudioEncoder(
            spec_channels,
            inter_channels,
            hidden_channels,
            n_layers=posterior_layers,
            gin_channels=gin_channels,
            audio_channels=audio_encoder_channels,
            downsample_rates=audio_downsample_rates,
            downsample_kernel_sizes=audio_downsample_kernel_sizes,
        )
        self.posterior_flow = flow()
        self.prosody_decoder = MelDecoder(
            inter_channels,
            filter_channels,
            n_heads,
            PROSODY_DECODER_LAYERS,
            PROSODY_DECODER_KERNEL_SIZE,
            p_dropout,
            mel_size=prosody_size,
            gin_channels=gin_channels,
        )
        source_initial = upsample_initial_channel // 2
        self.generator = Generator(
            inter_channels,
            resblock_kernel_sizes,
            resblock_dilation_sizes,
            upsample_rates,
            upsample_initial_channel,
            upsample_kernel_sizes,
            gin_channels,
            source_channels=source_initial // 4,
        )
        self.source_network = SourceNetwork(inter_channels, source_initial, gin_channels)
        self.style_encoder = StyleEncoder(mel_channels, style_hidden_channels, gin_channels)
        if cfg:
            self.null_style = nn.Embedding(1, gin_channels)
            nn.init.normal_(self.null_style.weight, 0.0, gin_channels**-0.5)

    @classmethod
    def config_from_official(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        """The released configuration, with ``cfg`` read off the presence of ``emb.weight``."""
        return {"cfg": "emb.weight" in state}

    def null_style_vector(self) -> Tensor:
        """The unconditional style [1, gin, 1] (classifier-free guidance), scaled as in training."""
        if not hasattr(self, "null_style"):
            raise ValueError("this HierSpeech2 was built with cfg=False and has no null style embedding")
        return (self.null_style.weight * self.gin_channels**0.5).unsqueeze(-1)

    def encode_style(
        self, prompt_mel: Tensor, prompt_mel_lengths: Tensor, batch_size: int, denoise_ratio: float = 0.0
    ) -> Tensor:
        """Voice prompts [2B or B, 80, Tm] → style [B, gin, 1].

        With two rows per prompt (original, then denoised) the style is
        ``(1 - denoise_ratio) · original + denoise_ratio · denoised``; with one row, both are that row.
        """
        rows = prompt_mel.shape[0]
        if rows not in (batch_size, 2 * batch_size) or prompt_mel_lengths.shape != (rows,):
            raise ValueError(
                "prompt_mel must hold 2 rows (original, denoised) or 1 row per item of the batch of "
                f"{batch_size}, with one length per row; got prompt_mel {tuple(prompt_mel.shape)} and "
                "prompt_mel_lengths "
                f"{tuple(prompt_mel_lengths.shape)}"
            )
        mask = length_mask(prompt_mel_lengths, prompt_mel.shape[-1], prompt_mel.dtype)
        styles = self.style_encoder(prompt_mel, mask)
        if rows == 2 * batch_size:
            original, denoised = styles[0::2], styles[1::2]
        else:
            original = denoised = styles
        return ((1 - denoise_ratio) * original + denoise_ratio * denoised).unsqueeze(-1)

    def synthesize(self, z: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        """Latent [B, C, T] + style [B, gin, 1] → (waveform [B, 1, 320 T], predicted log F0 [B, 1, 4T])."""
        source_hidden, log_f0_pred = self.source_network(z, style)
        return self.generator(z, source_hidden, style), log_f0_pred

    @torch.inference_mode()
    def voice_conversion(
        self,
        semantic: Tensor,
        semantic_lengths: Tensor,
        prompt_mel: Tensor,
        prompt_mel_lengths: Tensor,
        log_f0: Tensor,
        noise_scale: float = DEFAULT_NOISE_SCALE,
        denoise_ratio: float = 0.0,
    ) -> Tensor:
        """Semantic [B, 1024, T] + log F0 [B, 1, 4T] in the voice of ``prompt_mel`` → waveform [B, 1, 320 T].

        ``prompt_mel`` is [2B, 80, Tm] (per prompt: original row, then denoised row) or [B, 80, Tm];
        ``noise_scale`` scales the prior sample (0: its mean). Rows of different lengths are
        padded; the flows attend over padding as the official model does, so a padded row can
        differ slightly from the same item converted alone.
        """
        batch, _, frames = semantic.shape
        if log_f0.shape != (batch, 1, F0_FRAMES_PER_HOP * frames):
            raise ValueError(
                f"log_f0 must be [B, 1, {F0_FRAMES_PER_HOP} * T] = {(batch, 1, F0_FRAMES_PER_HOP * frames)} "
                f"for semantic {tuple(semantic.shape)} ({F0_FRAMES_PER_HOP} F0 frames per "
                f"{HOP_LENGTH}-sample hop), got {tuple(log_f0.shape)}; pad or trim the F0 track to match"
            )
        style = self.encode_style(prompt_mel, prompt_mel_lengths, batch, denoise_ratio)
        mask = length_mask(semantic_lengths, frames, semantic.dtype)
        prior_mean, prior_log_std = self.perturbed_prior_encoder(semantic, log_f0, mask, style)
        z = sample_gaussian(prior_mean, prior_log_std, mask, noise_scale)
        z = self.perturbed_flow(z, mask, style, reverse=True)
        z = self.posterior_flow(z, mask, style, reverse=True)
        waveform, _ = self.synthesize(z, style)
        return waveform
