"""Small helpers shared across hierspeech2 that need neither torch nor the Hub."""

from __future__ import annotations

from typing import Any


def as_tuples(value: Any) -> Any:
    """JSON/YAML lists → tuples, recursively (in mappings too): our constructors take tuples, never lists."""
    if isinstance(value, list):
        return tuple(as_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: as_tuples(item) for key, item in value.items()}
    return value
