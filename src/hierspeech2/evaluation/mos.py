"""Predicted MOS: a neural estimate of the mean opinion score listeners would give (1 to 5).

* ``"dnsmos"`` (default): Microsoft's DNSMOS P.835, overall quality (OVRL), through the
  ``speechmos`` package, whose wheel carries the ONNX models, so it runs offline on onnxruntime
  (measured: 12 s of speech in 1.7 s on two busy CPU cores). It was trained on noisy and enhanced
  speech, so it judges noise and distortion more than prosody.
* ``"utmos"``: UTMOS22 strong (the VoiceMOS 2022 winner, trained on synthetic speech), which
  HierSpeech++ and most TTS papers report, through ``tarepan/SpeechMOS`` on ``torch.hub``: it
  downloads its code and weights on first use.

Predicted MOS of different predictors are different scales; compare systems under one predictor.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import torch
from torch import Tensor

from .asr import ASR_SAMPLE_RATE, _mono16k_all

__all__ = ["MOS_MODELS", "MOSPredictor", "load_mos_predictor", "predicted_mos"]

MOS_MODELS = ("dnsmos", "utmos")
UTMOS_HUB = "tarepan/SpeechMOS:v1.2.0"


class MOSPredictor(Protocol):
    """Turns a batch of 16 kHz mono waveforms into predicted MOS ``[B]``."""

    def __call__(self, waveforms: Sequence[Tensor]) -> Tensor: ...


def predicted_mos(
    audio: Tensor | Sequence[Tensor],
    sample_rate: int,
    model: str = "dnsmos",
    *,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Predicted MOS ``[B]`` of one waveform or a sequence of them (any rate, resampled to 16 kHz)."""
    prepared = _mono16k_all(audio, sample_rate)
    for index, wav in enumerate(prepared):
        if wav.numel() < ASR_SAMPLE_RATE // 4:
            raise ValueError(f"audio {index} is shorter than 0.25 s: too short to judge")
    return load_mos_predictor(model, str(torch.device(device)))(prepared)


@lru_cache(maxsize=2)
def load_mos_predictor(model: str, device: str = "cpu") -> MOSPredictor:
    """The predictor named ``model`` (one of :data:`MOS_MODELS`) on ``device``, loaded once."""
    if model == "dnsmos":
        return DNSMOS()
    if model == "utmos":
        return UTMOS(device)
    raise ValueError(f"MOS model must be one of {list(MOS_MODELS)}, got {model!r}")


class DNSMOS:
    """DNSMOS P.835 OVRL from ``speechmos`` (ONNX on CPU whatever the device)."""

    def __call__(self, waveforms: Sequence[Tensor]) -> Tensor:
        from speechmos import dnsmos

        scores = []
        for wav in waveforms:
            peak = float(wav.abs().max())
            samples = (wav / peak if peak > 1 else wav).numpy()  # speechmos refuses samples outside [-1, 1]
            scores.append(float(dnsmos.run(samples, sr=ASR_SAMPLE_RATE)["ovrl_mos"]))
        return torch.tensor(scores)


class UTMOS:
    """UTMOS22 strong from ``tarepan/SpeechMOS`` (downloaded through ``torch.hub`` once)."""

    def __init__(self, device: str) -> None:
        self.model = torch.hub.load(UTMOS_HUB, "utmos22_strong", trust_repo=True).to(device).eval()
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, waveforms: Sequence[Tensor]) -> Tensor:
        return torch.cat([self.model(wav[None].to(self.device), ASR_SAMPLE_RATE).cpu() for wav in waveforms])
