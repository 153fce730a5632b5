"""Alias-free resampling and activation (StyleGAN3 / BigVGAN style).

A pointwise non-linearity creates harmonics above Nyquist; running it at twice the rate between
a windowed-sinc upsampler and low-pass downsampler keeps them from folding back into the band.
The Kaiser-windowed sinc filters are persistent buffers named ``filter`` (``upsample.filter``,
``downsample.lowpass.filter``) because the released checkpoints store them.

Two classes compute the activation, with the same parameters, buffers and state-dict keys:

- :class:`Activation1d` is the reference: the official arithmetic (depthwise transposed conv on
  a replicate-padded input, snake, depthwise strided conv), differentiable, for training and as
  the ground truth of every parity test.
- :class:`PolyphaseActivation1d` is its drop-in for inference on CPU: the ×2 upsampled signal
  is kept as its two phases, each a 6-tap filter of the input; the snake's α and 1/β are folded
  into those taps; the decimating low-pass reads the phases directly, over time chunks that
  stay in cache. The reference spends most of its time moving 2× data through memory; the two
  agree to float rounding, edges included (the replicate padding is reproduced exactly). For a
  snake in float32 on CPU it hands the whole computation to one fused C kernel
  (:mod:`hierspeech2.nn.fused_snake`) where that is built, the depthwise convolutions otherwise.

Nothing switches between them at run time: :func:`hierspeech2.nn.inference.use_fast_activations`
swaps a model's activations explicitly (the pipelines do, for the devices where the polyphase
path is measured faster), and back.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import fused_snake
from .activations import _DIV_EPS, Snake, SnakeBeta
from .inference import balanced_chunk, fast_paths_enabled

DEFAULT_KERNEL_SIZE = 12  # BigVGAN's anti-aliasing filter length for a ratio of 2 (6 taps per unit of ratio)
# Elements (batch × channels × time) per chunk of the polyphase path: the upsampled chunk
# (ratio × this × 4 bytes) stays in L2/L3 and its buffers are reused instead of page-faulted.
CHUNK_ELEMENTS = 1 << 18


def kaiser_sinc_filter1d(cutoff: float, half_width: float, kernel_size: int) -> Tensor:
    """Kaiser-windowed sinc low-pass filter normalised to unit DC gain: [1, 1, kernel_size].

    Args:
        cutoff: cutoff frequency as a fraction of the sample rate (0 < cutoff ≤ 0.5).
        half_width: half the transition band width, same unit.
        kernel_size: number of taps; even sizes are centred between two samples.
    """
    if not 0.0 <= cutoff <= 0.5:
        raise ValueError(f"cutoff must lie in [0, 0.5] (a fraction of the sample rate), got {cutoff}")
    half_size = kernel_size // 2
    # Kaiser's design formulas: attenuation from the transition width, then the window's beta.
    attenuation = 2.285 * (half_size - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    if kernel_size % 2 == 0:
        time = torch.arange(-half_size, half_size) + 0.5
    else:
        time = torch.arange(kernel_size) - half_size
    if cutoff == 0:
        taps = torch.zeros_like(time)
    else:
        taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
        # Unit DC gain, so a constant passes through unchanged.
        taps = taps / taps.sum()
    return taps.view(1, 1, kernel_size)


class LowPassFilter1d(nn.Module):
    """Depthwise windowed-sinc low-pass with optional stride: [B, C, T] → [B, C, ⌈T / stride⌉]."""

    def __init__(
        self,
        cutoff: float = 0.5,
        half_width: float = 0.6,
        stride: int = 1,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        padding: bool = True,
        padding_mode: str = "replicate",
    ) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.padding_mode = padding_mode
        even = kernel_size % 2 == 0
        self.pad_left = kernel_size // 2 - int(even)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter1d(cutoff, half_width, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, T'] (T' = ⌈T / stride⌉ with padding)."""
        channels = x.shape[1]
        if self.padding:
            x = F.pad(x, (self.pad_left, self.pad_right), mode=self.padding_mode)
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride, groups=channels)


class UpSample1d(nn.Module):
    """Upsample by an integer ratio with a windowed-sinc interpolator: [B, C, T] → [B, C, ratio·T]."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        # Replicate-pad the input by `pad` samples, then trim the transposed conv's overhang.
        self.pad = kernel_size // ratio - 1
        self.trim_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.trim_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, ratio·T]."""
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(
            x, self.filter.expand(channels, -1, -1), stride=self.ratio, groups=channels
        )
        return x[..., self.trim_left : x.shape[-1] - self.trim_right]


class DownSample1d(nn.Module):
    """Low-pass then decimate by an integer ratio: [B, C, T] → [B, C, ⌈T / ratio⌉]."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, stride=ratio, kernel_size=kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, ⌈T / ratio⌉]."""
        return self.lowpass(x)


