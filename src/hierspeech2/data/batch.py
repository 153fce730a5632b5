"""Batch types the datamodules yield and the training tasks consume.

Every batch is a dataclass of tensors with ``to(...)`` and ``pin_memory()``, so Lightning moves it
to the device (it calls ``to`` on any object that has one) and ``DataLoader(pin_memory=True)`` pins
it. Not frozen: Lightning's true-half precision plugins rebuild dataclass batches field by field.

Frame conventions (16 kHz, hop 320, audio padded to a multiple of 1280 samples as the official
preprocessing does): an utterance of ``T`` frames has ``320 T`` samples, ``T`` semantic/mel/linear
frames and ``4 T`` F0 frames. Padded positions hold zeros; ``*_lengths`` say what is valid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hierspeech2.constants import HOP_LENGTH
from hierspeech2.nn.functional import length_mask

__all__ = ["BackboneBatch", "SpeechSRBatch", "TTVBatch", "length_mask", "pad_stack"]


def pad_stack(tensors: Sequence[Tensor], length: int | None = None) -> Tensor:
    """Right-pad tensors ``[..., L_i]`` with zeros to ``length`` (default: the longest) and stack them.

    Returns ``[B, ..., length]``.
    """
    length = max(t.shape[-1] for t in tensors) if length is None else length
    return torch.stack([F.pad(t, (0, length - t.shape[-1])) for t in tensors])


class _TensorBatch:
    """``to`` / ``pin_memory`` / ``batch_size`` for dataclasses whose fields are tensors or None."""

    def _map(self, function) -> Any:
        changes = {
            field.name: function(getattr(self, field.name))
            for field in dataclasses.fields(self)  # type: ignore[arg-type]
            if isinstance(getattr(self, field.name), Tensor)
        }
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """Same batch with every tensor moved like ``Tensor.to(*args, **kwargs)``.

        Only floating-point tensors change dtype; integer ids and lengths keep theirs.
        """
        device_only = {key: value for key, value in kwargs.items() if key != "dtype"}

        def move(tensor: Tensor) -> Tensor:
            if tensor.is_floating_point():
                return tensor.to(*args, **kwargs)
            positional = [a for a in args if not isinstance(a, torch.dtype)]
            return tensor.to(*positional, **device_only)

        return self._map(move)

    def pin_memory(self) -> Any:
        """Same batch in page-locked memory (called by ``DataLoader(pin_memory=True)``)."""
        return self._map(Tensor.pin_memory)

    @property
    def batch_size(self) -> int:
        first = next(f for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), Tensor))  # type: ignore[arg-type]
        return int(getattr(self, first.name).shape[0])


@dataclass
class TTVBatch(_TensorBatch):
    """Text-to-vec training batch: whole utterances (up to 600 frames = 192 000 samples), as official.

    - ``tokens`` [B, L] long: phoneme ids with blanks interspersed (``2 P + 1`` per row), padded with 0.
    - ``token_lengths`` [B] long.
    - ``semantic`` [B, 1024, T] float: MMS hidden-state-7 features of the clean utterance (the target).
    - ``f0`` [B, 1, 4T] float: YAAPT F0 in Hz, 0 = unvoiced (official feeds ``log(f0 + 1)``: :attr:`log_f0`).
    - ``mel`` [B, 80, T] float: log-mel of the same utterance, the prosody prompt (one row per prompt).
    - ``audio`` [B, 1, 320T] float: the 16 kHz waveform the features came from (for logging).
    - ``semantic_lengths`` [B] long: valid frames ``T_i`` (also of ``mel``; ``4 T_i`` of ``f0``).
    """

    tokens: Tensor
    token_lengths: Tensor
    semantic: Tensor
    f0: Tensor
    mel: Tensor
    audio: Tensor
    semantic_lengths: Tensor

    @property
    def log_f0(self) -> Tensor:
        """``log(f0 + 1)`` [B, 1, 4T], the official TTV F0 target (0 on unvoiced and padded frames)."""
        return torch.log1p(self.f0)

    @property
    def phonemes(self) -> Tensor:
        """Phoneme ids without blanks [B, P] (the CTC targets): every odd position of ``tokens``."""
        return self.tokens[:, 1::2]

    @property
    def phoneme_lengths(self) -> Tensor:
        """[B] long, ``(token_lengths - 1) // 2``."""
        return torch.div(self.token_lengths - 1, 2, rounding_mode="floor")

    @property
    def token_mask(self) -> Tensor:
        """[B, 1, L] float."""
        return length_mask(self.token_lengths, self.tokens.shape[1])

    @property
    def frame_mask(self) -> Tensor:
        """[B, 1, T] float over semantic/mel frames."""
        return length_mask(self.semantic_lengths, self.semantic.shape[-1])


@dataclass
class BackboneBatch(_TensorBatch):
    """Backbone training batch: random segments of the official size (61 440 samples = 192 frames).

    - ``audio`` [B, 1, 320T] float: clean 16 kHz segment.
    - ``linear`` [B, 641, T] float: linear magnitude spectrogram of ``audio`` (posterior encoder input).
    - ``mel`` [B, 80, T] float: log-mel of ``audio`` (mel-loss target and voice prompt).
    - ``semantic`` [B, 1024, T] float: MMS features of the clean audio (prior encoder input).
    - ``f0`` [B, 1, 4T] float: YAAPT F0 in Hz, 0 = unvoiced; :attr:`log_f0` is ``log(f0 + 1)``.
    - ``frame_lengths`` [B] long: valid frames ``T_i`` (``320 T_i`` samples, ``4 T_i`` F0 frames).
    - ``perturbed_audio`` [B, 1, 320T] float or None: the segment after the on-the-fly perturbation
      (formant/pitch shift, EQ) that feeds the perturbed MMS path; None when no perturbation is set.
    """

    audio: Tensor
    linear: Tensor
    mel: Tensor
    semantic: Tensor
    f0: Tensor
    frame_lengths: Tensor
    perturbed_audio: Tensor | None = None

    @property
    def log_f0(self) -> Tensor:
        """``log(f0 + 1)`` [B, 1, 4T]."""
        return torch.log1p(self.f0)

    @property
    def frame_mask(self) -> Tensor:
        """[B, 1, T] float."""
        return length_mask(self.frame_lengths, self.mel.shape[-1])

    @property
    def audio_lengths(self) -> Tensor:
        """[B] long, valid samples ``320 T_i``."""
        return self.frame_lengths * HOP_LENGTH


@dataclass
class SpeechSRBatch(_TensorBatch):
    """SpeechSR training batch: target-rate segments (9 600 samples) and their 16 kHz versions.

    - ``low_rate`` [B, 1, N] float: 16 kHz input (``high_rate`` through torchaudio's Kaiser resampler).
    - ``high_rate`` [B, 1, r N] float: 24 or 48 kHz target, ``r = output_rate / 16000``.
    - ``low_rate_lengths`` / ``high_rate_lengths`` [B] long: valid samples of each.
    """

    low_rate: Tensor
    high_rate: Tensor
    low_rate_lengths: Tensor
    high_rate_lengths: Tensor

    @property
    def high_rate_mask(self) -> Tensor:
        """[B, 1, rN] float."""
        return length_mask(self.high_rate_lengths, self.high_rate.shape[-1])
