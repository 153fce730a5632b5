"""Long signals in bounded memory: overlapping windows of equal length and raised-cosine cross-fades.

A signal of ``total`` samples is owned by consecutive *cores* of ``chunk`` samples. Each core is
processed inside a *window* that adds ``context`` samples on both sides (the model sees what
surrounds the core; that part of its output is discarded), and neighbouring outputs are
cross-faded over ``crossfade`` samples centred on the core boundary. Windows at the ends are
shifted inwards rather than shortened, so every window of a long signal has the same length
``chunk + 2 · context``: windows of many signals can be stacked into one batch without padding,
and a signal no longer than one window is processed whole, exactly as without chunking.

:class:`CrossFader` joins the kept outputs as they arrive and hands back finished samples, so
nothing but one fade's worth of samples is ever held.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ChunkPlan", "CrossFader", "Window", "fade_in_weights"]


@dataclass(frozen=True)
class Window:
    """One model call: input samples ``[start, end)``; its output owns ``[keep_start, keep_end)``
    (input units).

    ``[core_start, core_end)`` is the part that is this window's alone (the kept part without the fades).
    """

    start: int
    end: int
    keep_start: int
    keep_end: int
    core_start: int = 0
    core_end: int = 0

    @property
    def length(self) -> int:
        return self.end - self.start

    def crop(self, output: Tensor, ratio: float = 1.0) -> Tensor:
        """The kept part of this window's output ``[..., ratio · length]`` (``ratio``: output/input rate)."""
        first = _scaled(self.keep_start - self.start, ratio)
        return output[..., first : first + _scaled(self.keep_end - self.keep_start, ratio)]


@dataclass(frozen=True)
class ChunkPlan:
    """Window geometry, in input samples; every value is a multiple of ``multiple`` (``crossfade`` of 2 ×).

    Args:
        chunk: samples each window owns.
        context: samples added on each side of the owned part and discarded after the model call.
        crossfade: samples over which neighbouring outputs are blended (at most ``2 · context``).
        multiple: alignment of every boundary (e.g. 1280 so that semantic frames, F0 frames and the
            official source padding line up; a multiple whose product with the output/input rate
            ratio is whole keeps output positions exact).
    """

    chunk: int
    context: int
    crossfade: int
    multiple: int = 1

    def __post_init__(self) -> None:
        if self.multiple < 1 or self.chunk < self.multiple:
            raise ValueError(
                f"chunk ({self.chunk}) must be at least one multiple ({self.multiple}) of samples"
            )
        for name in ("chunk", "context"):
            if getattr(self, name) < 0 or getattr(self, name) % self.multiple:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) must be a non-negative multiple of {self.multiple}"
                )
        if self.crossfade < 0 or self.crossfade % (2 * self.multiple):
            raise ValueError(
                f"crossfade ({self.crossfade}) must be a non-negative multiple of {2 * self.multiple}"
            )
        if self.crossfade > 2 * self.context or self.crossfade > self.chunk:
            raise ValueError(
                f"crossfade ({self.crossfade}) must not exceed 2 × context ({2 * self.context}) "
                f"or chunk ({self.chunk})"
            )

    @classmethod
    def from_seconds(
        cls, chunk: float, context: float, crossfade: float, sample_rate: int, multiple: int = 1
    ) -> ChunkPlan:
        """Durations in seconds, rounded to whole multiples (the crossfade to an even number of them)."""

        def samples(seconds: float, unit: int) -> int:
            return max(0, round(seconds * sample_rate / unit)) * unit

        return cls(
            chunk=max(multiple, samples(chunk, multiple)),
            context=samples(context, multiple),
            crossfade=samples(crossfade, 2 * multiple),
            multiple=multiple,
        )

    @property
    def window_length(self) -> int:
        """Length of every window of a signal longer than one window."""
        return self.chunk + 2 * self.context

    def windows(self, total: int) -> list[Window]:
        """The windows covering ``[0, total)`` in order;
        one window ``[0, total)`` when the signal fits in one.

        When ``total`` is not a multiple of ``multiple``, the last window ends up to ``multiple - 1``
        samples past ``total``: read zeros there (its output is cropped at ``total``).
        """
        if total <= 0:
            raise ValueError(f"cannot plan windows over {total} samples")
        if total <= self.window_length:
            return [Window(0, total, 0, total, 0, total)]
        half_fade = self.crossfade // 2
        cores = math.ceil(total / self.chunk)
        windows = []
        for index in range(cores):
            core_start, core_end = index * self.chunk, min(total, (index + 1) * self.chunk)
            start = min(max(0, core_start - self.context), total - self.window_length)
            start += -start % self.multiple  # the last windows: aligned up, so they may pass the end
            keep_start = 0 if index == 0 else core_start - half_fade
            keep_end = total if index == cores - 1 else core_end + half_fade
            windows.append(
                Window(start, start + self.window_length, keep_start, keep_end, core_start, core_end)
            )
        return windows

    def growing_windows(self, total: int, largest: int) -> list[Window]:
        """Windows over ``[0, total)`` whose cores double from ``chunk`` up to ``largest`` samples.

        For streaming: the first block comes after one short model call, and each later call
        covers twice the audio of the one before, so fewer calls pay the context. A renderer keeps
        ahead of playback only if it runs well under real time (the second call renders twice what
        the first handed out). Windows are not of equal length (they are never batched) and end at
        ``total``; every other boundary is a multiple of ``multiple``. One window ``[0, total)``
        when the signal fits in the first core and its context.
        """
        if total <= 0:
            raise ValueError(f"cannot plan windows over {total} samples")
        if largest < self.chunk or largest % self.multiple:
            raise ValueError(
                f"largest ({largest}) must be a multiple of {self.multiple} of at least chunk ({self.chunk})"
            )
        half_fade = self.crossfade // 2
        bounds, core = [0], self.chunk
        while bounds[-1] + core + self.context < total:
            bounds.append(bounds[-1] + core)
            core = min(largest, 2 * core)
        bounds.append(total)
        windows = []
        for index, (core_start, core_end) in enumerate(itertools.pairwise(bounds)):
            keep_start = 0 if index == 0 else core_start - half_fade
            keep_end = total if core_end == total else core_end + half_fade
            start, end = max(0, core_start - self.context), min(total, core_end + self.context)
            windows.append(Window(start, end, keep_start, keep_end, core_start, core_end))
        return windows


