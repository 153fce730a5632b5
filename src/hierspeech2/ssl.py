"""MMS-300m semantic features: hidden state 7 of ``facebook/mms-300m`` (transformers ``Wav2Vec2``).

Only the first ``layer`` transformer layers are built and loaded (7 of 24), and the
encoder is run layer by layer here rather than through ``output_hidden_states``: whether
the last returned hidden state of a truncated stable-layer-norm encoder has the final
LayerNorm applied has changed across transformers versions, and the released models
were trained on the un-normalised output of layer 7.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

from .errors import AudioError

if TYPE_CHECKING:  # transformers takes seconds to import: only the constructors below need it
    from transformers import Wav2Vec2Config, Wav2Vec2Model

MMS_REPO_ID = "facebook/mms-300m"
SEMANTIC_LAYER = 7  # the released backbone and TTV were trained on hidden state 7 of 24
REFLECT_PAD = 40  # official wrapper: with the 400-sample receptive field and 320 hop this gives N // 320 frames
SAMPLE_RATE = 16_000
HOP_LENGTH = 320  # the conv feature extractor strides 320 samples per frame


class SemanticEncoder(nn.Module):
    """Raw 16 kHz waveform ``[B, N]`` → semantic features ``[B, 1024, N // 320]``."""

    def __init__(self, model: Wav2Vec2Model, layer: int = SEMANTIC_LAYER) -> None:
        super().__init__()
        if not 1 <= layer <= len(model.encoder.layers):
            raise ValueError(
                f"layer must be in 1..{len(model.encoder.layers)} for this model (it has "
                f"{len(model.encoder.layers)} transformer layers), got {layer}"
            )
        self.model = model.eval()
        self.layer = layer
        self.requires_grad_(False)

    @classmethod
    def from_config(cls, config: Wav2Vec2Config, layer: int = SEMANTIC_LAYER) -> SemanticEncoder:
        """A randomly initialised encoder truncated to ``layer`` layers (for tests and training from scratch)."""
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        config = Wav2Vec2Config.from_dict({**config.to_dict(), "num_hidden_layers": layer})
        return cls(Wav2Vec2Model(config), layer=layer)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike = MMS_REPO_ID, layer: int = SEMANTIC_LAYER, **hub_kwargs
    ) -> SemanticEncoder:
        """Load the first ``layer`` transformer layers of a transformers Wav2Vec2 checkpoint (Hub id or local dir).

        ``hub_kwargs`` go to ``Wav2Vec2Model.from_pretrained`` (``revision``, ``cache_dir``,
        ``local_files_only`` …). Weights of the unused layers and pre-training heads are skipped.
        """
        from transformers import Wav2Vec2Model

        model = Wav2Vec2Model.from_pretrained(str(name_or_path), num_hidden_layers=layer, **hub_kwargs)
        return cls(model, layer=layer)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def forward(self, wav: Tensor) -> Tensor:
        """``[B, N]`` (or ``[N]`` / ``[B, 1, N]``) raw 16 kHz audio → ``[B, C, N // 320]``.

        The waveform is fed unnormalised, as the released models saw it.
        """
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        elif wav.dim() == 3 and wav.size(1) == 1:
            wav = wav.squeeze(1)
        if wav.dim() != 2:
            raise AudioError(f"expected a waveform [B, N], got shape {tuple(wav.shape)}")
        if wav.size(-1) < HOP_LENGTH:
            raise AudioError(
                f"audio too short for semantic features: {wav.size(-1)} samples, need at least {HOP_LENGTH}"
            )
        dtype = next(self.model.parameters()).dtype
        wav = F.pad(wav.to(dtype).unsqueeze(1), (REFLECT_PAD, REFLECT_PAD), mode="reflect").squeeze(1)
        hidden = self._hidden_state(wav)
        return hidden.transpose(1, 2)  # [B, T, C] -> [B, C, T]

    def _hidden_state(self, wav: Tensor) -> Tensor:
        """Hidden state ``self.layer`` of the transformers encoder, without its final LayerNorm: [B, T, C]."""
        model = self.model
        features = model.feature_extractor(wav).transpose(1, 2)
        hidden, _ = model.feature_projection(features)
        encoder = model.encoder
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not model.config.do_stable_layer_norm:
            hidden = encoder.layer_norm(hidden)  # post-LN encoders normalise the input, not the output
        hidden = encoder.dropout(hidden)
        for block in encoder.layers[: self.layer]:
            out = block(hidden, attention_mask=None)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden
