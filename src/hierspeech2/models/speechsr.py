"""SpeechSR: 16 kHz speech → 24 or 48 kHz speech (HierSpeech++'s 0.13M-parameter super-resolution).

One class for both released variants, parameterised by ``upsample_ratio`` (output rate / input
rate: 1.5 for 24 kHz, 3 for 48 kHz). The generator linearly interpolates the waveform features
to the output rate and refines them with alias-free AMP blocks; see
:class:`~hierspeech2.nn.upsampler.Upsampler`.

Output length: ⌊ratio · N⌋ samples for N input samples, as the official code computes it
(``int(N * ratio)``): exactly 3N at 48 kHz; 1.5N at 24 kHz for even N and 1.5N − 0.5 for odd N.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from .._util import as_tuples
from ..checkpoint import NativeCheckpointMixin, OfficialCheckpointMixin, load_native_weights
from ..constants import MODEL_SAMPLE_RATE
from ..errors import AudioError, CheckpointError
from ..nn.inference import WeightNormFusionMixin
from ..nn.upsampler import Upsampler

# sha256 of `dec.conv_post.weight` (float32 bytes) of each released generator. The two variants
# share every key and shape, so their ratio can only be recognised from the values.
_RELEASED_FINGERPRINTS = {
    "9849a85d318c1387": 1.5,  # speechsr24k/G_340000.pth
    "90df079ddfd74c59": 3.0,  # speechsr48k/G_100000.pth
}
_FINGERPRINT_KEY = "dec.conv_post.weight"
PACKAGED_RATES = (24000, 48000)
_FORMAT = "hierspeech2-native"


def _fingerprint(weight: Tensor) -> str:
    data = weight.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


class SpeechSR(nn.Module, OfficialCheckpointMixin, NativeCheckpointMixin, WeightNormFusionMixin):
    """Speech super-resolution generator: [B, 1, N] at ``input_rate`` → [B, 1, ⌊ratio·N⌋] at
    ``output_rate``."""

    OFFICIAL_PREFIXES = (("dec.", "generator."),)

    def __init__(
        self,
        upsample_ratio: float = 3.0,
        input_rate: int = MODEL_SAMPLE_RATE,
        channels: int = 32,
        resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11),
        resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
    ) -> None:
        """Build the generator; defaults are the released 48 kHz model
        (use ``upsample_ratio=1.5`` for 24 kHz)."""
        super().__init__()
        output_rate = input_rate * upsample_ratio
        if upsample_ratio <= 0 or output_rate != round(output_rate):
            raise ValueError(
                f"upsample_ratio {upsample_ratio} × input_rate {input_rate} Hz must give a whole output rate "
                "(released models: 1.5 for 24 kHz, 3.0 for 48 kHz)"
            )
        self.upsample_ratio = float(upsample_ratio)
        self.input_rate = int(input_rate)
        self.output_rate = round(output_rate)
        self.config = {
            "upsample_ratio": self.upsample_ratio,
            "input_rate": self.input_rate,
            "channels": channels,
            "resblock_kernel_sizes": tuple(resblock_kernel_sizes),
            "resblock_dilations": tuple(tuple(d) for d in resblock_dilations),
        }
        self.generator = Upsampler(
            1,
            channels,
            upsample_rates=(self.upsample_ratio,),
            upsample_kernel_sizes=(),
            resblock_kernel_sizes=resblock_kernel_sizes,
            resblock_dilations=resblock_dilations,
            upsample_mode="linear",
            tanh_output=True,
        )

    def output_length(self, input_length: int) -> int:
        """Number of output samples for ``input_length`` input samples: ⌊ratio · N⌋."""
        return math.floor(input_length * self.upsample_ratio + 1e-6)

    def forward(self, wav: Tensor, sample_rate: int | None = None) -> Tensor:
        """[B, 1, N] waveform at ``input_rate`` → [B, 1, ⌊ratio·N⌋] at ``output_rate``, in (-1, 1).

        ``sample_rate``, when given, is checked against ``input_rate``.
        """
        if sample_rate is not None and sample_rate != self.input_rate:
            raise AudioError(
                f"SpeechSR expects {self.input_rate} Hz audio, got {sample_rate} Hz; resample it to "
                f"{self.input_rate} Hz first (e.g. torchaudio.functional.resample(wav, {sample_rate}, "
                f"{self.input_rate}))"
            )
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise AudioError(
                f"SpeechSR takes a [batch, 1, samples] waveform, got shape {tuple(wav.shape)}; "
                "for [batch, samples] use wav.unsqueeze(1)"
            )
        if wav.shape[-1] == 0:
            raise AudioError("SpeechSR got an empty waveform (0 samples)")
        return self.generator(wav)

    @classmethod
    def config_from_official(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        """Recognise a released generator (24 or 48 kHz) from its weights; other weights need ``config``."""
        weight = state.get(_FINGERPRINT_KEY)
        ratio = None if weight is None else _RELEASED_FINGERPRINTS.get(_fingerprint(weight))
        if ratio is None:
            raise CheckpointError(
                "cannot tell the SpeechSR variant from these weights: both variants have the same keys and "
                "shapes, and these are not the released 24 kHz or 48 kHz generators. Pass the ratio "
                "explicitly: SpeechSR.from_official(path, config={'upsample_ratio': 1.5}) for 24 kHz "
                "or {'upsample_ratio': 3.0} for 48 kHz"
            )
        return {"upsample_ratio": ratio}

    @classmethod
    def from_packaged(cls, output_rate: int = 48000) -> SpeechSR:
        """The released 24 kHz or 48 kHz generator from the weights shipped with the package (no network)."""
        if output_rate not in PACKAGED_RATES:
            raise ValueError(
                f"packaged SpeechSR weights exist for output_rate {PACKAGED_RATES}, got {output_rate}"
            )
        weights = resources.files("hierspeech2") / "weights" / f"speechsr{output_rate // 1000}k.safetensors"
        with resources.as_file(weights) as path:
            return cls.from_native(path)

    @classmethod
    def from_native(cls, path: str | os.PathLike) -> SpeechSR:
        """Load one self-describing file from :func:`convert_official` / :meth:`save_native`;
        strict, eval mode.

        (``from_pretrained`` / ``save_pretrained`` handle the folder format shared by all models.)
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"SpeechSR weights not found: {path}")
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
        if metadata.get("format") != _FORMAT or "config" not in metadata:
            raise CheckpointError(
                f"{path} is not a hierspeech2 SpeechSR file (no config in its safetensors metadata); "
                "for an official .pth use SpeechSR.from_official"
            )
        config = as_tuples(json.loads(metadata["config"]))
        model = cls(**config)
        load_native_weights(path, model)
        return model.eval()

    def save_native(self, path: str | os.PathLike) -> Path:
        """Write weights (native keys) and constructor config (safetensors metadata) to ``path``."""
        path = Path(path)
        state = {key: value.detach().contiguous() for key, value in self.state_dict().items()}
        metadata = {"format": _FORMAT, "model": type(self).__name__, "config": json.dumps(self.config)}
        save_file(state, str(path), metadata=metadata)
        return path


def convert_official(
    path: str | os.PathLike, out_path: str | os.PathLike, config: Mapping[str, Any] | None = None
) -> Path:
    """Convert an official SpeechSR ``.pth`` to the native safetensors file that ``from_native`` reads."""
    return SpeechSR.from_official(path, config=config).save_native(out_path)
