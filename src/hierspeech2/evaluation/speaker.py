"""Speaker similarity: the cosine of two utterances' speaker embeddings.

Encoders are named:

* ``"wavlm"``: ``microsoft/wavlm-base-plus-sv`` (an x-vector head on WavLM base+) through transformers;
* ``"resemblyzer"``: Resemblyzer's GE2E encoder, which ships in its wheel, so it runs with no
  download (Seed-VC's default);
* any other Hugging Face id or local folder of an ``…ForXVector`` model.

Scores from different encoders live on different scales (GE2E scores two strangers well above
zero, x-vector cosines sit near zero for them), so only scores of one encoder can be compared.
seed-tts-eval and F5-TTS report SIM with WavLM-large + ECAPA-TDNN fine-tuned for verification
(UniSpeech's ``wavlm_large_finetune``); HierSpeech++ reports SECS and EER from a verification
model too. None of those numbers can be compared with scores of this module's encoders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .asr import ASR_SAMPLE_RATE, HubAudioModel, _batched, _mono16k_all

__all__ = [
    "SPEAKER_MODELS",
    "SpeakerEncoder",
    "load_speaker_encoder",
    "speaker_embeddings",
    "speaker_similarity",
]

SPEAKER_MODELS = {"wavlm": "microsoft/wavlm-base-plus-sv", "resemblyzer": "resemblyzer"}
"""Short name → model id."""


class SpeakerEncoder(Protocol):
    """Turns a batch of 16 kHz mono waveforms into unit-length speaker embeddings ``[B, D]``."""

    def __call__(self, waveforms: Sequence[Tensor]) -> Tensor: ...


def speaker_embeddings(
    audio: Tensor | Sequence[Tensor],
    sample_rate: int,
    model: str = "wavlm",
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
) -> Tensor:
    """Unit-length speaker embeddings ``[B, D]`` of one waveform or a sequence of them (any rate)."""
    batches = _batched(_mono16k_all(audio, sample_rate), batch_size)
    if not batches:
        raise ValueError("no audio to embed")
    encoder = load_speaker_encoder(model, str(torch.device(device)))
    parts = [encoder(batch) for batch in batches]
    return F.normalize(torch.cat(parts).float().cpu(), dim=-1)


def speaker_similarity(
    a: Tensor | Sequence[Tensor],
    b: Tensor | Sequence[Tensor],
    sample_rate: int,
    model: str = "wavlm",
    *,
    sample_rate_b: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
) -> Tensor:
    """Cosine similarity ``[B]`` of ``a[i]`` and ``b[i]``'s speaker embeddings (in [-1, 1]).

    Args:
        a, b: one waveform each or equally many; ``b`` may be at another rate (``sample_rate_b``).
        model: a name of :data:`SPEAKER_MODELS`, a Hugging Face id or a local folder.
    """
    first = speaker_embeddings(a, sample_rate, model, device=device, batch_size=batch_size)
    second = speaker_embeddings(b, sample_rate_b or sample_rate, model, device=device, batch_size=batch_size)
    if first.shape[0] != second.shape[0]:
        raise ValueError(f"{first.shape[0]} waveforms in a but {second.shape[0]} in b")
    return (first * second).sum(dim=-1)


@lru_cache(maxsize=2)
def load_speaker_encoder(model: str, device: str = "cpu") -> SpeakerEncoder:
    """The encoder for ``model`` (a short name, an id or a folder) on ``device``, loaded once."""
    model_id = SPEAKER_MODELS.get(model, model)
    if model_id == "resemblyzer":
        return Resemblyzer(device)
    return XVectorEncoder(model_id, device)


class Resemblyzer:
    """Resemblyzer's GE2E voice encoder (3-layer LSTM over 40 mel bands, 256-d embeddings).

    Its own preprocessing runs first (volume normalised, silences longer than 0.2 s cut by WebRTC
    VAD); an utterance is embedded as the mean of its 1.6 s windows.
    """

    def __init__(self, device: str) -> None:
        import warnings

        with warnings.catch_warnings():  # pkg_resources (webrtcvad), scipy.ndimage.morphology (Resemblyzer)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder, preprocess_wav
        self.preprocess = preprocess_wav
        self.encoder = VoiceEncoder(device=device, verbose=False)

    def __call__(self, waveforms: Sequence[Tensor]) -> Tensor:
        embeddings = []
        for wav in waveforms:
            trimmed = self.preprocess(wav.numpy())  # already at its 16 kHz
            if trimmed.size < ASR_SAMPLE_RATE // 10:  # VAD heard no voice (noise, an untrained model)
                trimmed = wav.numpy()
            embeddings.append(torch.from_numpy(self.encoder.embed_utterance(trimmed)))
        return torch.stack(embeddings)


class XVectorEncoder(HubAudioModel):
    """An x-vector model of transformers (``WavLMForXVector``, ``Wav2Vec2ForXVector``…)."""

    decodes_text = False

    def __init__(self, model_id: str | os.PathLike[str], device: str) -> None:
        from transformers import AutoModelForAudioXVector

        super().__init__(model_id, device, AutoModelForAudioXVector)

    @torch.inference_mode()
    def __call__(self, waveforms: Sequence[Tensor]) -> Tensor:
        return self.model(**self.inputs(waveforms)).embeddings
