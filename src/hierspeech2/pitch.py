"""F0 extraction at the models' pitch rate: 4 frames per 320-sample hop (one per 5 ms at 16 kHz).

``yaapt`` reproduces the official extractor (AMFM_decompy's YAAPT) bit for bit on the same
numpy/scipy build; YAAPT makes discrete choices (peak picking, dynamic programming), so another
build may differ on a frame or two.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from hierspeech2.audio import MODEL_SAMPLE_RATE, _check_rate, validate_waveform
from hierspeech2.errors import AudioError

__all__ = ["F0_MAX_HZ", "F0_MIN_HZ", "YAAPT_MIN_SAMPLES", "yaapt"]

F0_MIN_HZ = 60.0  # YAAPT's default f0_min; both official callers keep it
# f0_max per variant: official inference_vc.py passes 1100; ttv_v1/preprocessing/extract_f0.py
# (the F0 the TTV was trained on) keeps YAAPT's default of 400.
F0_MAX_HZ = {"inference": 1100.0, "training": 400.0}
FRAME_LENGTH_MS = 20.0
FRAME_SPACE_MS = 5.0
TDA_FRAME_LENGTH_MS = 25.0
NCCF_THRESH1 = 0.25
# Shorter inputs make YAAPT index past its own frame arrays; 320 samples = one model hop.
YAAPT_MIN_SAMPLES = 320

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
    if variant not in F0_MAX_HZ:
        raise ValueError(f"unknown YAAPT variant {variant!r}; use one of {sorted(F0_MAX_HZ)}")
    sample_rate = _check_rate(sample_rate, "sample_rate")
    wav = validate_waveform(wav, name="wav", min_samples=YAAPT_MIN_SAMPLES * sample_rate // MODEL_SAMPLE_RATE)
    if wav.ndim == 1:
        wav = wav[None]
    elif wav.ndim == 3 and wav.shape[1] == 1:
        wav = wav[:, 0]
    if wav.ndim != 2:
        raise AudioError(f"yaapt expects audio [N], [B, N] or [B, 1, N], got shape {tuple(wav.shape)}")

    rows = wav.detach().to("cpu", torch.float64).numpy()
    f0 = np.stack([_yaapt_row(row, sample_rate, F0_MAX_HZ[variant]) for row in rows])
    silent = [i for i, row in enumerate(f0) if not row.any()]
    if silent:
        warnings.warn(
            f"YAAPT found no voiced frame in row(s) {silent} (silence or noise); returning F0 = 0 there",
            stacklevel=2,
        )
    return torch.from_numpy(f0.astype(np.float32))[:, None].to(wav.device)


def _yaapt_row(signal: np.ndarray, sample_rate: int, f0_max: float) -> np.ndarray:
    import amfm_decompy.basic_tools as basic
    import amfm_decompy.pYAAPT as pyaapt

    # Half a frame of zeros on each side centres the first frame on sample 0 (official framing).
    pad = int(FRAME_LENGTH_MS / 1000 * sample_rate) // 2
    padded = np.pad(signal, (pad, pad))
    # Silent stretches make YAAPT divide 0 by 0 and median-filter short arrays; its output is
    # still well defined (unvoiced), so the numeric warnings are noise for the caller.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="kernel_size exceeds volume extent")
        try:
            pitch = pyaapt.yaapt(
                basic.SignalObj(padded, sample_rate),
                frame_length=FRAME_LENGTH_MS,
                frame_space=FRAME_SPACE_MS,
                nccf_thresh1=NCCF_THRESH1,
                tda_frame_length=TDA_FRAME_LENGTH_MS,
                f0_min=F0_MIN_HZ,
                f0_max=f0_max,
            )
        except (ValueError, IndexError, ZeroDivisionError, FloatingPointError) as error:
            raise AudioError(
                f"YAAPT failed on a waveform of {signal.shape[-1]} samples ({error}); "
                f"check that it is speech sampled at {sample_rate} Hz"
            ) from error
    # samp_values: 0 on unvoiced frames, no interpolation; what the released models were fed.
    return np.asarray(pitch.samp_values, dtype=np.float64)
