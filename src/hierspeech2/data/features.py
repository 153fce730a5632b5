"""Per-utterance features for the training caches: 16 kHz audio, MMS features, F0 and phoneme tokens.

The work is split in two so preprocessing can run the CPU-bound part (decoding, resampling, F0,
phonemes) in worker processes and the semantic encoder once, in the main process, on any device:
:func:`prepare_utterance` (picklable inputs and outputs) and :class:`SemanticFeatures`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, get_args

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from hierspeech2.audio import pad_to_multiple, read_audio, resample, validate_waveform
from hierspeech2.constants import (
    F0_FRAMES_PER_HOP,
    F0_HOP,
    HOP_LENGTH,
    MODEL_SAMPLE_RATE,
    PAD_MULTIPLE,
    SEMANTIC_LAYER,
)
from hierspeech2.data.corpora import Utterance
from hierspeech2.errors import AudioError, HierSpeechError, TextError
from hierspeech2.pitch import f0_extractor as named_f0_extractor

__all__ = [
    "ModelKind",
    "PreparedUtterance",
    "SemanticFeatures",
    "UnusableUtterance",
    "prepare_utterance",
    "resolve_f0_extractor",
]

logger = logging.getLogger(__name__)

ModelKind = Literal["backbone", "ttv", "speechsr"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
MIN_SAMPLES = 2 * HOP_LENGTH  # shorter audio gives no usable frame for MMS or YAAPT


class UnusableUtterance(HierSpeechError):
    """An utterance the preprocessing skips and reports (unreadable, too short, no phonemes …)."""


def resolve_f0_extractor(spec: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The F0 extractor preprocessing runs: :func:`hierspeech2.pitch.f0_extractor` with the training variant.

    ``spec`` is a method name (``"yaapt"``, the default of the TTV's preprocessing with f0_max
    400 Hz; ``"swift"`` the fast alternative for large corpora; ``"praat"`` needs the GPL-3 extra),
    a name with its variant (``"yaapt-inference"``), a ``"package.module:function"`` path or a
    callable. The extractor maps 16 kHz audio ``[N]`` (N a multiple of 1280) to F0 in Hz
    ``[1, 1, N / 80]`` (or anything reshaping to ``[N / 80]``), 0 on unvoiced frames. Worker
    processes need it picklable: a module-level function (the named ones are).
    """
    return named_f0_extractor(spec, "training")


@dataclass
class PreparedUtterance:
    """CPU-side features of one utterance: everything but the semantic features.

    ``audio`` is int16 PCM ``[N]`` (16 kHz padded to a multiple of 1280 for backbone/TTV; the
    target rate, unpadded, for SpeechSR), ``f0`` float32 ``[N / 80]`` Hz, ``tokens`` int64
    phoneme ids with blanks (TTV only).
    """

    utterance: Utterance
    sample_rate: int
    audio: np.ndarray
    num_samples: int  # before padding
    f0: np.ndarray | None = None
    tokens: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.audio.shape[-1] // HOP_LENGTH if self.sample_rate == MODEL_SAMPLE_RATE else 0


def to_pcm16(wav: Tensor) -> np.ndarray:
    """Float waveform in [-1, 1] → int16 PCM (clipped), as the official 16 kHz corpus copies stored it."""
    return (wav.clamp(-1.0, 32767 / 32768) * 32768.0).round().to(torch.int16).numpy()


def from_pcm16(pcm: np.ndarray | Tensor) -> Tensor:
    """int16 PCM → float32 waveform in [-1, 1]."""
    pcm = torch.as_tensor(pcm)
    return pcm.float() / 32768.0


def _read(utterance: Utterance) -> tuple[Tensor, int]:
    """The utterance's audio (its ``start``-``end`` piece when set) as mono float32 ``[N]`` and its rate."""
    if utterance.start == 0.0 and utterance.end is None:
        return read_audio(utterance.path)
    try:
        rate = sf.info(utterance.path).samplerate
        first = round(utterance.start * rate)
        last = None if utterance.end is None else round(utterance.end * rate)
        data, rate = sf.read(utterance.path, start=first, stop=last, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"cannot read {utterance.path} from {utterance.start} s: {error}") from error
    if data.shape[0] == 0:
        raise AudioError(f"{utterance.path} has no samples between {utterance.start} and {utterance.end} s")
    return validate_waveform(torch.from_numpy(data).mean(dim=1), name=utterance.path), int(rate)


