"""Small helpers shared across hierspeech2 that need neither torch nor the Hub."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")


def as_tuples(value: Any) -> Any:
    """JSON/YAML lists → tuples, recursively (in mappings too): our constructors take tuples, never lists."""
    if isinstance(value, list):
        return tuple(as_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: as_tuples(item) for key, item in value.items()}
    return value


@contextlib.contextmanager
def context_value(variable: ContextVar[_T], value: _T) -> Iterator[None]:
    """``variable`` set to ``value`` inside the ``with`` block (this thread or task only), then restored."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def cache_folder(name: str) -> Path:
    """``$HIERSPEECH2_CACHE/name`` (default ``$XDG_CACHE_HOME/hierspeech2/name``, i.e.
    ``~/.cache/hierspeech2/name``): where exports and built kernels are kept."""
    root = os.environ.get("HIERSPEECH2_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hierspeech2"
    )
    return Path(root) / name
