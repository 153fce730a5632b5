"""Running many jobs at once: each renders window by window (or piece by piece) into its sink.

Equal-length windows of different jobs share a model call; a job whose input or model call fails
is marked failed and the others go on (:func:`guarded` retries a failed batch row by row).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ..audio_stream import FileSink, MemorySink
from ..chunking import CrossFader, Window
from ..errors import HierSpeechError
from ..options import ScaleNorm
from .jobs import Output, Result

__all__ = [
    "JOB_ERRORS",
    "PEAK",
    "Run",
    "device_of",
    "dtype_of",
    "equal_length_groups",
    "finish_runs",
    "guarded",
    "make_sink",
    "progress_bar",
    "run_windows",
    "seeded",
    "start_runs",
]

log = logging.getLogger(__name__)

JOB_ERRORS = (HierSpeechError, ValueError, RuntimeError, OSError)
"""Errors a job can raise that stop that job only (user data, or a model call that cannot run on it)."""
PEAK = 0.999
"""The official output peak after "max" normalisation."""

JobT = TypeVar("JobT")
RunT = TypeVar("RunT", bound="Run")


@dataclass
class Run:
    """One job being rendered into its sink; each pipeline adds what its renderer reads."""

    index: int
    result: Result
    sink: MemorySink | FileSink | None = None
    windows: list[Window] = field(default_factory=list)
    fader: CrossFader | None = None
    remaining: int = 0

    def fail(self, error: BaseException) -> None:
        """Record ``error`` (the first one counts) and drop the partial output."""
        if self.result.error is None:
            self.result.error = error
            log.debug("job %d failed: %s", self.index, error)
        if self.sink is not None:
            self.sink.discard()
            self.sink = None

    @property
    def failed(self) -> bool:
        """Whether the job has failed."""
        return self.result.error is not None

    def push(self, block: Tensor, ratio: float, window: Window) -> None:
        """Write the rendered ``block`` of ``window`` (cross-faded); the last window finishes the job."""
        self.sink.write(self.fader.push(window.crop(block, ratio)))
        self.remaining -= 1
        if self.remaining == 0:
            self.sink.write(self.fader.finish())
            self.finish()

    def finish(self) -> None:
        """Close the sink into the result: the audio, or the path of the written file."""
        closed = self.sink.close()
        self.sink = None
        if isinstance(closed, Path):
            self.result.path = closed
        else:
            self.result.audio = closed


def start_runs(
    jobs: Sequence[JobT],
    run_type: type[RunT],
    sample_rate: int,
    prepare: Callable[[RunT, JobT], None],
    raise_errors: bool,
) -> list[RunT]:
    """One ``run_type`` per job (its result at ``sample_rate``), prepared; a job that cannot
    start fails alone.

    With ``raise_errors`` the first such error is raised instead.
    """
    runs = []
    for index, job in enumerate(jobs):
        run = run_type(index, Result(sample_rate=sample_rate))
        try:
            prepare(run, job)
        except JOB_ERRORS as error:
            if raise_errors:
                raise
            run.fail(error)
        runs.append(run)
    return runs


def finish_runs(runs: Sequence[Run], raise_errors: bool) -> list[Result]:
    """The results of ``runs``, closing those left with nothing to render; raise the first error if asked."""
    for run in runs:
        if run.sink is not None and not run.failed and run.remaining <= 0:
            run.finish()
        if raise_errors and run.failed:
            raise run.result.error
    return [run.result for run in runs]


def make_sink(output: Output, rate: int, scale_norm: ScaleNorm, peak: float) -> MemorySink | FileSink:
    """Where a job's audio goes: memory (``output`` None) or the file ``output``, normalised at the end."""
    if output is None:
        return MemorySink(scale_norm, peak)
    return FileSink(output, rate, scale_norm, peak)


def run_windows(
    runs: Sequence[Run],
    render: Callable[[list[tuple[Run, Window]]], Tensor],
    ratio: float,
    batch_size: int,
    progress: bool,
) -> None:
    """Render every window of every run, equal-length windows ``batch_size`` at a time; failures stay
    per job."""
    queue = [(run, window) for run in runs if not run.failed for window in run.windows]
    with progress_bar(len(queue), progress, "window", "converting") as bar:
        for group in equal_length_groups(queue, lambda item: item[1].length, batch_size):
            group = [item for item in group if not item[0].failed]
            for (run, window), out in zip(group, guarded(render, group)):
                if isinstance(out, BaseException):
                    run.fail(out)
                elif not run.failed:
                    run.push(out, ratio, window)
            bar.update(len(group))


def guarded(
    render: Callable[[list[Any]], Sequence[Tensor]], group: list[Any]
) -> list[Tensor | BaseException]:
    """``render(group)`` split per row; if the batch fails, each row is retried alone to find the culprit."""
    if not group:
        return []
    try:
        return list(render(group))
    except JOB_ERRORS as error:
        if len(group) == 1:
            return [error]
    return [guarded(render, [item])[0] for item in group]


def equal_length_groups(
    items: Sequence[Any], length: Callable[[Any], int], batch_size: int
) -> Iterator[list[Any]]:
    """Consecutive runs of ``items`` (stably sorted by length) of equal length, at most ``batch_size``
    long."""
    ordered = sorted(items, key=length)
    group: list[Any] = []
    for item in ordered:
        if group and (len(group) == batch_size or length(group[0]) != length(item)):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def progress_bar(total: int, enabled: bool, unit: str, description: str) -> Any:
    """A tqdm bar on stderr (disabled unless ``enabled``), used as a context manager."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit=unit, desc=description, file=sys.stderr, leave=False)


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with a fixed CPU/CUDA RNG state when ``seed`` is given, restoring it afterwards."""
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s parameters."""
    return next(module.parameters()).device


def dtype_of(module: nn.Module) -> torch.dtype:
    """The dtype of ``module``'s parameters."""
    return next(module.parameters()).dtype
