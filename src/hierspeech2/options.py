"""The options of each pipeline, with their defaults in one place.

One frozen dataclass per pipeline. The pipelines take one (or its fields as keywords), their calls
take per-call overrides of the :data:`CALL_FIELDS`, and the ``hierspeech2`` command builds its
flags and defaults from the same classes. This module imports no torch, so ``--help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from typing_extensions import Self


from .constants import OUTPUT_RATES
from .errors import SettingError

__all__ = [
    "DEFAULT_LANGUAGE",
    "DEFAULT_NOISE_SCALE",
    "EVALUATION_METRICS",
    "OFFICIAL_DENOISE_RATIO",
    "OFFLINE_EVALUATION_MODELS",
    "SCALE_NORMS",
    "EvaluationOptions",
    "ScaleNorm",
    "ServerOptions",
    "SuperResolutionOptions",
    "TextToSpeechOptions",
    "VoiceConversionOptions",
]

ScaleNorm = Literal["max", "prompt", "none"]
SCALE_NORMS: tuple[str, ...] = ("max", "prompt", "none")
DEFAULT_NOISE_SCALE = 0.333
"""The official inference scripts' noise scale of the TTV and backbone priors."""
OFFICIAL_DENOISE_RATIO = 0.8
"""The official inference scripts' ``--denoise_ratio``: the default whenever a denoiser is configured."""
F0_METHOD_NAMES: tuple[str, ...] = ("yaapt", "swift", "praat")
"""Restates :data:`hierspeech2.pitch.F0_METHODS` so that this module needs no torch.

A test keeps the two equal.
"""
MAX_PIECE_CHARS = 200
"""Longest text piece for one TTV call: the official scripts' practical limit."""
DEFAULT_LANGUAGE = "en"
"""The language of the released text-to-vec model (English, as espeak-ng's ``en-us``)."""
FIRST_PIECE_CHARS = 60
"""Streaming TTS cuts its first piece to about this many characters (at a clause or word
boundary), so that the first audio comes early; later pieces are spoken while it plays."""
FIRST_BLOCK_SECONDS = 0.48
"""Streaming TTS renders this much of its first piece in its first backbone call (later windows
double)."""


class _Defaults:
    """Field names, defaults and checked copies of a frozen options dataclass."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field ``name``."""
        return next(field.default for field in dataclasses.fields(cls) if field.name == name)  # type: ignore[arg-type]

    def updated(self, overrides: Mapping[str, Any] | None = None, /, **more: Any) -> Self:
        """A copy with the given fields replaced.

        ``None`` values keep the current value; unknown names are an error.
        """
        changes = {**(overrides or {}), **more}
        unknown = sorted(changes.keys() - set(self.field_names()))
        if unknown:
            raise TypeError(
                f"unknown {type(self).__name__} field(s) {unknown}; known: {sorted(self.field_names())}"
            )
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[type-var]


