"""Dynamic int8 inference on CPU: int8 weights, activations quantised on the fly.

:func:`quantize_int8` swaps every dense ``nn.Linear`` and ``nn.Conv1d`` of a model for an int8
twin that runs on oneDNN's int8 kernels (``torch.ops.onednn.qlinear_pointwise`` /
``qconv_pointwise``, the kernels PyTorch's own x86 int8 lowering uses):

- weights: int8, symmetric, one scale per output channel, quantised once;
- activations: quantised per call and per tensor (asymmetric), to **8 bits on CPUs with VNNI**
  (AVX-512 VNNI or AVX-VNNI: u8 × s8 products summed in int32; about 1.1 % relative error per
  layer, measured) and to **7 bits elsewhere**: without VNNI, oneDNN multiplies u8 × s8 pairs
  into saturating int16, so full 8-bit activations overflow (about 10 % error per layer); 7 bits
  keep every pair in range on every x86 CPU for about 2 % error per layer;
- output: float32, bias added in float.

Grouped and depthwise convolutions (the anti-aliasing filters, MMS's positional convolution),
transposed convolutions and layers with a single input or output channel stay in float32:
they are cheap, memory-bound or precision-critical. So do the submodules a module names in its
``int8_float_parts``, where a float path is faster (MMS's conv front end, run time-major).

Why not ``torch.ao.quantization.quantize_dynamic``: it is deprecated (in favour of torchao), its
dynamic convolution warns of poor accuracy, and torchao's int8 path runs ``torch._int_mm``,
which on CPU without ``torch.compile`` is about 30× slower than float32 (measured here).

The conversion is one-way and inference-only: the model no longer has float weights to train
or export, and says so. Fold weight norm first (:func:`~hierspeech2.nn.inference.fuse_weight_norm`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import SettingError
from .inference import fuse_weight_norm, seal_for_inference


def cpu_has_vnni() -> bool:
    """Whether this CPU has VNNI (AVX-512 VNNI or AVX-VNNI), as PyTorch detects it."""
    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


ACTIVATION_LEVELS = 255 if cpu_has_vnni() else 127
"""Largest activation code: 8 bits with VNNI, 7 without (see the module docstring)."""
WEIGHT_LEVELS = 127
# Smallest out_channels × kernel_size worth an int8 convolution on a 2-core AVX2 CPU: smaller
# ones (SpeechSR's and the generator's 32- and 64-channel stacks) ran no faster (measured).
MIN_CONV_WORK = 512
_QUANTIZED_FLAG = "_hierspeech2_int8"


def int8_supported() -> bool:
    """Whether this PyTorch build has oneDNN's int8 CPU kernels."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qconv_pointwise")


def quantize_activations(x: Tensor) -> tuple[Tensor, float, int]:
    """``x`` as uint8 codes in [0, :data:`ACTIVATION_LEVELS`] with its (scale, zero point):
    x ≈ scale · (codes − zero point)."""
    low, high = torch.aminmax(x.detach())
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SettingError("int8 inference met a non-finite activation; run this input in float32")
    scale = max(high - low, 1e-12) / ACTIVATION_LEVELS
    zero_point = min(ACTIVATION_LEVELS, max(0, round(-low / scale)))
    codes = torch.round(x * (1.0 / scale)).add_(zero_point).clamp_(0, ACTIVATION_LEVELS)
    return codes.to(torch.uint8), scale, zero_point


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-output-channel int8 codes of ``weight`` [C_out, ...] and their float scales [C_out]."""
    weight = weight.detach().float()
    reduce = tuple(range(1, weight.dim()))
    scale = (weight.abs().amax(dim=reduce) / WEIGHT_LEVELS).clamp_min(1e-12)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    codes = torch.round(weight / scale.view(shape)).clamp_(-WEIGHT_LEVELS, WEIGHT_LEVELS).to(torch.int8)
    return codes, scale


class _Int8Layer(nn.Module):
    """Shared state of the int8 layers: quantised weight, per-channel scales, float bias."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        codes, scale = quantize_weight(weight)
        self.register_buffer("weight_codes", codes)
        self.register_buffer("weight_scale", scale)
        self.register_buffer(
            "weight_zero_point", torch.zeros(scale.numel(), dtype=torch.long), persistent=False
        )
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self._packed: Tensor | None = None

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        return {**state, "_packed": None}  # oneDNN's packed weight is rebuilt on first use

    def _check_input(self, x: Tensor) -> None:
        if x.device.type != "cpu":
            raise SettingError(
                "int8 inference runs on CPU only; on a GPU run the model in float32 or bfloat16"
            )