class Activation1d(nn.Module):
    """Apply ``activation`` at an upsampled rate, then return to the input rate: [B, C, T] → [B, C, T].

    The reference arithmetic, in training and inference alike; :class:`PolyphaseActivation1d`
    is the fast drop-in for inference.
    """

    def __init__(
        self,
        activation: nn.Module,
        up_ratio: int = 2,
        down_ratio: int = 2,
        up_kernel_size: int = DEFAULT_KERNEL_SIZE,
        down_kernel_size: int = DEFAULT_KERNEL_SIZE,
    ) -> None:
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(up_ratio, up_kernel_size)
        self.downsample = DownSample1d(down_ratio, down_kernel_size)
        self._plan = _polyphase_plan(self.upsample, self.downsample) if up_ratio == down_ratio else None

    @property
    def has_polyphase_form(self) -> bool:
        """Whether :class:`PolyphaseActivation1d` can compute this activation (equal up and down ratios)."""
        return self._plan is not None

    @property
    def halo(self) -> int:
        """Input samples either side of an output sample that it depends on (an upper bound)."""
        plan = self._plan
        if plan is not None:
            return max(-(plan.up_min + plan.down_min), plan.up_max + plan.down_max)
        return (
            self.upsample.filter.shape[-1] // self.upsample.ratio + self.downsample.lowpass.filter.shape[-1]
        )

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, T] (for equal up and down ratios)."""
        return self.reference_forward(x)

    def forward_time_major(self, x: Tensor) -> Tensor:
        """The same function on a time-major tensor: [B, T, C] → [B, T, C]."""
        return self.reference_forward(x.transpose(1, 2)).transpose(1, 2)

    def reference_forward(self, x: Tensor) -> Tensor:
        """The official arithmetic: upsample, activate, downsample."""
        return self.downsample(self.act(self.upsample(x)))


class PolyphaseActivation1d(Activation1d):
    """:class:`Activation1d` by polyphase filtering (inference only): same arguments, parameters and
    state-dict keys.

    Tuned for oneDNN's channels-last depthwise convolutions on CPU. It refuses to run where a
    gradient is needed (its folded taps are built without one); inside
    :func:`~hierspeech2.nn.inference.reference_arithmetic` it computes the reference instead.
    Swap a model's activations with :func:`~hierspeech2.nn.inference.use_fast_activations`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The arguments of :class:`Activation1d`, with equal up and down ratios."""
        super().__init__(*args, **kwargs)
        if not self.has_polyphase_form:
            raise ValueError(
                f"PolyphaseActivation1d needs equal up and down ratios, got up_ratio={self.upsample.ratio}, "
                f"down_ratio={self.downsample.ratio}; use Activation1d for unequal ones"
            )

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] → [B, C, T]."""
        if not fast_paths_enabled() or x.shape[-1] == 0:
            return self.reference_forward(x)
        self._refuse_gradient(x)
        return self._polyphase(x.transpose(1, 2)).transpose(1, 2)

    def forward_time_major(self, x: Tensor) -> Tensor:
        """[B, T, C] → [B, T, C] (any strides)."""
        if not fast_paths_enabled() or x.shape[1] == 0:
            return super().forward_time_major(x)
        self._refuse_gradient(x)
        return self._polyphase(x)

    def _refuse_gradient(self, x: Tensor) -> None:
        needs_grad = x.requires_grad or any(p.requires_grad for p in self.act.parameters())
        if torch.is_grad_enabled() and needs_grad:
            raise RuntimeError(
                "PolyphaseActivation1d is for inference: its filter taps are built without gradient, so "
                "training through it would drop the gradients of its input and of the snake's parameters. "
                "Run it under torch.inference_mode() (or no_grad), or switch the model back to the reference "
                "activations first: hierspeech2.nn.inference.use_fast_activations(model, enabled=False)"
            )

    def _polyphase(self, x: Tensor) -> Tensor:
        """[B, T, C] → [B, T, C] (any strides): a snake in float32 on CPU by the fused kernel
        (:mod:`~hierspeech2.nn.fused_snake`) where it is built, otherwise by per-phase depthwise
        convolutions over time chunks."""
        plan = self._plan
        batch, length, channels = x.shape
        up_weights, down_weights, linear_gain = self._phase_weights(x)
        if self._fusable(x, linear_gain) and fused_snake.kernel() is not None:
            up_taps, down_taps = self._fused_taps(up_weights, down_weights)
            return fused_snake.polyphase_snake(x, up_taps, plan.up_min, down_taps, plan.down_min, linear_gain)
        chunk = balanced_chunk(length, max(64, CHUNK_ELEMENTS // max(1, batch * channels)))
        out = None if chunk >= length else x.new_empty(batch, length, channels)
        for start in range(0, length, chunk):
            stop = min(length, start + chunk)
            # Phase positions m (upsampled sample ratio·m + phase) that the decimating filter reads.
            low, high = start + plan.down_min, stop + plan.down_max
            source = _replicate_slice(x, low + plan.up_min, high + plan.up_max)
            phases = [_depthwise_time_major(source, weight) for weight in up_weights]
            # The official low-pass replicate-pads the *upsampled* signal: phase positions before
            # the start hold its first sample, those after the end its last one, whatever the phase.
            if low < 0:
                first = phases[0][:, -low : 1 - low]
                for phase in phases:
                    phase[:, :-low] = first
            if high > length:
                last = phases[-1][:, length - 1 - low : length - low].clone()
                for phase in phases:
                    phase[:, length - low :] = last
            result = None
            for phase, weight in zip(phases, down_weights):
                filtered = _depthwise_time_major(self._activate(phase, linear_gain), weight)
                result = filtered if result is None else result.add_(filtered)
            if out is None:
                return result
            out[:, start:stop] = result
        return out

    def _activate(self, phase: Tensor, linear_gain: Tensor | None) -> Tensor:
        """One phase [B, L, C] through the activation (snake: with its α and 1/β folded into the taps)."""
        if linear_gain is None:
            return self.act(phase.transpose(1, 2)).transpose(1, 2)
        # phase holds v = α·u; β·snake(u) = sin²(v) + (β/α)·v, and 1/β sits in the low-pass taps.
        activated = torch.sin(phase)
        activated.square_()
        return activated.addcmul_(phase, linear_gain)

    def _phase_weights(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
        """Depthwise kernels [C, 1, 1, K] per phase for both filters, with the snake's α and 1/β folded in.

        Cached until a parameter or filter changes (in place or replaced) or the dtype/device does.
        """
        sources = [*self.act.parameters(), self.upsample.filter, self.downsample.lowpass.filter]
        key = (x.dtype, x.device, x.shape[-1], *((t.data_ptr(), _version(t)) for t in sources))
        cached = getattr(self, "_weights_cache", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, self._build_phase_weights(x))
            self._weights_cache = cached
        return cached[1]

    def _fusable(self, x: Tensor, linear_gain: Tensor | None) -> bool:
        """A snake in float32 on CPU with filters the fused kernel takes (BigVGAN's all do)."""
        plan = self._plan
        up_taps, down_taps = plan.up_max - plan.up_min + 1, plan.down_max - plan.down_min + 1
        on_cpu = x.dtype == torch.float32 and x.device.type == "cpu"
        return linear_gain is not None and on_cpu and fused_snake.takes(plan.ratio, up_taps, down_taps)

    def _fused_taps(self, up_weights: list[Tensor], down_weights: list[Tensor]) -> tuple[Tensor, Tensor]:
        """These phase weights as the fused kernel reads them: up [ratio, K, C] and down [ratio, K, C].

        Cached for as long as the same weights (from :meth:`_phase_weights`' cache) come back.
        """
        cached = getattr(self, "_fused_cache", None)
        if cached is None or cached[0] is not up_weights:
            taps = tuple(
                torch.stack([weight.reshape(weight.shape[0], -1).t() for weight in weights]).contiguous()
                for weights in (up_weights, down_weights)
            )
            cached = (up_weights, taps)
            self._fused_cache = cached
        return cached[1]

    def _build_phase_weights(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
        plan = self._plan
        channels = x.shape[-1]
        # At least float32 (bfloat16 taps would add their own error), float64 for float64 inputs.
        dtype = torch.promote_types(x.dtype, torch.float32)
        up_filter = self.upsample.ratio * self.upsample.filter.reshape(-1).to(dtype)
        down_filter = self.downsample.lowpass.filter.reshape(-1).to(dtype)
        up_gain = down_gain = linear_gain = None
        frequency, magnitude = _snake_parameters(self.act, dtype)
        if frequency is not None and bool((frequency != 0).all()):
            inverse_magnitude = 1.0 / (magnitude + _DIV_EPS)
            up_gain, down_gain = frequency.view(-1, 1), inverse_magnitude.view(-1, 1)
            linear_gain = (1.0 / (frequency * inverse_magnitude)).to(x.dtype)
        up_weights = []
        for taps in plan.up:
            kernel = up_filter.new_zeros(plan.up_max - plan.up_min + 1)
            for offset, index in taps:
                kernel[offset - plan.up_min] = up_filter[index]
            up_weights.append(_depthwise_kernel(kernel, up_gain, channels, x.dtype))
        down_weights = []
        for phase in range(plan.ratio):
            kernel = down_filter.new_zeros(plan.down_max - plan.down_min + 1)
            for tap_phase, offset, index in plan.down:
                if tap_phase == phase:
                    kernel[offset - plan.down_min] = down_filter[index]
            down_weights.append(_depthwise_kernel(kernel, down_gain, channels, x.dtype))
        return up_weights, down_weights, linear_gain


def _depthwise_kernel(kernel: Tensor, gain: Tensor | None, channels: int, dtype: torch.dtype) -> Tensor:
    """A time kernel [K] (times a per-channel gain [C, 1]) as conv2d depthwise weights [C, 1, 1, K]."""
    weights = kernel.expand(channels, -1) if gain is None else gain * kernel
    return weights.reshape(channels, 1, 1, -1).to(dtype)


def _depthwise_time_major(x: Tensor, weight: Tensor) -> Tensor:
    """Valid (unpadded) depthwise correlation along time of [B, T, C] with [C, 1, 1, K] → [B, T - K + 1, C].

    oneDNN's depthwise kernels are fast on channels-last images, i.e. on exactly this layout.
    """
    image = x.contiguous().unsqueeze(1).permute(0, 3, 1, 2)  # [B, C, 1, T] with channels-last strides
    out = F.conv2d(image, weight, groups=weight.shape[0])
    return out.permute(0, 2, 3, 1).squeeze(1)


class _PolyphasePlan:
    """Which filter tap feeds which phase at which offset, for an up/down pair of equal ratio.

    Upsampled sample ``ratio·m + p`` = Σ over ``up[p]`` of ``filter[k] · x[m + d]`` (``(d, k)`` pairs);
    output ``n`` = Σ over ``down`` of ``filter[k] · phase_p[n + e]`` (``(p, e, k)`` triples).
    """

    def __init__(self, ratio: int, up: list[list[tuple[int, int]]], down: list[tuple[int, int, int]]) -> None:
        self.ratio = ratio
        self.up = up
        self.down = down
        self.up_min = min(d for taps in up for d, _ in taps)
        self.up_max = max(d for taps in up for d, _ in taps)
        self.down_min = min(e for _, e, _ in down)
        self.down_max = max(e for _, e, _ in down)


def _polyphase_plan(upsample: UpSample1d, downsample: DownSample1d) -> _PolyphasePlan | None:
    lowpass = downsample.lowpass
    if not lowpass.padding or lowpass.padding_mode != "replicate":
        return None
    ratio, size = upsample.ratio, upsample.filter.shape[-1]
    # Transposed conv: padded-input sample j feeds upsampled sample ratio·j + k - trim_left.
    up = [
        [
            ((phase + upsample.trim_left - k) // ratio - upsample.pad, k)
            for k in range(size)
            if (phase + upsample.trim_left - k) % ratio == 0
        ]
        for phase in range(ratio)
    ]
    # Strided conv: output n reads upsampled sample ratio·n + k - pad_left = ratio·(n + e) + p.
    down = []
    for k in range(lowpass.filter.shape[-1]):
        offset, phase = divmod(k - lowpass.pad_left, lowpass.stride)
        down.append((phase, offset, k))
    return _PolyphasePlan(ratio, up, down)


def _snake_parameters(act: nn.Module, dtype: torch.dtype) -> tuple[Tensor | None, Tensor | None]:
    """(α, β) per channel of a (log-scale) Snake/SnakeBeta in ``dtype``, else (None, None)."""
    if isinstance(act, SnakeBeta):
        frequency, magnitude = act.alpha, act.beta
    elif isinstance(act, Snake):
        frequency = magnitude = act.alpha
    else:
        return None, None
    frequency, magnitude = frequency.detach().to(dtype), magnitude.detach().to(dtype)
    if act.log_scale:
        frequency, magnitude = frequency.exp(), magnitude.exp()
    return frequency, magnitude


def _replicate_slice(x: Tensor, start: int, stop: int) -> Tensor:
    """``x[:, start:stop]`` of [B, T, C], where times outside ``[0, T)`` repeat the edge sample
    (replicate padding)."""
    length = x.shape[1]
    inner = x[:, max(0, start) : min(length, stop)]
    left, right = max(0, -start), max(0, stop - length)
    if not (left or right):
        return inner
    pieces = [inner]
    if left:
        pieces.insert(0, x[:, :1].expand(-1, left, -1))
    if right:
        pieces.append(x[:, -1:].expand(-1, right, -1))
    return torch.cat(pieces, dim=1)


def _version(tensor: Tensor) -> int:
    # Inference tensors (made under torch.inference_mode) keep no version counter; they cannot be
    # changed in place outside inference mode, so their storage pointer identifies them well enough.
    return -1 if tensor.is_inference() else tensor._version