def _scaled(samples: int, ratio: float) -> int:
    # floor, as SpeechSR's output length; aligned plans only ever floor whole numbers
    return math.floor(samples * ratio + 1e-6)


def fade_in_weights(length: int, like: Tensor) -> Tensor:
    """Raised-cosine ramp from 0 to 1 over ``length`` samples (its mirror sums with it to exactly 1)."""
    position = (torch.arange(length, device=like.device, dtype=torch.float64) + 0.5) / length
    return (0.5 - 0.5 * torch.cos(math.pi * position)).to(like.dtype)


class CrossFader:
    """Streams kept window outputs ``[..., n]`` that overlap their predecessor by ``crossfade`` samples.

    ``push`` returns the samples that are final; ``finish`` returns the held tail.
    """

    def __init__(self, crossfade: int) -> None:
        self.crossfade = crossfade
        self.tail: Tensor | None = None

    def push(self, segment: Tensor) -> Tensor:
        """Add the next kept output; returns the finished samples ``[..., m]``."""
        fade = self.crossfade
        if self.tail is not None and fade:
            if segment.shape[-1] < fade:
                raise ValueError(f"a segment of {segment.shape[-1]} samples cannot cross-fade over {fade}")
            ramp = fade_in_weights(fade, segment)
            head = segment[..., :fade] * ramp + self.tail * (1 - ramp)
            segment = torch.cat([head, segment[..., fade:]], dim=-1)
        elif self.tail is not None:
            segment = torch.cat([self.tail, segment], dim=-1)
        split = max(0, segment.shape[-1] - fade)
        self.tail = segment[..., split:]
        return segment[..., :split]

    def finish(self) -> Tensor:
        """The samples still held (the end of the signal)."""
        tail, self.tail = self.tail, None
        if tail is None:
            return torch.zeros(0)
        return tail
