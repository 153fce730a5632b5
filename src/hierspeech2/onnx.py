"""ONNX export of SpeechSR and an onnxruntime engine that the pipelines take in its place.

:func:`export_speechsr` writes ``model.onnx`` (batch and length dynamic; weight norm folded) and a
``config.json`` naming its rates; :class:`OnnxSpeechSR` runs such a file with onnxruntime behind
the interface of :class:`~hierspeech2.models.SpeechSR` (a ``[B, 1, N]`` → ``[B, 1, ratio · N]``
module with ``input_rate`` and ``output_rate``), so ``SuperResolution(OnnxSpeechSR(...))`` works
as with the torch model. :func:`onnx_speechsr` exports once per weights and caches the file.

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

__all__ = ["ONNX_FILE", "OnnxSpeechSR", "export_speechsr", "onnx_speechsr"]

ONNX_FILE = "model.onnx"
CONFIG_FILE = "config.json"
MIN_EXPORT_SAMPLES = 2  # the shortest input the exported graph is traced to accept
OPSET = 18


def export_speechsr(model: nn.Module, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a :class:`~hierspeech2.models.SpeechSR`) to ``out_dir``: model.onnx, config.json."""
    from .nn.inference import fuse_weight_norm, use_fast_activations

    if not hasattr(model, "generator") or not hasattr(model, "output_rate"):
        raise CheckpointError(f"ONNX export takes a SpeechSR model, not a {type(model).__name__}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the reference activations trace to plain ops (a pipeline may have switched the model to the fast ones)
    reference = use_fast_activations(copy.deepcopy(model).float().cpu().eval(), enabled=False)
    generator = fuse_weight_norm(reference).generator
    example = torch.zeros(1, 1, 16_000)
    batch = torch.export.Dim("batch", min=1, max=1024)
    samples = torch.export.Dim("samples", min=MIN_EXPORT_SAMPLES, max=16_000 * 3_600 * 4)
    try:
        program = torch.onnx.export(
            generator, (example,), dynamo=True, dynamic_shapes={"x": {0: batch, 2: samples}},
            input_names=["wav"], output_names=["audio"], opset_version=OPSET, verbose=False,
        )  # fmt: skip
    except ImportError as error:
        raise CheckpointError(
            f"ONNX export needs onnxscript: pip install 'hierspeech2[onnx]' ({error})"
        ) from None
    program.save(str(out_dir / ONNX_FILE))
    config = {"kind": "SpeechSR", "input_rate": int(model.input_rate), "output_rate": int(model.output_rate)}
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return out_dir


class OnnxSpeechSR(nn.Module):
    """An exported SpeechSR run by onnxruntime, with the torch model's interface (CPU, float32).

    Args:
        folder: a folder written by :func:`export_speechsr`.
        threads: onnxruntime intra-op threads (default: torch's thread count).
    """

    def __init__(self, folder: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime

        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{folder} is no exported SpeechSR (config.json: {error})") from None
        if config.get("kind") != "SpeechSR":
            raise CheckpointError(f"{folder} holds a {config.get('kind')!r} export, not SpeechSR")
        self.input_rate, self.output_rate = int(config["input_rate"]), int(config["output_rate"])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(
            str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
        # no weights of its own: this parameter only tells the pipelines where inputs go (CPU, float32)
        self.device_marker = nn.Parameter(torch.zeros(0), requires_grad=False)

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


def _cache_dir() -> Path:
    root = os.environ.get("HIERSPEECH2_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hierspeech2"
    )
    return Path(root) / "onnx"


def onnx_speechsr(model: nn.Module, cache_dir: str | os.PathLike[str] | None = None) -> OnnxSpeechSR:
    """``model`` (a SpeechSR) as an :class:`OnnxSpeechSR`, exported once per weights and cached."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().numpy().tobytes())
    folder = Path(cache_dir or _cache_dir()) / f"speechsr-{int(model.output_rate)}-{digest.hexdigest()[:16]}"
    if not (folder / ONNX_FILE).is_file():
        partial = folder.with_name(folder.name + ".partial")
        export_speechsr(model, partial)
        if not folder.exists():  # another process may have finished the same export meanwhile
            os.replace(partial, folder)
    return OnnxSpeechSR(folder)


def describe(module: Any) -> str:
    """``"onnxruntime"`` for an :class:`OnnxSpeechSR`, else ``"torch"`` (for logs and benchmarks)."""
    return "onnxruntime" if isinstance(module, OnnxSpeechSR) else "torch"
