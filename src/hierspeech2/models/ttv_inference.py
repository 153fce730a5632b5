"""Text-to-vec inference shared by every engine: the torch model and its ONNX export.

:class:`TextToVecInference` holds :meth:`~TextToVecInference.infer_with_lengths` around the two
steps an engine provides, so that the length expansion, the prior sample and the grouping of rows
by length are written once and draw the same random numbers whichever engine runs the networks.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec

import torch
from torch import Tensor

from ..constants import HOP_LENGTH, MODEL_SAMPLE_RATE
from ..errors import SettingError
from ..nn.alignment import generate_path
from ..nn.functional import length_mask, sample_gaussian
from ..options import DEFAULT_NOISE_SCALE

__all__ = ["MAX_INFER_FRAMES", "TextToVecInference", "TextToVecInputs", "check_prompt_rows"]

FRAMES_PER_SECOND = MODEL_SAMPLE_RATE // HOP_LENGTH  # semantic frames per second (50)
# Longest output of one inference row (5 minutes); the flow attends over all frames, so memory grows with its
# square.
MAX_INFER_FRAMES = 5 * 60 * FRAMES_PER_SECOND
P = ParamSpec("P")


def _without_lengths(
    infer_with_lengths: Callable[P, tuple[Tensor, Tensor, Tensor]],
) -> Callable[P, tuple[Tensor, Tensor]]:
    """``infer_with_lengths`` returning ``(semantic, log_f0)`` only, with its arguments and defaults."""

    def infer(*args: P.args, **kwargs: P.kwargs) -> tuple[Tensor, Tensor]:
        """Phoneme ids + prompt mel → (semantic [B, 1024, T'], log_f0 [B, 1, 4T']), zero-padded:
        :meth:`infer_with_lengths` (the same arguments) without the lengths."""
        semantic, log_f0, _ = infer_with_lengths(*args, **kwargs)
        return semantic, log_f0

    signature = inspect.signature(infer_with_lengths)
    infer.__signature__ = signature.replace(return_annotation=infer.__annotations__["return"])
    return infer


def _equal_length_groups(lengths: Tensor) -> list[tuple[Tensor, int]]:
    """Row indices sharing each distinct length, with that length."""
    return [(torch.nonzero(lengths == length).squeeze(1), int(length)) for length in torch.unique(lengths)]


def check_prompt_rows(prompt_mel: Tensor, prompt_mel_lengths: Tensor, batch_size: int) -> None:
    """Two prompt rows per token sequence (original, denoised) or one, and one length per row."""
    rows = prompt_mel.shape[0]
    if rows not in (batch_size, 2 * batch_size):
        raise ValueError(
            f"prompt_mel has {rows} rows for {batch_size} token sequences; pass 2 rows per prompt "
            f"(original, denoised: [{2 * batch_size}, 80, T]) or one ([{batch_size}, 80, T])"
        )
    if prompt_mel_lengths.shape != (rows,):
        raise ValueError(
            f"prompt_mel_lengths must have one length per prompt_mel row, shape ({rows},), "
            f"got {tuple(prompt_mel_lengths.shape)}"
        )


@dataclass(frozen=True)
class TextToVecInputs:
    """What the encoding step of one text-to-vec call takes (see
    :meth:`TextToVecInference.infer_with_lengths`); the scalars may be 0-d tensors (ONNX export)."""

    tokens: Tensor
    token_lengths: Tensor
    prompt_mel: Tensor
    prompt_mel_lengths: Tensor
    noise_scale_w: float | Tensor
    length_scale: float | Tensor
    denoise_ratio: float | Tensor


class TextToVecInference:
    """Text-to-vec inference around two steps that an engine provides (the torch model, or its
    ONNX export run by onnxruntime): :meth:`encode_for_inference` (style, token prior, whole
    durations) and :meth:`decode` (prior sample → semantic features and log F0). Between them the
    durations expand the prior to frames and the prior is sampled, here, so that every engine
    draws the same random numbers. Needs ``semantic_channels`` and ``pitch_frames_per_frame``.
    """

    semantic_channels: int
    pitch_frames_per_frame: int

    def encode_for_inference(self, inputs: TextToVecInputs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """→ style [B, S, 1], prior mean and log std per token [B, C, L], whole durations [B, 1, L]."""
        raise NotImplementedError

    def decode(self, prior_sample: Tensor, frame_mask: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        """Prior sample [B, C, T] → (semantic [B, 1024, T], log_f0 [B, 1, 4T])."""
        raise NotImplementedError

    @torch.inference_mode()
    def infer_with_lengths(
        self,
        tokens: Tensor,
        token_lengths: Tensor,
        prompt_mel: Tensor,
        prompt_mel_lengths: Tensor,
        noise_scale: float = DEFAULT_NOISE_SCALE,
        noise_scale_w: float = 1.0,
        length_scale: float = 1.0,
        denoise_ratio: float = 0.0,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Phoneme ids + prompt mel → (semantic [B, 1024, T'], log_f0 [B, 1, 4T'], semantic_lengths [B]).

        Args:
            tokens, token_lengths: phoneme ids with blanks, zero-padded, and their lengths [B].
            prompt_mel, prompt_mel_lengths: log-mel prompt rows (original, denoised per prompt,
                or one row used as both) and their lengths [2B or B].
            noise_scale: temperature of the prior sample.
            noise_scale_w: temperature of the duration sample.
            length_scale: multiplies every duration (> 1 speaks slower).
            denoise_ratio: weight of the denoised prompt's style.

        Rows are zero-padded to the longest output; ``semantic_lengths`` [B] counts each row's valid
        frames (``4 ·`` that for ``log_f0``). Each row matches the same input run alone.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [B, L] phoneme ids, got shape {tuple(tokens.shape)}")
        batch_size = tokens.shape[0]
        if token_lengths.shape != (batch_size,):
            raise ValueError(
                f"token_lengths must have shape ({batch_size},), got {tuple(token_lengths.shape)}"
            )
        if prompt_mel.dim() != 3:
            raise ValueError(f"prompt_mel must be [2B or B, 80, T], got shape {tuple(prompt_mel.shape)}")

        token_lengths = token_lengths.to(tokens.device)
        prompt_mel_lengths = prompt_mel_lengths.to(prompt_mel.device)

        check_prompt_rows(prompt_mel, prompt_mel_lengths, batch_size)
        style, prior_mean, prior_log_std, durations = self.encode_for_inference(
            TextToVecInputs(
                tokens,
                token_lengths,
                prompt_mel,
                prompt_mel_lengths,
                noise_scale_w,
                length_scale,
                denoise_ratio,
            )
        )
        text_mask = length_mask(token_lengths, tokens.shape[1], dtype=prior_mean.dtype)
        total = durations.sum(dim=(1, 2))
        if not bool(torch.isfinite(total).all()) or bool((total > MAX_INFER_FRAMES).any()):
            # a huge length_scale / noise_scale_w would otherwise allocate without bound
            longest = float(total.max()) if bool(torch.isfinite(total).all()) else math.inf
            raise SettingError(
                f"the predicted durations add up to {longest:.0f} frames for at most "
                f"{int(token_lengths.max())} tokens (limit {MAX_INFER_FRAMES}, "
                f"{MAX_INFER_FRAMES // FRAMES_PER_SECOND // 60} minutes of speech): lower length_scale "
                f"(now {length_scale}) or noise_scale_w (now {noise_scale_w}), "
                "or split the text into shorter pieces"
            )

        semantic_lengths = torch.clamp_min(total, 1).long()
        frame_mask = length_mask(semantic_lengths, dtype=prior_mean.dtype)
        path = generate_path(durations, text_mask.unsqueeze(2) * frame_mask.unsqueeze(-1)).squeeze(1)
        # [B, T, L] @ [B, L, C] -> [B, T, C]: each frame takes its token's prior
        prior_mean = (path @ prior_mean.transpose(1, 2)).transpose(1, 2)
        prior_log_std = (path @ prior_log_std.transpose(1, 2)).transpose(1, 2)
        prior_sample = sample_gaussian(prior_mean, prior_log_std, frame_mask, noise_scale)

        num_frames = frame_mask.shape[-1]
        semantic = prior_sample.new_zeros(batch_size, self.semantic_channels, num_frames)
        log_f0 = prior_sample.new_zeros(batch_size, 1, num_frames * self.pitch_frames_per_frame)
        for index, length in _equal_length_groups(semantic_lengths):
            semantic_part, log_f0_part = self.decode(
                prior_sample[index, :, :length], frame_mask[index, :, :length], style[index]
            )
            # under autocast the decoder's parts may come back in another dtype than the buffers
            semantic[index, :, :length] = semantic_part.to(semantic.dtype)
            log_f0[index, :, : log_f0_part.shape[-1]] = log_f0_part.to(log_f0.dtype)
        return semantic, log_f0, semantic_lengths

    infer = _without_lengths(infer_with_lengths)