class Int8Linear(_Int8Layer):
    """``nn.Linear`` with int8 weights and 7-bit dynamic activations: [..., in] → [..., out] float32."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__(linear.weight, linear.bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if self._packed is None:
            self._packed = torch.ops.onednn.qlinear_prepack(self.weight_codes, None)
        codes, scale, zero_point = quantize_activations(x.reshape(-1, self.in_features))
        out = torch.ops.onednn.qlinear_pointwise(
            codes, scale, zero_point, self._packed, self.weight_scale, self.weight_zero_point,
            self.bias, 1.0, 0, torch.float32, "none", [], "",
        )  # fmt: skip
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int8Conv1d(_Int8Layer):
    """Dense ``nn.Conv1d`` (zero padding) with int8 weights and 7-bit dynamic activations:
    [B, C, T] → [B, C', T']."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__(conv.weight, conv.bias)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation, self.groups = conv.padding, conv.dilation, conv.groups

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0)
        if self._packed is None:
            self._packed = torch.ops.onednn.qconv_prepack(
                self.weight_codes, self.weight_scale, 1.0, 0, list(self.stride), list(self.padding),
                list(self.dilation), self.groups, None,
            )  # fmt: skip
        codes, scale, zero_point = quantize_activations(x)
        out = torch.ops.onednn.qconv_pointwise(
            codes, scale, zero_point, self._packed, self.weight_scale, self.weight_zero_point, self.bias,
            list(self.stride), list(self.padding), list(self.dilation), self.groups,
            1.0, 0, torch.float32, "none", [], "",
        )  # fmt: skip
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, int8"
        )


def _int8_twin(module: nn.Module, min_work: int) -> nn.Module | None:
    if parametrize.is_parametrized(module):
        return None  # weight norm not folded: leave it (fuse_weight_norm first to quantise it)
    if type(module) is nn.Linear:
        return Int8Linear(module) if min(module.in_features, module.out_features) > 1 else None
    if type(module) is nn.Conv1d:
        dense = module.groups == 1 and module.padding_mode == "zeros" and not isinstance(module.padding, str)
        large = min(module.in_channels, module.out_channels) > 1
        worth_it = module.out_channels * module.kernel_size[0] >= min_work
        return Int8Conv1d(module) if dense and large and worth_it else None
    return None


def _float_parts(model: nn.Module) -> set[int]:
    """Ids of the modules under ``model`` that stay float32: everything under the submodules an
    owner names in its ``int8_float_parts`` (dotted paths from the owner)."""
    kept: set[int] = set()
    for owner in model.modules():
        for path in getattr(owner, "int8_float_parts", ()):
            kept.update(id(module) for module in owner.get_submodule(path).modules())
    return kept


def quantize_int8(model: nn.Module, min_work: int = MIN_CONV_WORK) -> nn.Module:
    """Swap the dense Linear/Conv1d layers under ``model`` for int8 twins, in place; returns ``model``.

    A convolution is swapped only when ``out_channels × kernel_size`` reaches ``min_work``:
    below that, quantising its input costs more than the int8 arithmetic saves. Layers under
    a weight-norm parametrization are left in float32, so fold weight norm first with
    :func:`~hierspeech2.nn.inference.fuse_weight_norm`. A module keeps the submodules it names in
    ``int8_float_parts`` in float32, where it has a faster float path (the
    :class:`~hierspeech2.ssl.SemanticEncoder` 's conv front end). Afterwards ``state_dict`` raises
    :class:`~hierspeech2.errors.CheckpointError`: quantise a ``copy.deepcopy`` to keep an
    exportable model.
    """
    if not int8_supported():
        raise SettingError("this PyTorch build lacks oneDNN's int8 kernels: int8 inference is unavailable")
    kept = _float_parts(model)
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            twin = None if id(child) in kept else _int8_twin(child, min_work)
            if twin is not None:
                setattr(parent, name, twin.to(next(child.parameters()).device))
                swapped += 1
    if swapped:
        seal_for_inference(model, _QUANTIZED_FLAG, _QUANTIZED_EXPORT_MESSAGE)
    return model


def is_int8(model: nn.Module) -> bool:
    """Whether :func:`quantize_int8` has converted ``model``."""
    return getattr(model, _QUANTIZED_FLAG, False)


_QUANTIZED_EXPORT_MESSAGE = (
    "{name} was quantised to int8 for inference (quantize_int8), so it has no float weights left to "
    "save. Export from a model that was not quantised, or quantise a copy.deepcopy(model)"
)


def int8_inference(
    *models: nn.Module, copy: bool = False, min_work: int = MIN_CONV_WORK
) -> tuple[nn.Module, ...]:
    """``models`` ready for int8 inference: weight norm folded, then :func:`quantize_int8`;
    returns them in order.

    With ``copy=True`` each model is deep-copied first and the originals stay exportable.
    """
    import copy as copying

    ready = []
    for model in models:
        model = copying.deepcopy(model) if copy else model
        ready.append(quantize_int8(fuse_weight_norm(model), min_work=min_work))
    return tuple(ready)
