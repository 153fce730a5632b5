"""Building a model whose every weight is loaded next, without drawing random initial weights first.

``nn.Conv1d``, ``nn.Linear`` and our blocks fill their weights from ``torch.nn.init`` when they are
built; a checkpoint load then overwrites every one of them. For the 97M-parameter backbone the draws
are most of the build (about 1.2 s of 2.3 s on a 2-core CPU). Inside :func:`without_random_init` the
random initialisers of ``torch.nn.init`` leave their tensor as allocated, in this thread only:
other threads (a training run building a fresh model beside a server loading one) still draw. The
deterministic ones (``ones_``, ``zeros_``, ``constant_``) and buffers computed by code (filters,
windows, mel filterbanks) are untouched, and the strict load that follows checks that every
parameter and persistent buffer came from the checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from torch import nn

from ._util import context_value

RANDOM_INITIALISERS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "orthogonal_",
)
"""The ``torch.nn.init`` functions that :func:`without_random_init` skips."""

_SKIPPING: ContextVar[bool] = ContextVar("hierspeech2_skip_random_init", default=False)
_lock = threading.Lock()
_users = 0
_originals: dict[str, Callable[..., Any]] = {}


def _switchable(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def initialise(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return tensor if _SKIPPING.get() else original(tensor, *args, **kwargs)

    return initialise


@contextlib.contextmanager
def without_random_init() -> Iterator[None]:
    """Modules built inside this block (in this thread) keep their weights as allocated, undrawn.

    Only for a model whose every parameter is loaded right after (as ``from_official`` and
    ``from_pretrained`` do, strictly); its weights are garbage until then. ``torch.nn.init`` is
    restored when the last such block in the process ends.
    """
    global _users
    with _lock:
        if _users == 0:
            for name in RANDOM_INITIALISERS:
                _originals[name] = getattr(nn.init, name)
                setattr(nn.init, name, _switchable(_originals[name]))
        _users += 1
    try:
        with context_value(_SKIPPING, True):
            yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for name, original in _originals.items():
                    setattr(nn.init, name, original)
                _originals.clear()
