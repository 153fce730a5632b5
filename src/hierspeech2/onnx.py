"""ONNX export of SpeechSR and of the backbone's conversion path, and onnxruntime engines that the
pipelines take in their place.

:func:`export_speechsr` writes ``model.onnx`` (batch and length dynamic; weight norm folded) and a
``config.json`` naming its rates; :class:`OnnxSpeechSR` runs such a file with onnxruntime behind
the interface of :class:`~hierspeech2.models.SpeechSR` (a ``[B, 1, N]`` → ``[B, 1, ratio · N]``
module with ``input_rate`` and ``output_rate``), so ``SuperResolution(OnnxSpeechSR(...))`` works
as with the torch model. :func:`onnx_speechsr` exports once per weights and caches the file.

:func:`export_backbone` writes :meth:`HierSpeech2.voice_conversion
<hierspeech2.models.HierSpeech2.voice_conversion>` (semantic features, F0, prompt mels, their
lengths, the noise scale and the denoise ratio as inputs; batch, frames and prompt frames
dynamic), and :class:`OnnxBackbone` offers that method on onnxruntime, which is all that
``VoiceConversion`` and ``TextToSpeech`` call. The prior's noise is drawn by onnxruntime's
generator, so only ``noise_scale=0`` reproduces torch's output (to 1e-6 on the tiny test model).

The export goes through ``torch.onnx.export(dynamo=True)`` (it needs ``onnxscript``: the ``onnx``
extra). On the shared speech the onnxruntime output stays within 1e-4 of torch's
(``tests/test_onnx.py``); ``benchmarks/onnx_speed.py`` times the two side by side.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .errors import AudioError, CheckpointError
from .options import DEFAULT_NOISE_SCALE

__all__ = [
    "ONNX_FILE",
    "OnnxBackbone",
    "OnnxSpeechSR",
    "export_backbone",
    "export_speechsr",
    "onnx_backbone",
    "onnx_speechsr",
]

ONNX_FILE = "model.onnx"
CONFIG_FILE = "config.json"
MIN_EXPORT_SAMPLES = 2  # the shortest input the exported graph is traced to accept
MIN_EXPORT_FRAMES = 2  # the same for the backbone's semantic frames and prompt mel frames
OPSET = 18
BACKBONE_INPUTS = (
    "semantic", "semantic_lengths", "prompt_mel", "prompt_mel_lengths", "log_f0",
    "noise_scale", "denoise_ratio",
)  # fmt: skip


def _onnx_program(module: nn.Module, example: tuple[Tensor, ...], dynamic_shapes: Any, **names: Any) -> Any:
    """``torch.onnx.export(dynamo=True)`` with the reference arithmetic (fast paths do not trace)."""
    from .nn.inference import reference_arithmetic

    try:
        with reference_arithmetic(), torch.no_grad():
            return torch.onnx.export(
                module, example, dynamo=True, dynamic_shapes=dynamic_shapes, opset_version=OPSET,
                verbose=False, **names,
            )  # fmt: skip
    except ImportError as error:
        raise CheckpointError(
            f"ONNX export needs onnxscript: pip install 'hierspeech2[onnx]' ({error})"
        ) from None


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _reference_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU copy of ``model`` with the reference activations (they trace to plain ops; a
    pipeline may have switched the model to the fast ones) and weight norm folded."""
    from .nn.inference import fuse_weight_norm, use_fast_activations

    return fuse_weight_norm(use_fast_activations(copy.deepcopy(model).float().cpu().eval(), enabled=False))


def _save(program: Any, out_dir: Path, config: dict[str, Any]) -> Path:
    program.save(str(out_dir / ONNX_FILE))
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return out_dir


def _read_config(folder: Path, kind: str) -> dict[str, Any]:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{folder} is no exported {kind} (config.json: {error})") from None
    if config.get("kind") != kind:
        raise CheckpointError(f"{folder} holds a {config.get('kind')!r} export, not {kind}")
    return config


