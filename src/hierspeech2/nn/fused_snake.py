"""The polyphase snake activation as one fused C kernel, compiled on first use (CPU, float32).

:class:`~hierspeech2.nn.alias_free.PolyphaseActivation1d` computes the anti-aliased snake as
per-phase depthwise convolutions, ``sin`` and element-wise steps: seven tensor passes through
memory per activation. ``polyphase_snake.c`` (beside this module) does the same arithmetic in one
pass over cache-sized blocks of time, with each filter's taps held in registers and ``sin²`` as an
inlined polynomial (relative error below 1e-6 of the activation's output). It is built the first
time it is needed, with the system's C compiler for this machine's CPU (``-O3 -march=native``;
about half a second), and kept in ``$HIERSPEECH2_CACHE/kernels`` (default
``~/.cache/hierspeech2/kernels``) under a name that hashes the source, the compiler, the flags and
the CPU's features. It is called through :mod:`ctypes`, which releases the GIL, so the chunk
worker threads (:mod:`hierspeech2.nn.chunk_threads`) run it in parallel.

Where no C compiler is found (or the cache folder cannot be written), :func:`kernel` returns None
after one log line and the depthwise-convolution path runs instead: the result is the same to
float rounding. ``HIERSPEECH2_FUSED_KERNELS=0`` turns the kernel off.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from .._util import cache_folder
from .chunk_threads import run_chunks

__all__ = ["FLAGS", "MAX_TAPS", "kernel", "kernel_status", "polyphase_snake", "takes"]

logger = logging.getLogger(__name__)

SOURCE_NAME = "polyphase_snake.c"
FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared")
LIBRARIES = ("-lm",)
MAX_TAPS = 64  # the C source's MAX_TAPS: up taps per phase, and down taps over all phases
DISABLE_VARIABLE = "HIERSPEECH2_FUSED_KERNELS"
# Below this many output values per call the work is not split across the chunk workers.
MIN_VALUES_PER_THREAD = 1 << 16

_LOCK = threading.Lock()
_state: dict[str, object] = {}


def takes(ratio: int, up_taps: int, down_taps: int) -> bool:
    """Whether the kernel computes filters of these sizes (BigVGAN's: ratio 2, 7 and 7)."""
    return ratio >= 1 and 1 <= up_taps <= MAX_TAPS and 1 <= down_taps and ratio * down_taps <= MAX_TAPS


def kernel() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """The compiled kernel (built or loaded on the first call, in any thread), or None where it is
    unavailable or turned off (:func:`kernel_status` says why)."""
    if _turned_off():
        return None
    if "function" in _state:
        return _state["function"]  # type: ignore[return-value]
    with _LOCK:
        if "function" not in _state:
            function, status = _load()
            _state["status"] = status  # before "function": readers outside the lock test for that key
            _state["function"] = function
            (logger.debug if function is not None else logger.info)("fused snake kernel: %s", status)
    return _state["function"]  # type: ignore[return-value]


def kernel_status() -> str:
    """One line: where the kernel was loaded from, or why it is not used."""
    if _turned_off():
        return f"turned off by {DISABLE_VARIABLE}"
    kernel()
    return str(_state["status"])


def polyphase_snake(x: Tensor, up: Tensor, up_min: int, down: Tensor, down_min: int, gain: Tensor) -> Tensor:
    """[B, T, C] float32 on CPU (any batch and time strides) → [B, T, C] contiguous.

    ``up`` [ratio, up_taps, C] and ``down`` [ratio, down_taps, C] are the per-phase taps with the
    snake's α and 1/β folded in, ``gain`` [C] = β/α (see ``PolyphaseActivation1d``); the upsampled
    phase ``p`` at position ``m`` reads ``x[m + up_min + k]``, output ``n`` reads the phases at
    ``n + down_min + k``. Large calls are split over time across the chunk workers.
    """
    function = kernel()
    if function is None:
        raise RuntimeError(f"the fused snake kernel is unavailable: {kernel_status()}")
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise TypeError(f"the fused snake kernel takes float32 CPU tensors, got {x.dtype} on {x.device}")
    if x.stride(2) != 1:
        x = x.contiguous()
    up, down, gain = up.contiguous(), down.contiguous(), gain.contiguous()
    batch, length, channels = x.shape
    fits = up.shape[0] == down.shape[0] and up.shape[-1] == down.shape[-1] == channels
    if not fits or gain.shape != (channels,) or not takes(*up.shape[:2], down.shape[1]):
        raise ValueError(
            f"taps do not fit: x {tuple(x.shape)}, up {tuple(up.shape)}, down {tuple(down.shape)}, "
            f"gain {tuple(gain.shape)}"
        )
    out = x.new_empty(batch, length, channels)
    pieces = max(1, min(torch.get_num_threads(), out.numel() // MIN_VALUES_PER_THREAD))
    bounds = [length * i // pieces for i in range(pieces + 1)]

    def work(piece: int) -> None:
        status = function(
            x.data_ptr(), batch, length, channels, x.stride(0), x.stride(1),
            up.shape[0], up.shape[1], up_min, up.data_ptr(),
            down.shape[1], down_min, down.data_ptr(),
            gain.data_ptr(), out.data_ptr(), bounds[piece], bounds[piece + 1],
        )  # fmt: skip
        if status != 0:
            raise MemoryError("the fused snake kernel could not allocate its scratch block")

    run_chunks(work, range(pieces), x.device, intra_op=False)
    return out


def _turned_off() -> bool:
    return os.environ.get(DISABLE_VARIABLE, "1").strip().lower() in {"0", "false", "no", "off"}


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "gcc", "cc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _load() -> tuple[ctypes._CFuncPtr | None, str]:  # type: ignore[name-defined]
    if os.name != "posix":
        return None, f"not built on {sys.platform} (it is compiled with a POSIX C compiler)"
    compiler = _compiler()
    if compiler is None:
        return None, "no C compiler found (set CC, or install gcc)"
    source = resources.files(__package__).joinpath(SOURCE_NAME).read_bytes()
    try:
        version = subprocess.run([compiler, "--version"], check=False, capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"{compiler} --version failed: {error}"
    digest = hashlib.sha256(b"\0".join([source, version, " ".join(FLAGS + LIBRARIES).encode(), _cpu_flags()]))
    library = cache_folder("kernels") / f"polyphase_snake-{digest.hexdigest()[:16]}.so"
    if not library.is_file():
        error = _build(compiler, source, library)
        if error is not None:
            return None, error
    try:
        function = ctypes.CDLL(str(library)).polyphase_snake_f32
    except (OSError, AttributeError) as error:
        return None, f"could not load {library}: {error}"
    long, integer, pointer = ctypes.c_long, ctypes.c_int, ctypes.c_void_p
    function.argtypes = [pointer, long, long, long, long, long, integer, integer, integer, pointer]
    function.argtypes += [integer, integer, pointer, pointer, pointer, long, long]
    function.restype = integer
    return function, f"loaded {library}"


def _build(compiler: str, source: bytes, library: Path) -> str | None:
    """Compile ``source`` into ``library`` (atomically: other processes see the whole file or none)."""
    try:
        library.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=library.parent) as scratch:
            source_path = Path(scratch) / SOURCE_NAME
            source_path.write_bytes(source)
            built = Path(scratch) / library.name
            command = [compiler, *FLAGS, str(source_path), "-o", str(built), *LIBRARIES]
            result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                return f"compiling with {compiler} failed: {result.stderr.strip()[-300:]}"
            os.replace(built, library)
    except (OSError, subprocess.SubprocessError) as error:
        return f"could not build in {library.parent}: {error}"
    return None


def _cpu_flags() -> bytes:
    """The CPU's feature flags (``-march=native`` builds for them): part of the library's name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.encode()
    except OSError:
        pass
    return b""