def prepare_utterance(
    utterance: Utterance,
    model: ModelKind,
    f0_extractor: str | Callable[[Tensor], Tensor] = "yaapt",
    target_rate: int = 48_000,
    symbols: tuple[str, ...] | None = None,
) -> PreparedUtterance:
    """Decode, resample and run the CPU features of one utterance; raises :class:`UnusableUtterance`.

    ``model="ttv"`` maps the transcript to ids of ``symbols`` (None: the released table); phonemes
    outside it are dropped without a warning here, since preprocessing reports them once for the
    corpus (:mod:`hierspeech2.data.symbol_survey`).

    ``model="speechsr"`` keeps the audio at ``target_rate`` (no F0 or tokens) and rejects sources
    recorded below it: upsampled audio would teach the model to invent nothing.
    """
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown model {model!r}; use one of {MODEL_KINDS}")
    try:
        wav, rate = _read(utterance)
    except AudioError as error:
        raise UnusableUtterance(f"unreadable audio: {error}") from error

    if model == "speechsr":
        if rate < target_rate:
            raise UnusableUtterance(
                f"recorded at {rate} Hz, below the {target_rate} Hz SpeechSR target; use a corpus "
                f"recorded at {target_rate} Hz or more"
            )
        wav = resample(wav, rate, target_rate)
        if wav.shape[-1] < MIN_SAMPLES * target_rate // MODEL_SAMPLE_RATE:
            raise UnusableUtterance(f"too short: {wav.shape[-1]} samples at {target_rate} Hz")
        return PreparedUtterance(utterance, target_rate, to_pcm16(wav), wav.shape[-1])

    wav = resample(wav, rate, MODEL_SAMPLE_RATE)
    if wav.shape[-1] < MIN_SAMPLES:
        raise UnusableUtterance(f"too short: {wav.shape[-1]} samples at 16 kHz (need {MIN_SAMPLES})")
    num_samples = wav.shape[-1]
    wav = pad_to_multiple(wav, PAD_MULTIPLE)
    pcm = to_pcm16(wav)
    # F0 from the stored (quantised) waveform, so that cache and features agree exactly.
    wav = from_pcm16(pcm)
    prepared = PreparedUtterance(utterance, MODEL_SAMPLE_RATE, pcm, num_samples)

    expected_f0 = wav.shape[-1] // F0_HOP
    extractor = resolve_f0_extractor(f0_extractor)
    try:
        f0 = torch.as_tensor(extractor(wav)).reshape(-1).float()
    except AudioError as error:
        # Official preprocessing stores zeros when YAAPT fails; the TTV filter then drops the item.
        prepared.warnings.append(f"F0 extraction failed ({error}); stored zeros")
        f0 = wav.new_zeros(expected_f0)
    if f0.shape[-1] != expected_f0:
        raise UnusableUtterance(
            f"F0 extractor returned {f0.shape[-1]} frames for {wav.shape[-1]} samples; expected "
            f"{expected_f0} ({F0_FRAMES_PER_HOP} per {HOP_LENGTH}-sample hop)"
        )
    prepared.f0 = f0.numpy()

    if model == "ttv":
        if not utterance.text:
            raise UnusableUtterance("no transcript (the text-to-vec model trains on text)")
        from hierspeech2.text import text_to_tokens

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tokens = text_to_tokens(utterance.text, utterance.language, symbols, on_unknown="drop")
            prepared.tokens = tokens.numpy()
        except (TextError, RuntimeError) as error:
            raise UnusableUtterance(f"no phonemes for {utterance.text!r}: {error}") from error
    return prepared


class SemanticFeatures:
    """MMS features of 16 kHz PCM, computed on ``device`` and returned as float16 ``[1024, T]`` on CPU.

    ``encoder`` is any module mapping ``[1, N]`` float audio to ``[1, C, N // 320]`` (a
    :class:`hierspeech2.ssl.SemanticEncoder`, e.g. the tiny ``RandomSemanticEncoder``). Without
    it, ``SemanticEncoder.from_pretrained(name_or_path, layer)`` is loaded by :meth:`load` or on
    first use (``name_or_path`` defaults to ``facebook/mms-300m``; it also names the encoder in the
    cache, and a given encoder is named by its ``name`` attribute, else its class).
    """

    def __init__(
        self,
        encoder: torch.nn.Module | None = None,
        name_or_path: str | os.PathLike | None = None,
        layer: int = SEMANTIC_LAYER,
        device: str | torch.device = "cpu",
    ) -> None:
        self._encoder = encoder
        if name_or_path is None:
            default = "facebook/mms-300m" if encoder is None else type(encoder).__name__
            name_or_path = getattr(encoder, "name", None) or default
        self.name_or_path = str(name_or_path)
        self.layer = layer
        self.device = torch.device(device)

    @property
    def encoder(self) -> torch.nn.Module:
        return self.load()

    def load(self) -> torch.nn.Module:
        """The encoder, loaded now if it was not given (a missing download fails here, in one line)."""
        if self._encoder is None:
            from hierspeech2.ssl import SemanticEncoder

            logger.debug("loading semantic encoder %s (layer %d)", self.name_or_path, self.layer)
            self._encoder = SemanticEncoder.from_pretrained(self.name_or_path, layer=self.layer)
        return self._encoder.to(self.device).eval()

    def describe(self) -> dict:
        """What the cache records about the encoder (to refuse resuming with another one)."""
        return {"name": self.name_or_path, "layer": self.layer}

    @torch.inference_mode()
    def __call__(self, pcm: np.ndarray) -> Tensor:
        """int16 PCM ``[N]`` (N a multiple of 320) → float16 ``[C, N // 320]`` on CPU."""
        wav = from_pcm16(pcm)[None].to(self.device)
        semantic = self.encoder(wav)[0]
        expected = pcm.shape[-1] // HOP_LENGTH
        if semantic.shape[-1] != expected:
            raise UnusableUtterance(
                f"semantic encoder returned {semantic.shape[-1]} frames for {pcm.shape[-1]} samples; "
                f"expected {expected} (one per {HOP_LENGTH} samples)"
            )
        return semantic.to("cpu", torch.float16)


def make_prepare(
    model: ModelKind,
    f0_extractor: str | Callable[[Tensor], Tensor],
    target_rate: int,
    symbols: tuple[str, ...] | None = None,
) -> Callable[[Utterance], PreparedUtterance]:
    """``prepare_utterance`` with the run's settings bound (picklable when ``f0_extractor`` is)."""
    return partial(
        prepare_utterance, model=model, f0_extractor=f0_extractor, target_rate=target_rate, symbols=symbols
    )
