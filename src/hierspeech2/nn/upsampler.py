"""HiFi-GAN / BigVGAN upsampling stack, parameterised to cover every official use.

``conv_pre`` → (+ ``injection``) → (+ ``cond(style)``) → for each stage: [leaky ReLU] → upsample
(+ ``stage_injections[i]``) → mean of the stage's residual blocks → post activation → ``conv_post``
(→ tanh). Child names are the official state-dict keys (``conv_pre``, ``cond``, ``ups``,
``resblocks``, ``activation_post``, ``conv_post``). The official configurations:

- SpeechSR generator (``dec.``): ``Upsampler(1, 32, upsample_rates=(3,), upsample_mode="linear",
  tanh_output=True)`` (24 kHz: rate 1.5). No ``ups``: stage ``i`` is linear interpolation.
- Backbone source network (``sn.``): ``Upsampler(192, 256, (2, 2), (4, 4), (3, 5, 7),
  cond_channels=256)``; it needs the hidden features as well as the 1-channel output::

      hidden = sn.features(z, style)     # [B, 64, 4T]
      log_f0 = sn.conv_post(hidden)      # [B, 1, 4T]

- TTV pitch predictor (``pp.``): ``Upsampler(1024, 256, (2, 2), (4, 4), (3, 5, 7),
  activation="leaky_relu", cond_channels=256, weight_norm_pre=False)``.
- Backbone waveform generator (``dec.``): ``Upsampler(192, 512, (4, 5, 4, 2, 2), (8, 11, 8, 4, 4),
  cond_channels=256, tanh_output=True)`` plus two pitch-injection modules of its own, e.g. in
  a subclass (their keys ``dec.downs.*``, ``dec.proj.*`` then sit beside the inherited ones)::

      class WaveformGenerator(Upsampler):
          def __init__(self, ...):
              super().__init__(..., tanh_output=True)
              self.downs = DBlock(...)          # source_hidden [B, 64, 4T] -> [B, 512, T]
              self.proj = nn.Conv1d(64, 256, 7, padding=3)

          def forward(self, z, source_hidden, style):
              return super().forward(z, style, injection=self.downs(source_hidden),
                                     stage_injections={0: self.proj(source_hidden)})

  ``stage(i, x, injection)`` runs one stage on its own for finer control.

Inference (no gradient, fast paths on: see :mod:`hierspeech2.nn.inference`) runs each stage's
residual blocks on time-major chunks of about :data:`STAGE_CHUNK_ELEMENTS` values with a halo
of the blocks' receptive radius on each side, so every intermediate stays in cache and no
large buffer is allocated per operation; the last stage also carries the post activation and
``conv_post``. Chunk seams are exact (each chunk sees all the input its kept outputs depend
on; the true signal edges keep their padding), so only float rounding differs. On a CPU with
several torch threads the chunks run on worker threads, whole chunks per core
(:mod:`hierspeech2.nn.chunk_threads`). The alias-free
activations in those chunks are the reference ones until
:func:`~hierspeech2.nn.inference.use_fast_activations` swaps in the polyphase class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .activations import SnakeBeta
from .alias_free import Activation1d
from .chunk_threads import concat_time_chunks
from .inference import balanced_chunk, use_fast_path
from .resblocks import LRELU_SLOPE, ResBlock, ResBlockActivation, conv1d_time_major, init_conv_

UpsampleMode = Literal["transposed", "linear"]

# The official TTV PitchPredictor ends with `F.leaky_relu(x)`, i.e. torch's default slope, not
# HiFi-GAN's 0.1; the released TTV weights were trained with it.
POST_LEAKY_SLOPE = 0.01
# Guards floor(n · rate) against the product landing a rounding error below an integer.
_LENGTH_EPS = 1e-6
# Values (batch × channels × time) per chunk of the time-major inference path: ~1 MiB in float32.
STAGE_CHUNK_ELEMENTS = 1 << 18
# Chunks are at least this many halos long, so that recomputed seams cost at most 2/16 extra.
_MIN_CHUNK_HALOS = 16


class Upsampler(nn.Module):
    """Upsampling conv stack: [B, in_channels, T] (+ style [B, cond, 1]) → [B, out_channels, T · ∏ rates]."""

    def __init__(
        self,
        in_channels: int,
        initial_channels: int,
        upsample_rates: tuple[float, ...] = (2, 2),
        upsample_kernel_sizes: tuple[int, ...] = (4, 4),
        resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11),
        resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        *,
        upsample_mode: UpsampleMode = "transposed",
        activation: ResBlockActivation = "snakebeta",
        cond_channels: int = 0,
        out_channels: int = 1,
        weight_norm_pre: bool = True,
        post_bias: bool = False,
        tanh_output: bool = False,
    ) -> None:
        """Build the stack.

        Args:
            in_channels: channels of the input features.
            initial_channels: channels after ``conv_pre``; each transposed stage halves them,
                linear stages keep them.
            upsample_rates: per-stage factors (integers for ``"transposed"``; any positive
                number for ``"linear"``, where stage output length is ⌊length · rate⌋).
            upsample_kernel_sizes: transposed-conv kernel per stage (ignored for ``"linear"``).
            resblock_kernel_sizes, resblock_dilations: one residual block per pair, per stage;
                their outputs are averaged.
            upsample_mode: ``"transposed"`` (weight-normed ``ups``) or ``"linear"`` interpolation.
            activation: ``"snakebeta"`` (alias-free, BigVGAN) or ``"leaky_relu"`` (HiFi-GAN).
            cond_channels: channels of the global conditioning (style) vector; 0 for none.
            out_channels: channels of ``conv_post``.
            weight_norm_pre: weight-normalise ``conv_pre``.
            post_bias: give ``conv_post`` a bias.
            tanh_output: squash the output with tanh (waveform generators).
        """
        super().__init__()
        if upsample_mode not in ("transposed", "linear"):
            raise ValueError(f"upsample_mode must be 'transposed' or 'linear', got {upsample_mode!r}")
        if len(resblock_kernel_sizes) != len(resblock_dilations):
            raise ValueError(
                f"resblock_kernel_sizes {resblock_kernel_sizes} and resblock_dilations {resblock_dilations} "
                "must have one entry per residual block"
            )
        if upsample_mode == "transposed" and len(upsample_kernel_sizes) != len(upsample_rates):
            raise ValueError(
                f"upsample_kernel_sizes {upsample_kernel_sizes} needs one kernel per rate in {upsample_rates}"
            )
        if any(rate <= 0 for rate in upsample_rates):
            raise ValueError(f"upsample_rates must be positive, got {upsample_rates}")
        self.upsample_rates = tuple(upsample_rates)
        self.upsample_mode = upsample_mode
        self.activation = activation
        self.tanh_output = tanh_output
        self.num_kernels = len(resblock_kernel_sizes)

        conv_pre = nn.Conv1d(in_channels, initial_channels, 7, padding=3)
        self.conv_pre = weight_norm(conv_pre) if weight_norm_pre else conv_pre
        if cond_channels:
            self.cond = nn.Conv1d(cond_channels, initial_channels, 1)

        stage_channels = []
        channels = initial_channels
        if upsample_mode == "transposed":
            self.ups = nn.ModuleList()
            for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
                if int(rate) != rate:
                    raise ValueError(f"transposed upsampling needs integer rates, got {upsample_rates}")
                rate = int(rate)
                if (kernel - rate) % 2:
                    raise ValueError(
                        f"upsample kernel {kernel} and rate {rate} must differ by an even number so "
                        "the stage multiplies the length exactly (e.g. kernel = 2 × rate)"
                    )
                up = nn.ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2)
                self.ups.append(weight_norm(init_conv_(up)))
                channels //= 2
                stage_channels.append(channels)
        else:
            stage_channels = [channels] * len(upsample_rates)

        self.resblocks = nn.ModuleList(
            ResBlock(ch, kernel, dilations, activation)
            for ch in stage_channels
            for kernel, dilations in zip(resblock_kernel_sizes, resblock_dilations)
        )
        if activation == "snakebeta":
            self.activation_post = Activation1d(SnakeBeta(channels, log_scale=True))
        self.conv_post = nn.Conv1d(channels, out_channels, 7, padding=3, bias=post_bias)
        self.hidden_channels = channels

    def upsample(self, index: int, x: Tensor) -> Tensor:
        """Stage ``index``'s upsampling alone: [B, C, T] → [B, C', T · rate]."""
        if self.upsample_mode == "linear":
            length = math.floor(x.shape[-1] * self.upsample_rates[index] + _LENGTH_EPS)
            return F.interpolate(x, size=length, mode="linear")
        if self.activation == "leaky_relu":
            x = F.leaky_relu(x, LRELU_SLOPE)
        return self.ups[index](x)

    def stage(self, index: int, x: Tensor, injection: Tensor | None = None) -> Tensor:
        """Stage ``index``: upsample, add ``injection`` if given, average the residual blocks."""
        x = self.upsample(index, x)
        if injection is not None:
            x = x + injection
        if use_fast_path(x):
            return self._fast_stage(index, x).transpose(1, 2)
        blocks = self._blocks(index)
        total = blocks[0](x)
        for block in blocks[1:]:
            total = total + block(x)
        return total / self.num_kernels

    def _blocks(self, index: int) -> nn.ModuleList:
        return self.resblocks[index * self.num_kernels : (index + 1) * self.num_kernels]

    def _fast_stage(
        self, index: int, x: Tensor, tail: Callable[[Tensor], Tensor] | None = None, tail_halo: int = 0
    ) -> Tensor:
        """Stage ``index``'s residual blocks (then ``tail``) on time-major chunks: [B, C, T] → [B, T, C']."""
        blocks = self._blocks(index)

        def run(piece: Tensor) -> Tensor:
            total = blocks[0].forward_time_major(piece)
            for block in blocks[1:]:
                total.add_(block.forward_time_major(piece))
            total.div_(self.num_kernels)
            return total if tail is None else tail(total)

        return _chunked_time_major(run, x, max(block.halo for block in blocks) + tail_halo)

    def _post_time_major(self, x: Tensor) -> Tensor:
        if self.activation == "snakebeta":
            return self.activation_post.forward_time_major(x)
        return F.leaky_relu(x, POST_LEAKY_SLOPE)

    def _post_halo(self) -> int:
        return self.activation_post.halo if self.activation == "snakebeta" else 0

    def features(
        self,
        x: Tensor,
        style: Tensor | None = None,
        *,
        injection: Tensor | None = None,
        stage_injections: Mapping[int, Tensor] | None = None,
    ) -> Tensor:
        """Hidden features before ``conv_post``: [B, in, T] → [B, hidden_channels, T · ∏ rates].

        ``style`` [B, cond_channels, 1] goes through ``cond``; ``injection`` [B, initial, T] is
        added after ``conv_pre``; ``stage_injections[i]`` after stage ``i``'s upsampling.
        """
        return self._run(x, style, injection, stage_injections, with_output=False)

    def forward(
        self,
        x: Tensor,
        style: Tensor | None = None,
        *,
        injection: Tensor | None = None,
        stage_injections: Mapping[int, Tensor] | None = None,
    ) -> Tensor:
        """[B, in, T] (+ style [B, cond, 1]) → [B, out_channels, T · ∏ rates]; see :meth:`features`."""
        return self._run(x, style, injection, stage_injections, with_output=True)

    def _output(self, hidden: Tensor) -> Tensor:
        out = self.conv_post(hidden)
        return torch.tanh(out) if self.tanh_output else out

    def _run(
        self,
        x: Tensor,
        style: Tensor | None,
        injection: Tensor | None,
        stage_injections: Mapping[int, Tensor] | None,
        with_output: bool,
    ) -> Tensor:
        x = self.conv_pre(x)
        if injection is not None:
            x = x + injection
        if style is not None:
            if not hasattr(self, "cond"):
                raise ValueError("this Upsampler was built with cond_channels=0 and takes no style")
            x = x + self.cond(style)
        stage_injections = stage_injections or {}
        last = len(self.upsample_rates) - 1
        if use_fast_path(x) and last >= 0:
            for index in range(last):
                x = self.stage(index, x, stage_injections.get(index))
            x = self.upsample(last, x)
            if stage_injections.get(last) is not None:
                x = x + stage_injections[last]
            return self._fast_last_stage(x, with_output).transpose(1, 2)
        for index in range(len(self.upsample_rates)):
            x = self.stage(index, x, stage_injections.get(index))
        if self.activation == "snakebeta":
            hidden = self.activation_post(x)
        else:
            hidden = F.leaky_relu(x, POST_LEAKY_SLOPE)
        return self._output(hidden) if with_output else hidden

    def _fast_last_stage(self, x: Tensor, with_output: bool) -> Tensor:
        """The last stage's blocks, the post activation and
        (``with_output``) ``conv_post`` in one chunked pass."""
        if not with_output:
            return self._fast_stage(len(self.upsample_rates) - 1, x, self._post_time_major, self._post_halo())

        def tail(hidden: Tensor) -> Tensor:
            out = conv1d_time_major(self.conv_post, self._post_time_major(hidden))
            return out.tanh_() if self.tanh_output else out

        halo = self._post_halo() + self.conv_post.dilation[0] * (self.conv_post.kernel_size[0] - 1) // 2
        return self._fast_stage(len(self.upsample_rates) - 1, x, tail, halo)


def _chunked_time_major(run: Callable[[Tensor], Tensor], x: Tensor, halo: int) -> Tensor:
    """``run`` (a local, length-preserving map on [B, T, C]) over overlapping chunks
    of ``x`` [B, C, T] → [B, T, C'], by :func:`~hierspeech2.nn.chunk_threads.concat_time_chunks`."""
    batch, channels, length = x.shape
    chunk = balanced_chunk(
        length, max(_MIN_CHUNK_HALOS * halo, STAGE_CHUNK_ELEMENTS // max(1, batch * channels), 1)
    )
    time_major = x.transpose(1, 2)
    if chunk >= length:
        return run(time_major.contiguous())

    def piece(start: int, stop: int) -> Tensor:
        low, high = max(0, start - halo), min(length, stop + halo)
        return run(time_major[:, low:high].contiguous())[:, start - low : stop - low]

    return concat_time_chunks(piece, length, chunk, x.device)
