"""The training pass of the HierSpeech2 backbone, composed from the model's public parts.

The authors released no backbone trainer. This is the reading of DESIGN.md ("Training
objectives", backbone): what the official code, config and the authors' answers establish,
plus reconstructed choices, each selectable here:

* ``posterior_encoder`` (linear spectrogram + waveform) gives the acoustic posterior
  q(z_a); ``posterior_flow`` carries its sample into the space of the clean semantic prior
  ``prior_encoder`` (clean MMS + F0): the VITS KL term.
* A latent of that semantic space is carried by ``perturbed_flow`` into the space of the
  perturbed prior ``perturbed_prior_encoder`` (perturbed MMS + F0): the second KL term.
  Which latent is *reconstructed*: ``perturbed_target="semantic_prior"`` (a sample of the clean
  prior, default) or ``"flowed_posterior"`` (flow(z_a), the latent the first KL matches).
* Bidirectional terms (NaturalSpeech; *reconstructed*): a sample of each prior runs its flow
  in reverse and is scored under the Gaussian one level down.
* The generator and source network see a random window of z_a; with probability
  ``uncond_probability`` per row their style is the null embedding (classifier-free guidance),
  as the official ``voice_conversion(uncond=True)`` feeds them.
* ``prosody_decoder`` predicts the first mel bins from a semantic latent (*reconstructed*:
  ``prosody_source``, as ``perturbed_target``).

Losses are computed by :class:`hierspeech2.tasks.HierSpeech2Task`; this module only runs the
networks, so it imports no Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..constants import F0_FRAMES_PER_HOP
from ..nn.functional import length_mask, rand_slice_segments, sample_gaussian, slice_segments
from .backbone import HierSpeech2

__all__ = ["LatentSource", "TrainingOutput", "training_forward", "window_targets"]

LatentSource = Literal["semantic_prior", "flowed_posterior"]
LATENT_SOURCES = ("semantic_prior", "flowed_posterior")


@dataclass
class TrainingOutput:
    """What the backbone objective needs from one training pass. ``T`` frames, window of ``S`` frames."""

    frame_mask: Tensor  # [B, 1, T]
    posterior_mean: Tensor  # [B, C, T] q(z_a)
    posterior_log_std: Tensor  # [B, C, T]
    posterior_sample: Tensor  # [B, C, T] z_a
    flowed_posterior: Tensor  # [B, C, T] posterior_flow(z_a), in the semantic prior's space
    semantic_mean: Tensor  # [B, C, T] prior_encoder(clean semantic, F0)
    semantic_log_std: Tensor  # [B, C, T]
    perturbed_input: Tensor  # [B, C, T] the latent perturbed_flow carries (see perturbed_target)
    perturbed_input_log_std: Tensor  # [B, C, T] log std of that latent's distribution
    flowed_perturbed_input: Tensor  # [B, C, T] perturbed_flow(perturbed_input)
    perturbed_mean: Tensor  # [B, C, T] perturbed_prior_encoder(perturbed semantic, F0)
    perturbed_log_std: Tensor  # [B, C, T]
    prosody_pred: Tensor  # [B, prosody_size, T]
    waveform: Tensor  # [B, 1, hop S] generated from the window of z_a
    log_f0_pred: Tensor  # [B, 1, 4 S] source network's log F0 on the window
    window_starts: Tensor  # [B] first frame of each row's window
    window_frames: int  # S
    unconditional: Tensor  # [B] bool, rows whose generator style was the null embedding
    semantic_to_posterior: Tensor | None = None  # [B, C, T] posterior_flow⁻¹(sample of the semantic prior)
    perturbed_to_semantic: Tensor | None = None  # [B, C, T] perturbed_flow⁻¹(sample of the perturbed prior)


def training_forward(
    model: HierSpeech2,
    *,
    linear: Tensor,
    audio: Tensor,
    mel: Tensor,
    semantic: Tensor,
    perturbed_semantic: Tensor,
    log_f0: Tensor,
    frame_lengths: Tensor,
    window_frames: int = 192,
    uncond_probability: float = 0.1,
    perturbed_target: LatentSource = "semantic_prior",
    prosody_source: LatentSource = "semantic_prior",
    bidirectional: bool = True,
) -> TrainingOutput:
    """One training pass of ``model``.

    Args:
        linear: [B, F, T] linear spectrogram (posterior input).
        audio: [B, 1, hop T] waveform (posterior input).
        mel: [B, 80, T] log-mel of ``audio``; the voice prompt (one row per item).
        semantic: [B, D, T] MMS features of the clean audio.
        perturbed_semantic: [B, D, T] MMS features of the perturbed audio.
        log_f0: [B, 1, 4T] ``log(F0 + 1)`` of the clean audio (both priors read it).
        frame_lengths: [B] valid frames.
        window_frames: frames of z_a the generator decodes per row (capped by the shortest row).
        uncond_probability: chance per row that the generator's style is the null embedding.
        perturbed_target, prosody_source: reconstructed routings, see the module docstring.
        bidirectional: also run each flow in reverse on a prior sample.
    """
    for name, value in (("perturbed_target", perturbed_target), ("prosody_source", prosody_source)):
        if value not in LATENT_SOURCES:
            raise ValueError(f"{name} must be one of {LATENT_SOURCES}, got {value!r}")
    batch, _, frames = semantic.shape
    if uncond_probability > 0 and not hasattr(model, "null_style"):
        raise ValueError("uncond_probability > 0 needs a HierSpeech2 built with cfg=True (the null style)")
    mask = length_mask(frame_lengths, frames, semantic.dtype)
    style = model.encode_style(mel, frame_lengths, batch)

    posterior_mean, posterior_log_std = model.posterior_encoder(linear, audio, mask, style)
    z_acoustic = sample_gaussian(posterior_mean, posterior_log_std, mask)
    flowed_posterior = model.posterior_flow(z_acoustic, mask, style)

    semantic_mean, semantic_log_std = model.prior_encoder(semantic, log_f0, mask, style)
    z_semantic = sample_gaussian(semantic_mean, semantic_log_std, mask)
    if perturbed_target == "semantic_prior":
        perturbed_input, perturbed_input_log_std = z_semantic, semantic_log_std
    else:
        perturbed_input, perturbed_input_log_std = flowed_posterior, posterior_log_std
    flowed_perturbed_input = model.perturbed_flow(perturbed_input, mask, style)
    perturbed_mean, perturbed_log_std = model.perturbed_prior_encoder(perturbed_semantic, log_f0, mask, style)

    semantic_to_posterior = perturbed_to_semantic = None
    if bidirectional:
        semantic_to_posterior = model.posterior_flow(z_semantic, mask, style, reverse=True)
        z_perturbed = sample_gaussian(perturbed_mean, perturbed_log_std, mask)
        perturbed_to_semantic = model.perturbed_flow(z_perturbed, mask, style, reverse=True)

    prosody_latent = z_semantic if prosody_source == "semantic_prior" else flowed_posterior
    prosody_pred = model.prosody_decoder(prosody_latent, mask, style)

    window = min(window_frames, int(frame_lengths.min()))
    z_window, starts = rand_slice_segments(z_acoustic, frame_lengths, window)
    unconditional = torch.rand(batch, device=semantic.device) < uncond_probability
    generator_style = style
    if bool(unconditional.any()):
        null = model.null_style_vector().to(style.dtype).expand_as(style)
        generator_style = torch.where(unconditional[:, None, None], null, style)
    waveform, log_f0_pred = model.synthesize(z_window, generator_style)

    return TrainingOutput(
        frame_mask=mask,
        posterior_mean=posterior_mean,
        posterior_log_std=posterior_log_std,
        posterior_sample=z_acoustic,
        flowed_posterior=flowed_posterior,
        semantic_mean=semantic_mean,
        semantic_log_std=semantic_log_std,
        perturbed_input=perturbed_input,
        perturbed_input_log_std=perturbed_input_log_std,
        flowed_perturbed_input=flowed_perturbed_input,
        perturbed_mean=perturbed_mean,
        perturbed_log_std=perturbed_log_std,
        prosody_pred=prosody_pred,
        waveform=waveform,
        log_f0_pred=log_f0_pred,
        window_starts=starts,
        window_frames=window,
        unconditional=unconditional,
        semantic_to_posterior=semantic_to_posterior,
        perturbed_to_semantic=perturbed_to_semantic,
    )


def window_targets(
    audio: Tensor, log_f0: Tensor, starts: Tensor, window_frames: int, hop_length: int
) -> tuple[Tensor, Tensor]:
    """The real audio [B, 1, hop S] and ``log(F0 + 1)`` [B, 1, 4 S] under each row's generator window."""
    return (
        slice_segments(audio, starts * hop_length, window_frames * hop_length),
        slice_segments(log_f0, starts * F0_FRAMES_PER_HOP, window_frames * F0_FRAMES_PER_HOP),
    )