def export_speechsr(model: nn.Module, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a :class:`~hierspeech2.models.SpeechSR`) to ``out_dir``: model.onnx, config.json."""
    if not hasattr(model, "generator") or not hasattr(model, "output_rate"):
        raise CheckpointError(f"ONNX export takes a SpeechSR model, not a {type(model).__name__}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = _reference_copy(model).generator
    example = torch.zeros(1, 1, 16_000)
    batch = torch.export.Dim("batch", min=1, max=1024)
    samples = torch.export.Dim("samples", min=MIN_EXPORT_SAMPLES, max=16_000 * 3_600 * 4)
    program = _onnx_program(
        generator, (example,), {"x": {0: batch, 2: samples}}, input_names=["wav"], output_names=["audio"]
    )
    config = {"kind": "SpeechSR", "input_rate": int(model.input_rate), "output_rate": int(model.output_rate)}
    return _save(program, out_dir, config)


class _OnnxEngine(nn.Module):
    """An exported model of kind ``KIND`` run by onnxruntime (CPU, float32).

    Args:
        folder: a folder written by this module's export of that kind.
        threads: onnxruntime intra-op threads (default: torch's thread count).
    """

    KIND = ""

    def __init__(self, folder: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__()
        folder = Path(folder)
        self.config = _read_config(folder, self.KIND)
        self.session = _session(folder / ONNX_FILE, threads)
        # no weights of its own: this parameter only tells the pipelines where inputs go (CPU, float32)
        self.device_marker = nn.Parameter(torch.zeros(0), requires_grad=False)


class OnnxSpeechSR(_OnnxEngine):
    """An exported SpeechSR (:func:`export_speechsr`) run by onnxruntime, with the torch model's
    interface."""

    KIND = "SpeechSR"

    def __init__(self, folder: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__(folder, threads)
        self.input_rate, self.output_rate = int(self.config["input_rate"]), int(self.config["output_rate"])

    def forward(self, wav: Tensor, sample_rate: int | None = None) -> Tensor:
        if sample_rate is not None and sample_rate != self.input_rate:
            raise AudioError(f"SpeechSR expects {self.input_rate} Hz audio, got {sample_rate} Hz")
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise AudioError(f"SpeechSR takes a [batch, 1, samples] waveform, got shape {tuple(wav.shape)}")
        if wav.shape[-1] < MIN_EXPORT_SAMPLES:  # the graph's lower bound: pad, run, cut
            padded = torch.nn.functional.pad(wav, (0, MIN_EXPORT_SAMPLES - wav.shape[-1]))
            ratio = self.output_rate / self.input_rate
            return self.forward(padded)[..., : int(wav.shape[-1] * ratio)]
        samples = np.ascontiguousarray(wav.detach().float().cpu().numpy())
        (audio,) = self.session.run(None, {"wav": samples})
        return torch.from_numpy(audio)


class _ConversionPath(nn.Module):
    """The backbone's ``voice_conversion`` as a module whose every argument is a tensor (for export)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(
        self, semantic, semantic_lengths, prompt_mel, prompt_mel_lengths, log_f0, noise_scale, denoise_ratio
    ):  # type: ignore[no-untyped-def]
        return self.backbone.voice_conversion(
            semantic, semantic_lengths, prompt_mel, prompt_mel_lengths, log_f0, noise_scale, denoise_ratio
        )


