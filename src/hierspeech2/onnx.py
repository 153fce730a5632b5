"""ONNX export of SpeechSR, of the backbone's conversion path and of text-to-vec inference, and
onnxruntime engines that the pipelines take in their place.

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

:func:`export_ttv` writes text-to-vec inference as two graphs around its data-dependent length
expansion: ``encoder.onnx`` (style, token prior and whole durations, the duration sampler's noise
an input) and ``decoder.onnx`` (prior sample → semantic features and log F0). :class:`OnnxTextToVec`
shares :class:`~hierspeech2.models.ttv_inference.TextToVecInference` with the torch model: the
expansion and both random draws happen in torch, so under one seed the engines agree at any noise.

The export goes through ``torch.onnx.export(dynamo=True)`` (it needs ``onnxscript``: the ``onnx``
extra); :func:`export_model` picks the export by model kind (``hierspeech2 export --format onnx``).
``tests/test_onnx.py`` checks every engine against torch; ``benchmarks/onnx_speed.py`` times them.
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

from ._util import cache_folder
from .errors import AudioError, CheckpointError
from .models.ttv_inference import MAX_INFER_FRAMES, TextToVecInference, TextToVecInputs
from .options import DEFAULT_NOISE_SCALE

__all__ = [
    "ONNX_FILE",
    "OnnxBackbone",
    "OnnxSpeechSR",
    "OnnxTextToVec",
    "export_backbone",
    "export_model",
    "export_speechsr",
    "export_ttv",
    "onnx_backbone",
    "onnx_speechsr",
    "onnx_ttv",
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


INTEGER_INPUTS = frozenset({"tokens", "token_lengths", "semantic_lengths", "prompt_mel_lengths"})


def _feeds(names: tuple[str, ...], *values: Any) -> dict[str, np.ndarray]:
    """onnxruntime inputs: ``values`` (tensors or numbers) by name, int64 ids and lengths, float32 else."""
    return {
        name: np.ascontiguousarray(
            torch.as_tensor(value)
            .detach()
            .cpu()
            .numpy()
            .astype(np.int64 if name in INTEGER_INPUTS else np.float32)
        )
        for name, value in zip(names, values, strict=True)
    }


def _two_rows_per_item(prompt_mel: Tensor, prompt_mel_lengths: Tensor, batch: int) -> tuple[Tensor, Tensor]:
    """Prompt rows as the exported graphs take them, two per item (original, denoised): a prompt
    given once per item is given twice."""
    if prompt_mel.shape[0] == batch:
        return prompt_mel.repeat_interleave(2, dim=0), prompt_mel_lengths.repeat_interleave(2)
    return prompt_mel, prompt_mel_lengths


def _reference_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU copy of ``model`` with the reference activations (they trace to plain ops; a
    pipeline may have switched the model to the fast ones) and weight norm folded."""
    from .nn.inference import fuse_weight_norm, use_fast_activations

    return fuse_weight_norm(use_fast_activations(copy.deepcopy(model).float().cpu().eval(), enabled=False))


def _save(programs: dict[str, Any], out_dir: Path, config: dict[str, Any]) -> Path:
    """Each graph under its file name, then ``config.json`` (last: its presence marks a finished export)."""
    for name, program in programs.items():
        program.save(str(out_dir / name))
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
    return _save({ONNX_FILE: program}, out_dir, config)


