"""Symbol tables as files: read, write and extend the table a text-to-vec model was trained with.

A table is a sequence of single characters; a symbol's position is its embedding row, and row 0
is the pad/blank. The released model's 178-symbol table is :data:`~hierspeech2.text.symbols.SYMBOLS`.
A table on disk is a JSON list of strings (``symbols.json``): it keeps spaces, combining marks and
the released table's duplicate apostrophe exactly, which one symbol per line would not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from hierspeech2.errors import TextError
from hierspeech2.text.symbols import SYMBOLS

__all__ = [
    "SYMBOLS_FILE",
    "check_symbols",
    "extend_symbols",
    "read_symbols",
    "resolve_symbols",
    "write_symbols",
]

SYMBOLS_FILE = "symbols.json"


def check_symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    """``symbols`` as a tuple, after checking that it is a non-empty sequence of single characters."""
    if isinstance(symbols, str) or not isinstance(symbols, Sequence) or not symbols:
        raise TextError("a symbol table is a non-empty list of single characters (row 0: the pad/blank)")
    bad = [symbol for symbol in symbols if not isinstance(symbol, str) or len(symbol) != 1]
    if bad:
        raise TextError(f"a symbol table holds single characters; found {bad[:5]!r}")
    return tuple(symbols)


def read_symbols(path: str | os.PathLike) -> tuple[str, ...]:
    """The table in ``path``: a ``symbols.json`` file, or a folder holding one (a feature cache)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / SYMBOLS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise TextError(f"no symbol table at {path}") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TextError(f"cannot read the symbol table {path}: {error}") from error
    if not isinstance(data, list):
        raise TextError(f"{path} is not a symbol table (a JSON list of single characters)")
    return check_symbols(data)


def write_symbols(path: str | os.PathLike, symbols: Sequence[str]) -> Path:
    """Write ``symbols`` as a JSON list to ``path`` (a folder gets ``symbols.json``); returns the file."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / SYMBOLS_FILE
    path.write_text(json.dumps(list(check_symbols(symbols)), ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def resolve_symbols(symbols: Sequence[str] | str | os.PathLike | None) -> tuple[str, ...] | None:
    """A table given as a sequence, a path to a table file/folder, or None (the released table)."""
    if symbols is None:
        return None
    if isinstance(symbols, (str, os.PathLike)):
        return read_symbols(symbols)
    return check_symbols(list(symbols))


def extend_symbols(base: Sequence[str] | None, new: Iterable[str]) -> tuple[str, ...]:
    """``base`` (None: the released table) followed by the symbols of ``new`` it lacks, in ``new``'s order.

    Rows of ``base`` keep their ids, so a model trained with ``base`` can grow into the new table.
    """
    table = SYMBOLS if base is None else check_symbols(base)
    known = set(table)
    added: list[str] = []
    for symbol in new:
        if symbol not in known:
            known.add(symbol)
            added.append(symbol)
    return check_symbols([*table, *added])