def export_backbone(model: nn.Module, out_dir: str | os.PathLike[str]) -> Path:
    """Write the conversion path of ``model`` (a :class:`~hierspeech2.models.HierSpeech2`) to
    ``out_dir``: model.onnx, config.json. Batch, frames and prompt frames are dynamic; prompts come
    as two rows per item (original, denoised), as the pipelines give them."""
    if not hasattr(model, "voice_conversion") or not hasattr(model, "style_encoder"):
        raise CheckpointError(f"backbone ONNX export takes a HierSpeech2 model, not a {type(model).__name__}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = _reference_copy(model)
    semantic_channels = reference.perturbed_prior_encoder.pre_source.in_channels
    frames, prompt_frames = 48, 120
    example = (  # a batch of 2: torch.export would fix a dimension of size 1
        torch.zeros(2, semantic_channels, frames), torch.full((2,), frames),
        torch.zeros(4, 80, prompt_frames), torch.full((4,), prompt_frames),
        torch.zeros(2, 1, 4 * frames), torch.tensor(0.0), torch.tensor(0.0),
    )  # fmt: skip
    batch = torch.export.Dim("batch", min=1, max=256)
    time_ = torch.export.Dim("frames", min=MIN_EXPORT_FRAMES, max=50 * 3_600 * 4)
    prompt_time = torch.export.Dim("prompt_frames", min=MIN_EXPORT_FRAMES, max=50 * 3_600)
    dynamic = {
        "semantic": {0: batch, 2: time_}, "semantic_lengths": {0: batch},
        "prompt_mel": {0: 2 * batch, 2: prompt_time}, "prompt_mel_lengths": {0: 2 * batch},
        "log_f0": {0: batch, 2: 4 * time_}, "noise_scale": {}, "denoise_ratio": {},
    }  # fmt: skip
    program = _onnx_program(
        _ConversionPath(reference).eval(),
        example,
        dynamic,
        input_names=list(BACKBONE_INPUTS),
        output_names=["audio"],
    )
    return _save(program, out_dir, {"kind": "HierSpeech2", "semantic_channels": int(semantic_channels)})


class OnnxBackbone(_OnnxEngine):
    """An exported backbone conversion path (:func:`export_backbone`) run by onnxruntime, offering
    :meth:`~hierspeech2.models.HierSpeech2.voice_conversion`."""

    KIND = "HierSpeech2"

    def __init__(self, folder: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__(folder, threads)
        self.semantic_channels = int(self.config["semantic_channels"])

    def voice_conversion(
        self,
        semantic: Tensor,
        semantic_lengths: Tensor,
        prompt_mel: Tensor,
        prompt_mel_lengths: Tensor,
        log_f0: Tensor,
        noise_scale: float = DEFAULT_NOISE_SCALE,
        denoise_ratio: float = 0.0,
    ) -> Tensor:
        """As the torch model's; prompts with one row per item are given twice (original = denoised)."""
        batch, _, frames = semantic.shape
        if prompt_mel.shape[0] == batch:
            prompt_mel = prompt_mel.repeat_interleave(2, dim=0)
            prompt_mel_lengths = prompt_mel_lengths.repeat_interleave(2)
        if frames < MIN_EXPORT_FRAMES or prompt_mel.shape[-1] < MIN_EXPORT_FRAMES:
            raise AudioError(
                f"the exported backbone takes at least {MIN_EXPORT_FRAMES} frames of source and prompt, "
                f"got {frames} and {prompt_mel.shape[-1]}"
            )

        def array(value: Any, dtype: Any) -> np.ndarray:
            return np.ascontiguousarray(torch.as_tensor(value).detach().cpu().numpy().astype(dtype))

        feeds = dict(zip(BACKBONE_INPUTS, (
            array(semantic, np.float32), array(semantic_lengths, np.int64), array(prompt_mel, np.float32),
            array(prompt_mel_lengths, np.int64), array(log_f0, np.float32), array(noise_scale, np.float32),
            array(denoise_ratio, np.float32),
        )))  # fmt: skip
        (audio,) = self.session.run(None, feeds)
        return torch.from_numpy(audio)


def _cache_dir() -> Path:
    root = os.environ.get("HIERSPEECH2_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hierspeech2"
    )
    return Path(root) / "onnx"


def _cached(kind: str, model: nn.Module, export: Any, cache_dir: str | os.PathLike[str] | None) -> Path:
    """The folder of ``model``'s export (``export(model, folder)``), made once per weights and cached."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().numpy().tobytes())
    folder = Path(cache_dir or _cache_dir()) / f"{kind}-{digest.hexdigest()[:16]}"
    if not (folder / ONNX_FILE).is_file():
        partial = folder.with_name(folder.name + ".partial")
        export(model, partial)
        if not folder.exists():  # another process may have finished the same export meanwhile
            os.replace(partial, folder)
    return folder


def onnx_speechsr(model: nn.Module, cache_dir: str | os.PathLike[str] | None = None) -> OnnxSpeechSR:
    """``model`` (a SpeechSR) as an :class:`OnnxSpeechSR`, exported once per weights and cached."""
    return OnnxSpeechSR(_cached(f"speechsr-{int(model.output_rate)}", model, export_speechsr, cache_dir))


def onnx_backbone(model: nn.Module, cache_dir: str | os.PathLike[str] | None = None) -> OnnxBackbone:
    """``model`` (a HierSpeech2) as an :class:`OnnxBackbone`, exported once per weights and cached
    (the full-size export takes minutes)."""
    return OnnxBackbone(_cached("backbone", model, export_backbone, cache_dir))


def describe(module: Any) -> str:
    """``"onnxruntime"`` for an ONNX engine of this module, else ``"torch"`` (for logs and benchmarks)."""
    return "onnxruntime" if isinstance(module, _OnnxEngine) else "torch"
