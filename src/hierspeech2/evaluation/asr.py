"""Speech recognition for intelligibility scores: Whisper, CTC models (HuBERT) and offline PocketSphinx.

:func:`transcribe` takes waveforms at any rate and returns text. Models are named:

* ``"whisper"``: ``openai/whisper-large-v3`` through transformers, the field's default (F5-TTS and
  seed-tts-eval score English with it; HierSpeech++ reported Whisper-large CER/WER);
* ``"hubert"``: ``facebook/hubert-large-ls960-ft``, a CTC model (VALL-E and NaturalSpeech 2 scored with it);
* ``"pocketsphinx"``: CMU PocketSphinx's English model, which ships in the ``pocketsphinx`` wheel,
  so it runs with no download. It is far weaker than the two above (a WER several times higher on
  the same speech), so use it to compare systems with each other, never with published figures;
* any other Hugging Face id or local folder of a Whisper or CTC model.

A loaded model is kept (:func:`load_transcriber` is cached per name and device).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import torch
from torch import Tensor

from ..audio import resample, validate_waveform
from ..constants import MODEL_SAMPLE_RATE

__all__ = ["ASR_MODELS", "Transcriber", "load_transcriber", "transcribe"]

ASR_MODELS = {
    "whisper": "openai/whisper-large-v3",
    "hubert": "facebook/hubert-large-ls960-ft",
    "pocketsphinx": "pocketsphinx",
}
"""Short name → model id."""

ASR_SAMPLE_RATE = MODEL_SAMPLE_RATE  # all three families take 16 kHz


class Transcriber(Protocol):
    """Turns a batch of 16 kHz mono waveforms (1-D, float in [-1, 1]) into text."""

    def __call__(self, waveforms: Sequence[Tensor], language: str | None = None) -> list[str]: ...


def transcribe(
    audio: Tensor | Sequence[Tensor],
    sample_rate: int,
    model: str = "whisper",
    *,
    language: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
) -> list[str]:
    """Transcribe one waveform (``[N]`` or ``[1, N]``) or a sequence of them; one string each.

    Args:
        audio: waveforms at ``sample_rate``, resampled here to 16 kHz.
        model: a name of :data:`ASR_MODELS`, a Hugging Face id or a local model folder.
        language: Whisper's language (``"en"``, ``"ko"``…); ``None`` lets Whisper detect it. CTC
            models and PocketSphinx are English-only and refuse another language.
        device: where the model runs.
        batch_size: waveforms per forward pass.
    """
    batches = _batched(_mono16k_all(audio, sample_rate), batch_size)
    transcriber = load_transcriber(model, str(torch.device(device)))
    texts: list[str] = []
    for batch in batches:
        texts.extend(transcriber(batch, language=language))
    return texts


def _mono16k_all(audio: Tensor | Sequence[Tensor], sample_rate: int) -> list[Tensor]:
    """One waveform (``[N]`` or ``[1, N]``) or a sequence of them → mono float 16 kHz ``[N]`` each (CPU)."""
    one = isinstance(audio, Tensor) and (audio.dim() == 1 or (audio.dim() == 2 and audio.shape[0] == 1))
    waveforms = [audio] if one else list(audio)
    return [_mono16k(wav, sample_rate, index) for index, wav in enumerate(waveforms)]


def _batched(waveforms: list[Tensor], batch_size: int) -> list[list[Tensor]]:
    """``waveforms`` in consecutive batches of ``batch_size`` (the last may be shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return [waveforms[start : start + batch_size] for start in range(0, len(waveforms), batch_size)]


def _mono16k(wav: Tensor, sample_rate: int, index: int) -> Tensor:
    wav = validate_waveform(wav, f"audio {index}")
    if wav.dim() == 2:
        if wav.shape[0] != 1:
            raise ValueError(f"audio {index} must be mono [N] or [1, N], got shape {tuple(wav.shape)}")
        wav = wav[0]
    wav = wav.detach().float().cpu()
    if sample_rate != ASR_SAMPLE_RATE:
        wav = resample(wav, sample_rate, ASR_SAMPLE_RATE)
    return wav


@lru_cache(maxsize=2)
def load_transcriber(model: str, device: str = "cpu") -> Transcriber:
    """The transcriber for ``model`` (a short name, an id or a folder) on ``device``, loaded once."""
    model_id = ASR_MODELS.get(model, model)
    if model_id == "pocketsphinx":
        return PocketSphinx()
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_id)
    if config.model_type == "whisper":
        return WhisperTranscriber(model_id, device)
    return CTCTranscriber(model_id, device)


