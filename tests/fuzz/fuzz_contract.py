"""Fuzzing helpers: run a hypothesis property with the default or ``--fuzz-long`` budget, counting cases.

Every property states the project's robustness contract for one entry point: each generated
input gives a finite result or a :class:`~hierspeech2.errors.HierSpeechError` whose message a
user can act on, never a raw torch/numpy/soundfile exception. The number of cases run per entry
point is printed at the end of the session.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hierspeech2.errors import HierSpeechError

CASES: Counter[str] = Counter()
# An error that repeats a whole input is not a message a user can read; checkpoint errors list up to
# 20 offending keys per kind of problem, which stays well below this.
MAX_MESSAGE_CHARS = 10_000


class Fuzz:
    """``fuzz.run(entry_point, body, default=n, long=m, **strategies)``: ``body`` on generated inputs."""

    def __init__(self, long: bool) -> None:
        self.long = long

    def run(
        self, entry_point: str, body: Callable[..., Any], *, default: int, long: int, **strategies
    ) -> None:
        def counted(**kwargs):
            CASES[entry_point] += 1
            body(**kwargs)

        budget = settings(
            max_examples=long if self.long else default,
            deadline=None,
            database=None,
            derandomize=not self.long,  # the default run is reproducible; the long one explores
            suppress_health_check=list(HealthCheck),
        )
        budget(given(**strategies)(counted))()


def expect_finite_or_error(call: Callable[[], Any]) -> Any:
    """``call()``'s result, checked finite; None when it raised a :class:`HierSpeechError` with a
    usable message."""
    try:
        result = call()
    except HierSpeechError as error:
        message = str(error)
        assert message.strip(), f"{type(error).__name__} without a message"
        assert len(message) <= MAX_MESSAGE_CHARS, f"{len(message)}-character message: {message[:300]}…"
        return None
    assert_finite(result)
    return result


def assert_finite(value: Any) -> None:
    """No NaN/Inf anywhere in a tensor, array, float or (nested) container of them."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            assert bool(torch.isfinite(value).all()), "non-finite values in the result"
    elif isinstance(value, np.ndarray):
        if np.issubdtype(value.dtype, np.inexact):
            assert bool(np.isfinite(value).all()), "non-finite values in the result"
    elif isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            assert_finite(item)
    elif isinstance(value, dict):
        for item in value.values():
            assert_finite(item)
    elif isinstance(value, torch.nn.Module):
        for name, tensor in value.state_dict().items():
            if tensor.is_floating_point():
                assert bool(torch.isfinite(tensor).all()), f"non-finite weights in {name}"


@st.composite
def damaged(draw, payload: bytes) -> bytes:
    """The bytes of a file as written, truncated, bit-flipped, overwritten or replaced by garbage."""
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "overwrite", "garbage", "prefix"]))
    if damage == "truncate":
        return payload[: draw(st.integers(0, max(len(payload) - 1, 0)))]
    if damage == "flip" and payload:
        data = bytearray(payload)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if damage == "overwrite" and payload:
        start = draw(st.integers(0, len(payload) - 1))
        chunk = draw(st.binary(min_size=1, max_size=64))
        return payload[:start] + chunk + payload[start + len(chunk) :]
    if damage == "garbage":
        return draw(st.binary(max_size=2_048))
    if damage == "prefix":
        return draw(st.binary(min_size=1, max_size=64)) + payload
    return payload