class _OnnxEngine(nn.Module):
    """An exported model of kind ``KIND`` run by onnxruntime (CPU, float32).

    Args:
        folder: a folder written by this module's export of that kind.
        threads: onnxruntime intra-op threads (default: torch's thread count).
    """

    KIND = ""
    GRAPHS: tuple[str, ...] = (ONNX_FILE,)

    def __init__(self, folder: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__()
        folder = Path(folder)
        self.config = _read_config(folder, self.KIND)
        self.sessions = [_session(folder / name, threads) for name in self.GRAPHS]
        self.session = self.sessions[0]
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
    return _save(
        {ONNX_FILE: program}, out_dir, {"kind": "HierSpeech2", "semantic_channels": int(semantic_channels)}
    )


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
        prompt_mel, prompt_mel_lengths = _two_rows_per_item(prompt_mel, prompt_mel_lengths, batch)
        if frames < MIN_EXPORT_FRAMES or prompt_mel.shape[-1] < MIN_EXPORT_FRAMES:
            raise AudioError(
                f"the exported backbone takes at least {MIN_EXPORT_FRAMES} frames of source and prompt, "
                f"got {frames} and {prompt_mel.shape[-1]}"
            )

        feeds = _feeds(
            BACKBONE_INPUTS, semantic, semantic_lengths, prompt_mel, prompt_mel_lengths, log_f0, noise_scale,
            denoise_ratio,
        )  # fmt: skip
        (audio,) = self.session.run(None, feeds)
        return torch.from_numpy(audio)


TTV_ENCODER_FILE, TTV_DECODER_FILE = "encoder.onnx", "decoder.onnx"
TTV_ENCODER_INPUTS = (
    "tokens", "token_lengths", "prompt_mel", "prompt_mel_lengths", "duration_noise",
    "noise_scale_w", "length_scale", "denoise_ratio",
)  # fmt: skip
TTV_DECODER_INPUTS = ("prior_sample", "frame_mask", "style")


class _TextToVecEncoder(nn.Module):
    """:meth:`TextToVec.encode_for_inference <hierspeech2.models.TextToVec.encode_for_inference>`
    with every argument a tensor and the duration sampler's noise an input (for export)."""

    def __init__(self, ttv: nn.Module) -> None:
        super().__init__()
        self.ttv = ttv

    def forward(  # type: ignore[no-untyped-def]
        self, tokens, token_lengths, prompt_mel, prompt_mel_lengths, duration_noise, noise_scale_w,
        length_scale, denoise_ratio,
    ):  # fmt: skip
        inputs = TextToVecInputs(
            tokens, token_lengths, prompt_mel, prompt_mel_lengths, noise_scale_w, length_scale, denoise_ratio
        )
        return self.ttv.encode_for_inference(inputs, duration_noise=duration_noise)


class _TextToVecDecoder(nn.Module):
    """:meth:`TextToVec.decode <hierspeech2.models.TextToVec.decode>` (for export)."""

    def __init__(self, ttv: nn.Module) -> None:
        super().__init__()
        self.ttv = ttv

    def forward(self, prior_sample, frame_mask, style):  # type: ignore[no-untyped-def]
        return self.ttv.decode(prior_sample, frame_mask, style)


def export_ttv(model: nn.Module, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a :class:`~hierspeech2.models.TextToVec`) to ``out_dir`` as two graphs around
    the data-dependent length expansion: ``encoder.onnx`` (tokens and prompt mels → style, token
    prior, whole durations) and ``decoder.onnx`` (prior sample → semantic features, log F0), with
    ``config.json``. Batch, tokens, prompt frames and frames are dynamic."""
    if not hasattr(model, "encode_for_inference") or not hasattr(model, "text_encoder"):
        raise CheckpointError(
            f"text-to-vec ONNX export takes a TextToVec model, not a {type(model).__name__}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = _reference_copy(model)
    batch = torch.export.Dim("batch", min=1, max=256)
    tokens = torch.export.Dim("tokens", min=MIN_EXPORT_FRAMES, max=50_000)
    prompt_time = torch.export.Dim("prompt_frames", min=MIN_EXPORT_FRAMES, max=50 * 3_600)
    frames = torch.export.Dim("frames", min=MIN_EXPORT_FRAMES, max=MAX_INFER_FRAMES)
    length, prompt_frames = 20, 120
    encoder_example = (  # a batch of 2: torch.export would fix a dimension of size 1
        torch.ones(2, length, dtype=torch.long), torch.full((2,), length),
        torch.zeros(4, reference.config["mel_channels"], prompt_frames), torch.full((4,), prompt_frames),
        torch.zeros(2, 2, length), torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.0),
    )  # fmt: skip
    encoder_dynamic = {
        "tokens": {0: batch, 1: tokens}, "token_lengths": {0: batch},
        "prompt_mel": {0: 2 * batch, 2: prompt_time}, "prompt_mel_lengths": {0: 2 * batch},
        "duration_noise": {0: batch, 2: tokens}, "noise_scale_w": {}, "length_scale": {}, "denoise_ratio": {},
    }  # fmt: skip
    encoder = _onnx_program(
        _TextToVecEncoder(reference).eval(), encoder_example, encoder_dynamic,
        input_names=list(TTV_ENCODER_INPUTS),
        output_names=["style", "prior_mean", "prior_log_std", "durations"],
    )  # fmt: skip
    decoder_example = (
        torch.zeros(2, reference.config["inter_channels"], 48), torch.ones(2, 1, 48),
        torch.zeros(2, reference.style_channels, 1),
    )  # fmt: skip
    decoder_dynamic = {
        "prior_sample": {0: batch, 2: frames},
        "frame_mask": {0: batch, 2: frames},
        "style": {0: batch},
    }
    decoder = _onnx_program(
        _TextToVecDecoder(reference).eval(), decoder_example, decoder_dynamic,
        input_names=list(TTV_DECODER_INPUTS), output_names=["semantic", "log_f0"],
    )  # fmt: skip
    config = {
        "kind": "TextToVec",
        "semantic_channels": int(reference.semantic_channels),
        "pitch_frames_per_frame": int(reference.pitch_frames_per_frame),
        "n_vocab": int(reference.n_vocab),
        "symbols": None if reference.symbols is None else list(reference.symbols),
    }
    return _save({TTV_ENCODER_FILE: encoder, TTV_DECODER_FILE: decoder}, out_dir, config)


class OnnxTextToVec(TextToVecInference, _OnnxEngine):
    """An exported TextToVec (:func:`export_ttv`) run by onnxruntime, offering
    :meth:`~hierspeech2.models.TextToVec.infer_with_lengths` and ``infer``.

    The length expansion and both random draws (duration sampler, prior) happen in torch, in the
    same order as the torch model's, so under one seed the two give the same durations and, within
    float32 rounding, the same features.
    """

    KIND = "TextToVec"
    GRAPHS = (TTV_ENCODER_FILE, TTV_DECODER_FILE)

    def __init__(self, folder: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__(folder, threads)
        self.semantic_channels = int(self.config["semantic_channels"])
        self.pitch_frames_per_frame = int(self.config["pitch_frames_per_frame"])
        self.n_vocab = int(self.config["n_vocab"])
        symbols = self.config.get("symbols")
        self.symbols = None if symbols is None else tuple(symbols)

    def encode_for_inference(self, inputs: TextToVecInputs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        batch, length = inputs.tokens.shape
        prompt_mel, prompt_mel_lengths = _two_rows_per_item(
            inputs.prompt_mel, inputs.prompt_mel_lengths, batch
        )
        if length < MIN_EXPORT_FRAMES or prompt_mel.shape[-1] < MIN_EXPORT_FRAMES:
            raise AudioError(
                f"the exported text-to-vec model takes at least {MIN_EXPORT_FRAMES} tokens and prompt "
                f"frames, got {length} and {prompt_mel.shape[-1]}"
            )
        duration_noise = torch.randn(batch, 2, length)  # as the torch model's duration sampler draws it
        feeds = _feeds(
            TTV_ENCODER_INPUTS, inputs.tokens, inputs.token_lengths, prompt_mel, prompt_mel_lengths,
            duration_noise, inputs.noise_scale_w, inputs.length_scale, inputs.denoise_ratio,
        )  # fmt: skip
        style, prior_mean, prior_log_std, durations = self.sessions[0].run(None, feeds)
        return tuple(torch.from_numpy(array) for array in (style, prior_mean, prior_log_std, durations))

    def decode(self, prior_sample: Tensor, frame_mask: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        if prior_sample.shape[-1] < MIN_EXPORT_FRAMES:
            raise AudioError(
                f"the exported text-to-vec model decodes at least {MIN_EXPORT_FRAMES} frames, got "
                f"{prior_sample.shape[-1]}: give the text more than one token"
            )
        feeds = _feeds(TTV_DECODER_INPUTS, prior_sample, frame_mask, style)
        semantic, log_f0 = self.sessions[1].run(None, feeds)
        return torch.from_numpy(semantic), torch.from_numpy(log_f0)


def _cached(kind: str, model: nn.Module, export: Any, cache_dir: str | os.PathLike[str] | None) -> Path:
    """The folder of ``model``'s export (``export(model, folder)``), made once per weights and cached."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().numpy().tobytes())
    folder = Path(cache_dir or cache_folder("onnx")) / f"{kind}-{digest.hexdigest()[:16]}"
    if not (folder / CONFIG_FILE).is_file():
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


def onnx_ttv(model: nn.Module, cache_dir: str | os.PathLike[str] | None = None) -> OnnxTextToVec:
    """``model`` (a TextToVec) as an :class:`OnnxTextToVec`, exported once per weights and cached."""
    return OnnxTextToVec(_cached("ttv", model, export_ttv, cache_dir))


def export_model(model: nn.Module, out_dir: str | os.PathLike[str]) -> Path:
    """Export ``model`` to ``out_dir`` with the export of its kind (SpeechSR, HierSpeech2's conversion
    path, TextToVec)."""
    exports = {"SpeechSR": export_speechsr, "HierSpeech2": export_backbone, "TextToVec": export_ttv}
    kind = next((name for name in exports if any(c.__name__ == name for c in type(model).__mro__)), None)
    if kind is None:
        raise CheckpointError(
            f"ONNX export takes a SpeechSR, HierSpeech2 or TextToVec model, not a {type(model).__name__}"
        )
    return exports[kind](model, out_dir)


def describe(module: Any) -> str:
    """``"onnxruntime"`` for an ONNX engine of this module, else ``"torch"`` (for logs and benchmarks)."""
    return "onnxruntime" if isinstance(module, _OnnxEngine) else "torch"