def _english_only(name: str, language: str | None) -> None:
    if language not in (None, "en", "eng", "en-us", "en-US"):
        raise ValueError(f"{name} recognises English only; use model='whisper' for language {language!r}")


class PocketSphinx:
    """CMU PocketSphinx with the English acoustic model, dictionary and language model of its wheel.

    Extra keyword arguments are PocketSphinx decoder options (``lm=`` a language model file…).
    """

    def __init__(self, **options: object) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL", **options)

    def __call__(self, waveforms: Sequence[Tensor], language: str | None = None) -> list[str]:
        _english_only("PocketSphinx", language)
        texts = []
        for wav in waveforms:
            pcm = (wav.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().tobytes()
            self.decoder.start_utt()
            self.decoder.process_raw(pcm, full_utt=True)
            self.decoder.end_utt()
            hypothesis = self.decoder.hyp()
            texts.append(hypothesis.hypstr if hypothesis is not None else "")
        return texts


class HubAudioModel:
    """A transformers audio model and its processor (feature extractor), loaded once onto ``device``.

    Models that decode text load the full processor (feature extractor + tokenizer); the others only
    the feature extractor, since recent transformers refuse an ``AutoProcessor`` without a tokenizer.
    """

    decodes_text = True

    def __init__(self, model_id: str | os.PathLike[str], device: str, model_class: Any) -> None:
        from transformers import AutoFeatureExtractor, AutoProcessor

        loader = AutoProcessor if self.decodes_text else AutoFeatureExtractor
        self.processor = loader.from_pretrained(model_id)
        self.model = model_class.from_pretrained(model_id).to(device).eval()
        self.device = torch.device(device)

    def inputs(self, waveforms: Sequence[Tensor], padding: bool = True) -> Any:
        """16 kHz waveforms → the model's input features (with an attention mask), on its device."""
        extra = {"padding": True} if padding else {}
        return self.processor(
            [wav.numpy() for wav in waveforms],
            sampling_rate=ASR_SAMPLE_RATE,
            return_tensors="pt",
            return_attention_mask=True,
            **extra,
        ).to(self.device)


class WhisperTranscriber(HubAudioModel):
    """A Whisper checkpoint through transformers: greedy decoding, as F5-TTS and seed-tts-eval use it."""

    def __init__(self, model_id: str | os.PathLike[str], device: str) -> None:
        from transformers import WhisperForConditionalGeneration

        super().__init__(model_id, device, WhisperForConditionalGeneration)

    @torch.inference_mode()
    def __call__(self, waveforms: Sequence[Tensor], language: str | None = None) -> list[str]:
        inputs = self.inputs(waveforms, padding=False)  # Whisper pads every input to 30 s itself
        options = {"task": "transcribe"} if language is None else {"task": "transcribe", "language": language}
        tokens = self.model.generate(
            inputs.input_features.to(self.model.dtype), attention_mask=inputs.attention_mask, **options
        )
        return [text.strip() for text in self.processor.batch_decode(tokens, skip_special_tokens=True)]


class CTCTranscriber(HubAudioModel):
    """A CTC model (HuBERT, wav2vec 2.0) through transformers: greedy CTC decoding."""

    def __init__(self, model_id: str | os.PathLike[str], device: str) -> None:
        from transformers import AutoModelForCTC

        super().__init__(model_id, device, AutoModelForCTC)

    @torch.inference_mode()
    def __call__(self, waveforms: Sequence[Tensor], language: str | None = None) -> list[str]:
        _english_only("This CTC model", language)
        inputs = self.inputs(waveforms)
        logits = self.model(inputs.input_values, attention_mask=inputs.get("attention_mask")).logits
        texts = self.processor.batch_decode(logits.argmax(dim=-1))
        return [" ".join(text.split()) for text in texts]
