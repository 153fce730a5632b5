"""F0 extraction at the models' pitch rate: 4 frames per 320-sample hop (one per 5 ms at 16 kHz).

Three extractors with one contract (``[N]``, ``[B, N]`` or ``[B, 1, N]`` audio → Hz
``[B, 1, ceil(N / 80)]``, 0 on unvoiced frames), chosen by name with :func:`extract_f0`:

- ``yaapt`` reproduces the official extractor (AMFM_decompy's YAAPT, MIT) bit for bit on the same
  numpy/scipy build, about twice as fast (its frame loops batched: :mod:`hierspeech2.fast_yaapt`);
  YAAPT makes discrete choices (peak picking, dynamic programming), so another build may differ on
  a frame or two. The released models were trained and run on it (the default).
- ``swift`` (:func:`swift_f0`) is SwiftF0 (swift-f0, MIT; a small ONNX model run by onnxruntime),
  about 5x faster than this YAAPT on CPU (10x pYAAPT) and aligned to it: on the shared LibriTTS
  utterances 93 % of frames agree on voicing (both variants), with a median error of 10 cents on
  frames both call voiced. The fast choice for preprocessing large corpora.
- ``praat`` (:func:`praat_f0`) is Praat's autocorrelation pitch tracker, about as fast and closer
  to YAAPT's pitch (7 cents) but less so on voicing (91 % with f0_max 1100, 94 % with 400). It needs
  praat-parselmouth, which is GPL-3 and therefore optional: ``pip install "hierspeech2[praat]"``.

``benchmarks/f0.py`` measures speed and agreement of all three, and what the fast ones change in
voice conversion.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from hierspeech2.audio import _check_rate, resample, validate_waveform
from hierspeech2.constants import HOP_LENGTH, MODEL_SAMPLE_RATE
from hierspeech2.errors import AudioError

if TYPE_CHECKING:
    from swift_f0 import SwiftF0

__all__ = [
    "F0_EXTRACTORS",
    "F0_MAX_HZ",
    "F0_METHODS",
    "F0_MIN_HZ",
    "YAAPT_MIN_SAMPLES",
    "F0Track",
    "extract_f0",
    "f0_extractor",
    "praat_f0",
    "swift_f0",
    "yaapt",
    "yaapt_settings",
]

F0_MIN_HZ = 60.0  # YAAPT's default f0_min; both official callers keep it
# f0_max per variant: official inference_vc.py passes 1100; ttv_v1/preprocessing/extract_f0.py
# (the F0 the TTV was trained on) keeps YAAPT's default of 400.
F0_MAX_HZ = {"inference": 1100.0, "training": 400.0}
FRAME_LENGTH_MS = 20.0
FRAME_SPACE_MS = 5.0
TDA_FRAME_LENGTH_MS = 25.0
NCCF_THRESH1 = 0.25
# Shorter inputs make YAAPT index past its own frame arrays; 320 samples = one model hop.
YAAPT_MIN_SAMPLES = HOP_LENGTH

Variant = Literal["inference", "training"]


def yaapt(
    wav: Tensor | np.ndarray, variant: Variant = "inference", sample_rate: int = MODEL_SAMPLE_RATE
) -> Tensor:
    """YAAPT F0 in Hz (0 = unvoiced) of ``[N]`` or ``[B, N]`` audio → ``[B, 1, ceil(N / 80)]`` float32.

    ``variant="inference"`` is the official voice-conversion call (``f0_max=1100``),
    ``"training"`` the official preprocessing (``f0_max=400``). Frames are 5 ms apart; pad the
    waveform first as the official scripts do (``hierspeech2.audio.pad_to_multiple(wav, 1280)``)
    to get exactly ``N / 80`` frames aligned with the models. Rows without a voiced frame
    (silence) come back as zeros with a warning. The result is on the input's device.
    """
    wav, sample_rate = _checked_rows(wav, variant, sample_rate, "YAAPT", "yaapt")
    rows = wav.detach().to("cpu", torch.float64).numpy()
    f0 = np.stack([_yaapt_row(row, sample_rate, F0_MAX_HZ[variant]) for row in rows])
    return _to_tensor(f0, wav.device, "YAAPT")


def _checked_rows(
    wav: Tensor | np.ndarray, variant: str, sample_rate: int, label: str, function: str
) -> tuple[Tensor, int]:
    """Validate the arguments shared by the extractors → audio ``[B, N]``, checked sample rate."""
    if variant not in F0_MAX_HZ:
        raise ValueError(f"unknown {label} variant {variant!r}; use one of {sorted(F0_MAX_HZ)}")
    sample_rate = _check_rate(sample_rate, "sample_rate")
    wav = validate_waveform(wav, name="wav", min_samples=YAAPT_MIN_SAMPLES * sample_rate // MODEL_SAMPLE_RATE)
    if wav.ndim == 1:
        wav = wav[None]
    elif wav.ndim == 3 and wav.shape[1] == 1:
        wav = wav[:, 0]
    if wav.ndim != 2:
        raise AudioError(f"{function} expects audio [N], [B, N] or [B, 1, N], got shape {tuple(wav.shape)}")
    return wav, sample_rate


def _to_tensor(f0: np.ndarray, device: torch.device, label: str) -> Tensor:
    """F0 rows ``[B, T]`` → float32 ``[B, 1, T]`` on ``device``, warning about rows without voicing."""
    silent = [i for i, row in enumerate(f0) if not row.any()]
    if silent:
        warnings.warn(
            f"{label} found no voiced frame in row(s) {silent} (silence or noise); returning F0 = 0 there",
            stacklevel=3,
        )
    return torch.from_numpy(f0.astype(np.float32))[:, None].to(device)


def _yaapt_row(signal: np.ndarray, sample_rate: int, f0_max: float) -> np.ndarray:
    from hierspeech2.fast_yaapt import yaapt_track

    # Half a frame of zeros on each side centres the first frame on sample 0 (official framing).
    pad = int(FRAME_LENGTH_MS / 1000 * sample_rate) // 2
    padded = np.pad(signal, (pad, pad))
    # Silent stretches make YAAPT divide 0 by 0 and median-filter short arrays; its output is
    # still well defined (unvoiced), so the numeric warnings are noise for the caller.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="kernel_size exceeds volume extent")
        try:
            # samp_values: 0 on unvoiced frames, no interpolation; what the released models were fed.
            return yaapt_track(padded, sample_rate, **yaapt_settings(f0_max))
        except (ValueError, IndexError, ZeroDivisionError, FloatingPointError) as error:
            raise AudioError(
                f"YAAPT failed on a waveform of {signal.shape[-1]} samples ({error}); "
                f"check that it is speech sampled at {sample_rate} Hz"
            ) from error


def yaapt_settings(f0_max: float) -> dict[str, float]:
    """The official callers' YAAPT keyword arguments (AMFM_decompy's names) for ``f0_max``."""
    return {
        "frame_length": FRAME_LENGTH_MS,
        "frame_space": FRAME_SPACE_MS,
        "nccf_thresh1": NCCF_THRESH1,
        "tda_frame_length": TDA_FRAME_LENGTH_MS,
        "f0_min": F0_MIN_HZ,
        "f0_max": f0_max,
    }


def praat_f0(
    wav: Tensor | np.ndarray, variant: Variant = "inference", sample_rate: int = MODEL_SAMPLE_RATE
) -> Tensor:
    """Praat F0 in Hz (0 = unvoiced) of ``[N]`` or ``[B, N]`` audio → ``[B, 1, ceil(N / 80)]`` float32.

    A fast stand-in for :func:`yaapt` with the same contract: frames, F0 range per ``variant``,
    input checks, and zeros with a warning for rows without a voiced frame. It agrees with YAAPT
    on 91-94 % of the frames' voicing (the released models were trained on YAAPT's F0);
    ``benchmarks/f0.py --vc-criterion`` measures what the difference does to voice conversion.
    Needs praat-parselmouth (GPL-3, hence optional): ``pip install "hierspeech2[praat]"``.
    """
    wav, sample_rate = _checked_rows(wav, variant, sample_rate, "F0", "praat_f0")
    parselmouth = _import_parselmouth()
    rows = wav.detach().to("cpu", torch.float64).numpy()
    f0 = np.stack([_praat_row(parselmouth, row, sample_rate, F0_MAX_HZ[variant]) for row in rows])
    return _to_tensor(f0, wav.device, "Praat")


# Praat settings, chosen on the shared LibriTTS utterances for the best agreement with YAAPT
# (benchmarks/f0.py; a grid over method, thresholds and costs). Autocorrelation (to_pitch_ac)
# rather than cross-correlation: cc at its best agrees as often on voicing but has a 1.5x larger
# 95th-percentile error and takes 3x the CPU time. Praat's defaults otherwise, except a higher
# voiced/unvoiced transition cost (Praat: 0.14), which drops short voiced blips YAAPT does not
# report (+0.5 to 0.9 pt voicing agreement); other thresholds and octave costs gained at most
# 0.1 pt or lost agreement.
# The F0 range stays YAAPT's (60 Hz to f0_max), so Praat's window is 3 periods of 60 Hz, 50 ms;
# a 75 Hz floor (shorter window) agrees no better here.
PRAAT_PERIODS_PER_WINDOW = 3
PRAAT_SETTINGS = {
    "max_number_of_candidates": 15,
    "very_accurate": False,
    "silence_threshold": 0.03,
    "voicing_threshold": 0.45,
    "octave_cost": 0.01,
    "octave_jump_cost": 0.35,
    "voiced_unvoiced_cost": 0.3,
}
# YAAPT's 151-tap band-pass filter is not delay compensated, so its frame i "centred" on sample
# 80 i analyses audio about 75 samples earlier; Praat frames centred 60 samples (3.75 ms) earlier
# agree best (7 instead of 9 cents median error).
YAAPT_DELAY_S = 0.00375


def _import_parselmouth():
    # GPL-3: an optional extra of this MIT package, imported only when asked for.
    try:
        import parselmouth
    except ImportError as error:
        raise ImportError(
            "the 'praat' F0 method needs praat-parselmouth, which is GPL-3 licensed and therefore not "
            'installed with hierspeech2: pip install "hierspeech2[praat]" (or use the MIT-licensed '
            "'swift' method, about as fast)"
        ) from error
    return parselmouth


def _praat_row(parselmouth, signal: np.ndarray, sample_rate: int, f0_max: float) -> np.ndarray:
    hop = int(FRAME_SPACE_MS / 1000 * sample_rate)
    frames = (signal.shape[-1] - 1) // hop + 1  # YAAPT's count, ceil(N / hop)
    delay = round(YAAPT_DELAY_S * sample_rate)
    window = PRAAT_PERIODS_PER_WINDOW * sample_rate / F0_MIN_HZ
    # Praat centres its frame grid in the sound and needs a whole window around every frame.
    # With `lead` samples before the first wanted centre and as many after the last one, and
    # 0 <= 2 lead - window < hop, its grid is exactly the wanted one: frame k at lead + hop k.
    lead = math.ceil(window / 2) + hop // 4
    before = lead + delay
    after = lead + hop * (frames - 1) - delay - signal.shape[-1]
    sound = parselmouth.Sound(np.pad(signal, (before, after)), sampling_frequency=sample_rate)
    pitch = sound.to_pitch_ac(
        time_step=hop / sample_rate, pitch_floor=F0_MIN_HZ, pitch_ceiling=f0_max, **PRAAT_SETTINGS
    )
    f0 = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)  # 0 where unvoiced
    first = pitch.xs()[0] * sample_rate
    if f0.shape[-1] != frames or abs(first - lead) > 1e-3:
        raise RuntimeError(
            f"Praat framed {f0.shape[-1]} frames from sample {first}; expected {frames} from {lead}"
        )
    # YAAPT converts lag L to F0 as rate / (L + 1) (one sample long); copying that bias removes
    # a systematic 10-20 cents (at 100-200 Hz) between the two, so the models see YAAPT's scale.
    voiced = f0 > 0
    f0[voiced] = sample_rate / (sample_rate / f0[voiced] + 1)
    return f0


def swift_f0(
    wav: Tensor | np.ndarray, variant: Variant = "inference", sample_rate: int = MODEL_SAMPLE_RATE
) -> Tensor:
    """SwiftF0 F0 in Hz (0 = unvoiced) of ``[N]`` or ``[B, N]`` audio → ``[B, 1, ceil(N / 80)]`` float32.

    A fast stand-in for :func:`yaapt` with the same contract: frames, F0 range per ``variant``,
    input checks, and zeros with a warning for rows without a voiced frame. It agrees with YAAPT
    on 93 % of the frames' voicing (the released models were trained on YAAPT's F0);
    ``benchmarks/f0.py --vc-criterion`` measures what the difference does to voice conversion.
    Audio at another rate is resampled to 16 kHz, the model's rate; frames stay 5 ms apart.
    """
    wav, sample_rate = _checked_rows(wav, variant, sample_rate, "F0", "swift_f0")
    detector = _swift_detector()
    audio = wav.detach().to("cpu", torch.float32)
    if sample_rate != SWIFT_SAMPLE_RATE:
        audio = resample(audio, sample_rate, SWIFT_SAMPLE_RATE)
    f0 = np.stack(
        [_swift_row(detector, row, wav.shape[-1], sample_rate, F0_MAX_HZ[variant]) for row in audio.numpy()]
    )
    return _to_tensor(f0, wav.device, "SwiftF0")


SWIFT_SAMPLE_RATE = 16_000  # the model's only rate
# SwiftF0 calibrates its confidence so that 0.5 separates voiced from unvoiced. On the shared
# utterances 0.4 agrees with YAAPT's voicing as often but adds pitch errors (p95 96 instead of
# 83 cents); 0.3 and 0.6 agree less (91.4-92.6 % instead of 93.1 %).
SWIFT_VOICED_CONFIDENCE = 0.5
# Like YAAPT's frame j (see YAAPT_DELAY_S), SwiftF0 agrees best when read one 5 ms frame earlier:
# f0[j] = swift(t_{j-1}), f0[0] = 0 (93.1 % voicing agreement instead of 92.9, 10 cents median
# error instead of 13).
SWIFT_FRAME_SHIFT = 1

# One detector per process, built on first use: the ONNX session is neither picklable nor safe
# to share across fork, so worker processes each build their own (about 20 ms).
_swift_cache: tuple[int, SwiftF0] | None = None
_swift_lock = threading.Lock()


def _swift_detector() -> SwiftF0:
    global _swift_cache
    with _swift_lock:
        if _swift_cache is None or _swift_cache[0] != os.getpid():
            try:
                from swift_f0 import SwiftF0
            except ImportError as error:
                raise ImportError(
                    "the 'swift' F0 method needs swift-f0 (a hierspeech2 dependency): pip install swift-f0"
                ) from error
            # One thread: preprocessing parallelises over worker processes, not inside a call.
            _swift_cache = (os.getpid(), SwiftF0(threads=1))
        return _swift_cache[1]


def _swift_row(
    detector: SwiftF0, signal: np.ndarray, samples: int, sample_rate: int, f0_max: float
) -> np.ndarray:
    result = detector.detect(signal, SWIFT_SAMPLE_RATE, fmin=F0_MIN_HZ, fmax=f0_max)
    hop = int(FRAME_SPACE_MS / 1000 * sample_rate)
    frames = (samples - 1) // hop + 1  # YAAPT's count, ceil(N / hop)
    times = (np.arange(frames) - SWIFT_FRAME_SHIFT) * hop / sample_rate
    # SwiftF0's 16 ms frames (frame i centred on t = 0.016 i) onto the 5 ms grid: pitch
    # interpolated on a log scale (as it is heard and as the models take it), confidence
    # linearly; np.interp holds the end values beyond the last frame.
    log_pitch = np.interp(times, result.timestamps, np.log(result.pitch_hz))
    confidence = np.interp(times, result.timestamps, result.confidence)
    voiced = confidence >= SWIFT_VOICED_CONFIDENCE
    voiced[:SWIFT_FRAME_SHIFT] = False
    f0 = np.zeros(frames)
    # YAAPT converts lag L to F0 as rate / (L + 1) (one sample long); copying that bias removes
    # a systematic 10-20 cents (at 100-200 Hz) between the two, so the models see YAAPT's scale.
    f0[voiced] = sample_rate / (sample_rate / np.exp(log_pitch[voiced]) + 1)
    return f0


F0_METHODS = ("yaapt", "swift", "praat")
VARIANTS: tuple[Variant, ...] = ("inference", "training")
_EXTRACTORS = {"yaapt": yaapt, "swift": swift_f0, "praat": praat_f0}


@dataclass(frozen=True)
class F0Track:
    """One (method, variant) as a picklable callable: 16 kHz ``[N]`` → F0 in Hz ``[ceil(N / 80)]``."""

    method: str
    variant: Variant

    def __call__(self, wav: Tensor) -> Tensor:
        return _EXTRACTORS[self.method](wav, variant=self.variant).reshape(-1)

    def __reduce__(self) -> tuple[Callable[..., Callable[[Tensor], Tensor]], tuple[str, Variant]]:
        # Pickled by name: a worker process unpickles the entry of its own F0_EXTRACTORS table.
        return f0_extractor, (f"{self.method}-{self.variant}", self.variant)


F0_EXTRACTORS: dict[tuple[str, Variant], F0Track] = {
    (method, variant): F0Track(method, variant) for method in F0_METHODS for variant in VARIANTS
}
"""The one dispatch table of F0 extractors, keyed by (method, variant)."""


def f0_extractor(spec: str | Callable[[Tensor], Tensor], variant: Variant) -> Callable[[Tensor], Tensor]:
    """Resolve an F0 extractor from a callable, a method name or a ``"package.module:function"`` path.

    A bare method name (``"yaapt"``) takes ``variant``; ``"yaapt-inference"`` or
    ``"swift-training"`` name the variant explicitly. A callable is returned as it is.
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"an F0 extractor is a name or a callable, not {type(spec).__name__}")
    method, _, named_variant = spec.partition("-")
    if method in F0_METHODS and named_variant in ("", *VARIANTS):
        return F0_EXTRACTORS[(method, named_variant or variant)]
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        names = [*F0_METHODS, *(f"{m}-{v}" for m in F0_METHODS for v in VARIANTS)]
        raise ValueError(
            f"unknown F0 extractor {spec!r}; use one of {', '.join(names)} or 'package.module:function'"
        )
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import F0 extractor {spec!r}: {error}") from error
    if not callable(function):
        raise TypeError(f"F0 extractor {spec!r} is not callable; name a function")
    return function


def extract_f0(
    wav: Tensor | np.ndarray,
    method: str = "yaapt",
    variant: Variant = "inference",
    sample_rate: int = MODEL_SAMPLE_RATE,
) -> Tensor:
    """F0 in Hz (0 = unvoiced) by ``method``, one of :data:`F0_METHODS`.

    ``[N]``/``[B, N]`` → ``[B, 1, ceil(N / 80)]``.
    """
    if method not in _EXTRACTORS:
        raise ValueError(f"unknown F0 method {method!r}; use one of {', '.join(F0_METHODS)}")
    return _EXTRACTORS[method](wav, variant=variant, sample_rate=sample_rate)
