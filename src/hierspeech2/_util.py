"""Small helpers shared across hierspeech2 that need neither torch nor the Hub."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
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
