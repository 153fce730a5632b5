"""Chunks of CPU inference on worker threads: each chunk once, the caller's modes carried, nothing leaked."""

from __future__ import annotations

import threading

import pytest
import torch

from hierspeech2.models import SpeechSR
from hierspeech2.nn import upsampler
from hierspeech2.nn.chunk_threads import run_chunks, sequential_chunks
from hierspeech2.nn.inference import (
    fast_paths_enabled,
    fuse_weight_norm,
    reference_arithmetic,
    use_fast_activations,
)

CPU = torch.device("cpu")


@pytest.fixture
def two_threads():
    """Two torch threads (the parallel case) whatever this machine's default, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _record(chunks, device=CPU, intra_op: bool = True) -> dict[int, tuple[str, int]]:
    seen: dict[int, tuple[str, int]] = {}
    lock = threading.Lock()

    def work(chunk: int) -> None:
        with lock:
            assert chunk not in seen, "a chunk ran twice"
            seen[chunk] = (threading.current_thread().name, torch.get_num_threads())

    run_chunks(work, chunks, device, intra_op=intra_op)
    return seen


def test_every_chunk_runs_once_on_single_threaded_workers(two_threads) -> None:
    seen = _record(range(40))
    assert sorted(seen) == list(range(40))
    assert all(name.startswith("hierspeech2-chunks") for name, _ in seen.values())
    assert {threads for _, threads in seen.values()} == {1}


def test_work_without_threads_of_its_own_goes_to_workers_from_two_chunks(two_threads) -> None:
    torch.set_num_threads(3)
    seen = _record(range(2), intra_op=False)  # numpy work: in order it would use one core of three
    assert sorted(seen) == [0, 1]
    assert all(name.startswith("hierspeech2-chunks") for name, _ in seen.values())
    caller = threading.current_thread().name
    assert _record([0], intra_op=False) == {0: (caller, 3)}


def test_caller_thread_count_and_new_threads_default_are_unchanged(two_threads) -> None:
    torch.set_num_threads(3)  # a new count: a new pool, whose workers each set one thread
    assert {threads for _, threads in _record(range(8)).values()} == {1}
    assert torch.get_num_threads() == 3
    # and they keep one thread after the caller gave the process default back
    assert {threads for _, threads in _record(range(8)).values()} == {1}
    fresh: list[int] = []
    thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert fresh == [3]


@pytest.mark.parametrize(
    "case",
    [
        "one chunk",
        "fewer chunks than threads",
        "one torch thread",
        "sequential_chunks",
        "not on the CPU",
        "nested in a worker",
    ],
)
def test_runs_in_order_on_the_caller_where_threads_do_not_apply(two_threads, case) -> None:
    caller = threading.current_thread().name
    if case == "one chunk":
        assert _record([0]) == {0: (caller, 2)}
        return
    if case == "fewer chunks than threads":
        torch.set_num_threads(3)
        assert _record([0, 1]) == {0: (caller, 3), 1: (caller, 3)}
        return
    if case == "one torch thread":
        torch.set_num_threads(1)
        assert {name for name, _ in _record(range(6)).values()} == {caller}
        return
    if case == "sequential_chunks":
        with sequential_chunks():
            assert {name for name, _ in _record(range(6)).values()} == {caller}
        return
    if case == "not on the CPU":
        assert {name for name, _ in _record(range(6), torch.device("meta")).values()} == {caller}
        return
    inner: dict[int, set[str]] = {}

    def outer(chunk: int) -> None:
        inner[chunk] = {name for name, _ in _record(range(4)).values()}
        assert inner[chunk] == {threading.current_thread().name}

    run_chunks(outer, range(4), CPU)
    assert len(inner) == 4


def test_workers_see_the_callers_grad_inference_autocast_and_context(two_threads) -> None:
    seen: list[tuple[bool, bool, bool, torch.dtype, bool]] = []
    lock = threading.Lock()

    def work(_: int) -> None:
        state = (
            torch.is_grad_enabled(),
            torch.is_inference_mode_enabled(),
            torch.is_autocast_enabled("cpu"),
            torch.get_autocast_dtype("cpu"),
            fast_paths_enabled(),
        )
        with lock:
            seen.append(state)

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), reference_arithmetic():
        run_chunks(work, range(6), CPU)
    assert set(seen) == {(False, True, True, torch.bfloat16, False)}
    seen.clear()
    with torch.no_grad():
        run_chunks(work, range(6), CPU)
    assert {state[:3] + state[4:] for state in seen} == {(False, False, False, True)}


def test_an_exception_in_a_chunk_reaches_the_caller_after_all_chunks_ran(two_threads) -> None:
    done: list[int] = []

    def work(chunk: int) -> None:
        if chunk == 3:
            raise ValueError("chunk 3 failed")
        done.append(chunk)

    with pytest.raises(ValueError, match="chunk 3 failed"):
        run_chunks(work, range(10), CPU)
    assert sorted(done) == [c for c in range(10) if c != 3]


def test_speechsr_on_worker_threads_equals_the_sequential_chunks_and_repeats_exactly(
    two_threads, monkeypatch
) -> None:
    monkeypatch.setattr(upsampler, "STAGE_CHUNK_ELEMENTS", 1 << 14)  # many chunks for a short input
    model = use_fast_activations(fuse_weight_norm(SpeechSR.from_packaged(48000)).requires_grad_(False))
    wav = torch.randn(1, 1, 16000, generator=torch.Generator().manual_seed(3)) * 0.2
    with torch.inference_mode():
        with sequential_chunks():
            sequential = model(wav)
        threaded, again = model(wav), model(wav)
    assert torch.equal(threaded, again)
    assert (threaded - sequential).abs().max().item() < 1e-5


def _chunks_in_child(queue) -> None:
    queue.put(sorted(_record(range(6))))


def test_a_forked_child_runs_chunks_with_its_own_workers(two_threads) -> None:
    import multiprocessing

    _record(range(6))  # the parent's pool exists before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_chunks_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on the parent's worker pool")
    assert queue.get(timeout=5) == list(range(6))