@dataclass(frozen=True)
class _PipelineOptions(_Defaults):
    CALL_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields a single call may override."""

    def __post_init__(self) -> None:
        if self.scale_norm not in SCALE_NORMS:
            raise SettingError(f"scale_norm must be one of {', '.join(SCALE_NORMS)}, got {self.scale_norm!r}")
        _check_int("batch_size", self.batch_size, minimum=1)
        rate = getattr(self, "output_rate", None)
        if rate is not None and rate not in OUTPUT_RATES:
            raise SettingError(
                f"output_rate must be one of {', '.join(map(str, OUTPUT_RATES))}, got {rate!r}"
            )
        if getattr(self, "denoise_ratio", None) is not None:
            self._set_number("denoise_ratio", 0.0, 1.0)
        for name in ("noise_scale", "noise_scale_ttv", "noise_scale_vc", "noise_scale_w"):
            if hasattr(self, name):
                self._set_number(name, 0.0, None)
        if hasattr(self, "length_scale"):
            self._set_number("length_scale", 0.0, None, open_low=True)

    def _set_number(self, name: str, low: float, high: float | None, open_low: bool = False) -> None:
        """Check field ``name`` and store it as a float (frozen, hence ``object.__setattr__``)."""
        object.__setattr__(self, name, _checked_float(name, getattr(self, name), low, high, open_low))

    def for_call(self, overrides: Mapping[str, Any]) -> Self:
        """The options of one call: only :attr:`CALL_FIELDS` may be overridden per call."""
        unknown = sorted(overrides.keys() - set(self.CALL_FIELDS))
        if unknown:
            raise TypeError(f"unknown setting(s) {unknown}; known: {sorted(self.CALL_FIELDS)}")
        return self.updated(overrides)


@dataclass(frozen=True)
class SuperResolutionOptions(_PipelineOptions):
    """:class:`~hierspeech2.pipelines.SuperResolution`.

    Attributes:
        scale_norm: "max" (peak 0.999, official), "prompt" (the input's peak) or "none".
        batch_size: windows per model call.
    """

    scale_norm: ScaleNorm = "max"
    batch_size: int = 1


@dataclass(frozen=True)
class VoiceConversionOptions(_PipelineOptions):
    """:class:`~hierspeech2.pipelines.VoiceConversion`.

    Attributes:
        output_rate: 16000, 24000 or 48000; None takes the SpeechSR's rate (16000 without one).
        noise_scale: prior noise of the backbone (0: deterministic).
        denoise_ratio: weight of the denoised prompt's style, 0–1; None takes
            :data:`OFFICIAL_DENOISE_RATIO` with a denoiser, 0 without.
        scale_norm: "max" (peak 0.999, official), "prompt" (the prompt's peak) or "none".
        f0_extractor: a name from :data:`hierspeech2.pitch.F0_METHODS` ("yaapt", official) or a
            callable ``[N] → Hz [N / 80]``.
        batch_size: windows per model call.
    """

    CALL_FIELDS: ClassVar[tuple[str, ...]] = ("noise_scale", "denoise_ratio")

    output_rate: int | None = None
    noise_scale: float = DEFAULT_NOISE_SCALE
    denoise_ratio: float | None = None
    scale_norm: ScaleNorm = "max"
    f0_extractor: Any = "yaapt"
    batch_size: int = 1


@dataclass(frozen=True)
class TextToSpeechOptions(_PipelineOptions):
    """:class:`~hierspeech2.pipelines.TextToSpeech`.

    Attributes:
        output_rate: 16000, 24000 or 48000; None takes the SpeechSR's rate (16000 without one).
        noise_scale_ttv: prior noise of the text-to-vec model.
        noise_scale_vc: prior noise of the backbone.
        noise_scale_w: noise of the stochastic duration predictor.
        length_scale: speaking time (> 1 slower, < 1 faster).
        denoise_ratio: as :class:`VoiceConversionOptions`.
        scale_norm: as :class:`VoiceConversionOptions`.
        max_piece_chars: longest text piece for one TTV call.
        batch_size: text pieces per TTV call.
        language: language of the text, a code espeak-ng speaks (``en``, ``es``, ``fr-FR``, ``ko``);
            the model's symbol table must be able to write its phonemes (the released
            text-to-vec model: English).
    """

    CALL_FIELDS: ClassVar[tuple[str, ...]] = (
        "noise_scale_ttv",
        "noise_scale_vc",
        "noise_scale_w",
        "length_scale",
        "denoise_ratio",
        "language",
    )

    output_rate: int | None = None
    noise_scale_ttv: float = DEFAULT_NOISE_SCALE
    noise_scale_vc: float = DEFAULT_NOISE_SCALE
    noise_scale_w: float = 1.0
    length_scale: float = 1.0
    denoise_ratio: float | None = None
    scale_norm: ScaleNorm = "max"
    max_piece_chars: int = MAX_PIECE_CHARS
    batch_size: int = 8
    language: str = DEFAULT_LANGUAGE

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("max_piece_chars", self.max_piece_chars, minimum=1)
        if not isinstance(self.language, str) or not self.language.strip():
            raise SettingError(
                f"language must be a language code such as 'en' or 'es', got {self.language!r}"
            )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _checked_float(name: str, value: Any, low: float, high: float | None, open_low: bool = False) -> float:
    """``value`` as a float, or a :class:`SettingError` when it is no number, NaN/Inf or out of range."""
    try:
        if isinstance(value, (bool, str, bytes)):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a number, got {value!r}") from None
    too_low = number <= low if open_low else number < low
    if not math.isfinite(number) or too_low or (high is not None and number > high):
        if high is not None:
            raise SettingError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        raise SettingError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


EVALUATION_METRICS: tuple[str, ...] = ("wer", "sim", "mos", "lsd", "f0")
"""Metric groups of an evaluation: WER and CER (needs a job's ``text``), speaker similarity
(``prompt``), predicted MOS, log-spectral distance (``reference``), F0 agreement (``source`` or
``reference``)."""
OFFLINE_EVALUATION_MODELS = {
    "asr_model": "pocketsphinx",
    "speaker_model": "resemblyzer",
    "mos_model": "dnsmos",
}
"""The evaluation models that ship in installed wheels (``hierspeech2 evaluate --offline``)."""
TEXT_NORMALIZATIONS: tuple[str, ...] = ("basic", "whisper", "none")


@dataclass(frozen=True)
class EvaluationOptions(_Defaults):
    """Every choice of an evaluation run (``evaluate_jobs``), with the field's defaults.

    Attributes:
        metrics: metric groups of :data:`EVALUATION_METRICS`; ``None``: all that a job's columns allow.
        asr_model: :func:`~hierspeech2.evaluation.transcribe`'s model (Whisper-large-v3 by default).
        language: the language of the texts, given to the ASR model (``None``: Whisper detects it).
        normalization: text normalisation before WER/CER (``basic``, ``whisper``, ``none``).
        speaker_model: :func:`~hierspeech2.evaluation.speaker_similarity`'s encoder.
        mos_model: :func:`~hierspeech2.evaluation.predicted_mos`'s predictor.
        f0_method: F0 extractor of the F0 metrics (``yaapt``, ``swift``, ``praat``).
        device: where the models run.
        batch_size: jobs scored together (and appended to the CSV together).
    """

    metrics: tuple[str, ...] | None = None
    asr_model: str = "whisper"
    language: str | None = "en"
    normalization: str = "basic"
    speaker_model: str = "wavlm"
    mos_model: str = "utmos"
    f0_method: str = "swift"
    device: str = "cpu"
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.metrics is not None:
            object.__setattr__(self, "metrics", tuple(self.metrics))
            unknown = sorted(set(self.metrics) - set(EVALUATION_METRICS))
            if unknown:
                raise SettingError(f"unknown metric(s) {unknown}; choose from {list(EVALUATION_METRICS)}")
        if self.normalization not in TEXT_NORMALIZATIONS:
            raise SettingError(
                f"normalization must be one of {list(TEXT_NORMALIZATIONS)}, got {self.normalization!r}"
            )
        if self.f0_method not in F0_METHOD_NAMES:
            raise SettingError(f"f0_method must be one of {list(F0_METHOD_NAMES)}, got {self.f0_method!r}")
        _check_int("batch_size", self.batch_size, minimum=1)

    def offline(self) -> Self:
        """These options with the models that need no download."""
        return self.updated(OFFLINE_EVALUATION_MODELS)


RESPONSE_FORMATS: tuple[str, ...] = ("wav", "flac", "pcm", "mp3", "opus")
"""Audio formats of ``hierspeech2 serve`` (OpenAI's names; ``pcm`` is raw 16-bit little-endian mono)."""


@dataclass(frozen=True)
class ServerOptions(_Defaults):
    """Limits and settings of ``hierspeech2 serve`` (:func:`hierspeech2.serving.create_app`).

    Attributes:
        api_key: when set, every ``/v1`` request needs ``Authorization: Bearer <api_key>``.
        max_text_chars: longest ``input`` of a speech request (OpenAI's limit is 4096).
        max_upload_bytes: largest uploaded file.
        max_audio_seconds: longest uploaded audio (source, file to super-resolve).
        max_prompt_seconds: longest voice prompt kept (longer uploads are cut).
        queue_size: requests waiting for a worker; more are answered 429 with ``Retry-After``.
        request_timeout: seconds a request may wait and run before it is answered 503.
        voice_cache_size: encoded voice prompts kept (least recently used dropped first).
        max_voices: uploaded voices kept at once.
        first_piece_chars: streaming TTS cuts its first piece to about this many characters.
        first_block_seconds: streaming TTS renders this much audio in its first backbone call.
        sr_batch_size: super-resolution requests of equal length run together, up to this many.
    """

    api_key: str | None = None
    max_text_chars: int = 4096
    max_upload_bytes: int = 25 * 1024 * 1024
    max_audio_seconds: float = 600.0
    max_prompt_seconds: float = 30.0
    queue_size: int = 16
    request_timeout: float = 300.0
    voice_cache_size: int = 32
    max_voices: int = 256
    first_piece_chars: int = FIRST_PIECE_CHARS
    first_block_seconds: float = FIRST_BLOCK_SECONDS
    sr_batch_size: int = 8

    def __post_init__(self) -> None:
        for name in ("max_text_chars", "max_upload_bytes", "queue_size", "voice_cache_size", "max_voices"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("first_piece_chars", self.first_piece_chars, minimum=1)
        _check_int("sr_batch_size", self.sr_batch_size, minimum=1)
        for name in ("max_audio_seconds", "max_prompt_seconds", "request_timeout", "first_block_seconds"):
            self._set_number(name, 0.0, None, open_low=True)

    def _set_number(self, name: str, low: float, high: float | None, open_low: bool = False) -> None:
        object.__setattr__(self, name, _checked_float(name, getattr(self, name), low, high, open_low))
