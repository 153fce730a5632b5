"""Independent chunks of CPU inference work on worker threads, one torch thread each.

The time-chunked inference paths (:mod:`hierspeech2.nn.upsampler`) run thousands of small
operations: a 32-channel convolution over 8 k samples, a ``sin`` over 270 k values. With
torch's intra-op threads, every one of them is split across the cores and joined again, and
on two cores the pair does only about 1.4x the work of one. Handing whole chunks to the cores
instead (one Python worker per torch thread, each running its chunk's operations on a single
torch thread; torch releases the GIL inside every operation) removes those joins:
SpeechSR-48k runs 1.10-1.41x and the backbone 1.09-1.29x faster on a 2-core AVX2 EPYC (paired
runs against the same chunks in order, ``benchmarks/chunk_threads.py``). Large matmuls gain
nothing: torch's own threads already run them well (MMS's front end was measured slower on
workers).

:func:`run_chunks` is the one entry point (:func:`concat_time_chunks` builds on it). Workers see
the caller's grad mode, inference mode, CPU autocast and context variables (so
:func:`~hierspeech2.nn.inference.reference_arithmetic` reaches them). Results do not depend on
which worker computes which chunk: every worker runs single-threaded, so a chunk's arithmetic is
the same whichever thread takes it. Inside :func:`sequential_chunks`, on a caller with one torch
thread, with fewer chunks than torch threads (for torch work, which torch's own threads then keep
parallel), for work off the CPU, and inside a worker (no nesting), the chunks run in order on the
calling thread instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from .._util import context_value

_T = TypeVar("_T")
_ENABLED = contextvars.ContextVar("hierspeech2_chunk_threads", default=True)
_WORKER = threading.local()
_POOL_LOCK = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_workers_started = 0


def run_chunks(
    work: Callable[[_T], None], chunks: Sequence[_T], device: torch.device, *, intra_op: bool = True
) -> None:
    """Call ``work(chunk)`` for every chunk, on the worker threads when that applies (see the module).

    ``work`` must be independent per chunk (e.g. write to its own slice of a preallocated output)
    and is called exactly once per chunk; the first exception raised is re-raised here after
    every chunk has finished. ``intra_op``: run in order, ``work`` is parallel on its own (torch
    operations on torch's threads), so fewer chunks than threads stay in order; work that nothing
    else parallelises (numpy) passes False and goes to the workers from two chunks on.
    """
    threads = torch.get_num_threads()
    if (
        threads < 2
        or len(chunks) < (threads if intra_op else 2)
        or device.type != "cpu"
        or not _ENABLED.get()
        or getattr(_WORKER, "active", False)
    ):
        for chunk in chunks:
            work(chunk)
        return
    pool, started = _get_pool(threads)
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    autocast, autocast_dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    context = contextvars.copy_context()

    def call(chunk: _T) -> None:
        with (
            torch.inference_mode(inference),
            torch.set_grad_enabled(grad),
            torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast),
        ):
            context.copy().run(work, chunk)

    futures = [pool.submit(call, chunk) for chunk in chunks]
    errors = [future.exception() for future in futures]
    if _workers_started != started:
        # A worker's torch.set_num_threads(1) also sets the default that threads started later
        # take; give that default back (the caller's own thread count never changed).
        torch.set_num_threads(threads)
    for error in errors:
        if error is not None:
            raise error


def concat_time_chunks(
    piece: Callable[[int, int], torch.Tensor],
    length: int,
    chunk: int,
    device: torch.device,
    *,
    threads: bool = True,
) -> torch.Tensor:
    """[B, length, C] from ``piece(start, stop)`` → [B, stop - start, C] for consecutive chunks of
    ``chunk`` time steps, written into one output: by :func:`run_chunks`, or (``threads=False``,
    for work that torch's intra-op threads already run well, such as large matmuls) in order here."""
    out: list[torch.Tensor] = []
    allocation = threading.Lock()

    def work(start: int) -> None:
        stop = min(length, start + chunk)
        values = piece(start, stop)
        with allocation:
            if not out:
                out.append(values.new_empty(values.shape[0], length, values.shape[-1]))
        out[0][:, start:stop] = values

    starts = range(0, length, chunk)
    if threads:
        run_chunks(work, starts, device)
    else:
        for start in starts:
            work(start)
    return out[0]


def sequential_chunks() -> contextlib.AbstractContextManager[None]:
    """Run :func:`run_chunks` work in order on the calling thread inside this context."""
    return context_value(_ENABLED, False)


def _get_pool(threads: int) -> tuple[ThreadPoolExecutor, int]:
    """The worker pool sized for ``threads`` torch threads, and the count of workers started so far."""
    global _pool, _pool_size
    with _POOL_LOCK:
        if _pool is None or _pool_size != threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(
                threads, thread_name_prefix="hierspeech2-chunks", initializer=_start_worker
            )
            _pool_size = threads
        return _pool, _workers_started


def _forget_pool_after_fork() -> None:
    # A forked child (a DataLoader worker, say) has none of the parent's threads: a pool inherited
    # from it would queue work that no thread ever runs. The child starts its own when needed.
    global _pool, _pool_size, _POOL_LOCK
    _pool, _pool_size, _POOL_LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _start_worker() -> None:
    global _workers_started
    _WORKER.active = True
    # torch applies the process default to a thread at its first parallel operation unless that
    # thread has been initialised: read the count first (initialising it), then set it, or a later
    # default (restored by run_chunks) would silently give this worker two threads again.
    torch.get_num_threads()
    torch.set_num_threads(1)
    with _POOL_LOCK:
        _workers_started += 1
