"""Text front end: text in any language espeak-ng speaks → phonemes → ids of a model's symbol table.

English goes through the released models' ``english_cleaners2`` (ASCII, lowercase, abbreviations), so
its phonemes and ids are those the released text-to-vec model was trained on. Every other language
goes to espeak-ng as written (NFC, whitespace collapsed): see :func:`text_to_phonemes`. Language codes
are ISO 639-1/3 or BCP-47 (``en``, ``fr-FR``, ``pt_BR``, ``kor``, ``zh-Hans``):
:func:`~hierspeech2.text.languages.espeak_voice` maps them to espeak-ng voices.

Phonemes the symbol table has no id for are refused (:class:`~hierspeech2.errors.TextError`, with a
count of each) rather than silently dropped, except for English with the released table, which keeps
the released front end's drop-with-a-warning; punctuation a table lacks is dropped with a warning.
"""

from __future__ import annotations

import functools
import unicodedata
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from hierspeech2.errors import MissingSymbolsError, TextError
from hierspeech2.text.cleaners import collapse_whitespace, normalize_english, normalize_text
from hierspeech2.text.languages import espeak_voice, is_english
from hierspeech2.text.phonemes import phonemize
from hierspeech2.text.symbols import BLANK_ID, PAD, PUNCTUATION, SYMBOL_TO_ID, SYMBOLS
from hierspeech2.text.tables import check_symbols, extend_symbols, read_symbols, write_symbols

__all__ = [
    "BLANK_ID",
    "SYMBOLS",
    "SYMBOL_TO_ID",
    "english_cleaners2",
    "espeak_voice",
    "extend_symbols",
    "intersperse",
    "is_phoneme",
    "missing_symbols",
    "missing_symbols_message",
    "phonemes_to_ids",
    "read_symbols",
    "text_to_phonemes",
    "text_to_tokens",
    "tokens_to_phonemes",
    "write_symbols",
]

OnUnknown = Literal["error", "drop"]

_MAX_QUOTED = 80  # characters of the user's text an error message repeats
_MAX_LISTED = 20  # missing phonemes an error message lists


def english_cleaners2(text: str, language: str = "en-us") -> str:
    """ASCII, lowercase, abbreviations, then espeak-ng phonemes with stress and punctuation."""
    return collapse_whitespace(phonemize(normalize_english(text), language))


def text_to_phonemes(text: str, language: str = "en") -> str:
    """IPA phonemes of ``text`` as espeak-ng reads it, with stress marks and punctuation.

    ``language`` is a code :func:`~hierspeech2.text.languages.espeak_voice` accepts. English voices
    use :func:`english_cleaners2` (the released models' front end, unchanged); every other language
    is phonemised as written (:func:`~hierspeech2.text.cleaners.normalize_text`: NFC, whitespace),
    with espeak-ng's language-switch flags such as ``(en)`` removed.
    """
    voice = espeak_voice(language)
    if is_english(voice):
        return english_cleaners2(text, voice)
    return collapse_whitespace(phonemize(normalize_text(text), voice))


def is_phoneme(symbol: str) -> bool:
    """Whether a character carries sound: a letter, mark, digit (tone) or modifier, not punctuation/space."""
    category = unicodedata.category(symbol)
    return category[0] in "LMN" or category == "Sk"


@functools.lru_cache(maxsize=8)
def _table(symbols: tuple[str, ...] | None) -> tuple[dict[str, int], tuple[str, ...], frozenset[str]]:
    """(symbol → id, id → symbol, symbols that are no phoneme) of a symbol table; None: the released one."""
    if symbols is None:
        return SYMBOL_TO_ID, SYMBOLS, frozenset(PUNCTUATION) | {PAD}
    symbols = check_symbols(symbols)
    # A symbol listed twice maps to its later id, as in the official lookup dict.
    to_id = {symbol: index for index, symbol in enumerate(symbols)}
    silent = frozenset(
        symbol for symbol in symbols if symbol in PUNCTUATION or unicodedata.category(symbol)[0] in "ZC"
    )
    return to_id, tuple(symbols), silent | {symbols[0]}


def _resolve_table(symbols: Sequence[str] | None):
    return _table(None if symbols is None else tuple(symbols))


def missing_symbols(
    phonemes: str, symbols: Sequence[str] | None = None, *, punctuation: bool = False
) -> Counter[str]:
    """How often each phoneme of ``phonemes`` is missing from ``symbols`` (default: the released table).

    Only phonemes count (letters, marks, tone digits, modifiers: :func:`is_phoneme`); with
    ``punctuation=True`` so do the punctuation, symbols and spaces the table lacks, which carry no
    sound and which :func:`phonemes_to_ids` drops with a warning.
    """
    to_id = _resolve_table(symbols)[0]
    return Counter(
        symbol for symbol in phonemes if symbol not in to_id and (punctuation or is_phoneme(symbol))
    )


def _describe(symbol: str) -> str:
    if unicodedata.category(symbol)[0] in "MCZ":  # combining or invisible: show the code point
        shown = f"◌{symbol}" if unicodedata.category(symbol)[0] == "M" else ""
        return f"{shown} U+{ord(symbol):04X}".strip()
    return symbol


def phonemes_to_ids(
    phonemes: str,
    symbols: Sequence[str] | None = None,
    on_unknown: OnUnknown = "error",
) -> list[int]:
    """Map a phoneme string to ids of ``symbols`` (default: the released 178-symbol table).

    Phonemes the table has no id for raise :class:`~hierspeech2.errors.TextError` (counted, most
    frequent first); with ``on_unknown="drop"`` they are dropped with a warning instead. Punctuation
    and spaces the table lacks are always dropped with a warning.
    """
    return _phonemes_to_ids(phonemes, symbols, on_unknown, text=phonemes, stacklevel=3)


def _phonemes_to_ids(
    phonemes: str,
    symbols: Sequence[str] | None,
    on_unknown: OnUnknown,
    text: str,
    stacklevel: int,
    language: str | None = None,
) -> list[int]:
    if on_unknown not in ("error", "drop"):
        raise ValueError(f"on_unknown must be 'error' or 'drop', got {on_unknown!r}")
    to_id = _resolve_table(symbols)[0]
    if on_unknown == "error":
        missing = missing_symbols(phonemes, symbols)
        if missing:
            raise MissingSymbolsError(missing_symbols_message(missing, text, language), missing)
    ids = [to_id[symbol] for symbol in phonemes if symbol in to_id]
    unknown = sorted({symbol for symbol in phonemes if symbol not in to_id})
    if unknown:
        warnings.warn(
            f"dropped symbols the model has no id for: {', '.join(map(repr, unknown))} "
            f"(in {_quote(phonemes)})",
            stacklevel=stacklevel,
        )
    return ids


def missing_symbols_message(missing: Counter[str], text: str, language: str | None) -> str:
    """Say how many phonemes of ``text`` the table lacks, and which (most frequent first)."""
    total = sum(missing.values())
    ranked = sorted(missing.items(), key=lambda item: (-item[1], item[0]))
    listed = ", ".join(f"{_describe(symbol)} ({count})" for symbol, count in ranked[:_MAX_LISTED])
    if len(ranked) > _MAX_LISTED:
        listed += f", … {len(ranked) - _MAX_LISTED} more"
    where = f" (language={language!r}, espeak-ng voice {espeak_voice(language)!r})" if language else ""
    noun, verb = ("phoneme", "is") if total == 1 else ("phonemes", "are")
    return (
        f"{total} {noun} of {_quote(text)}{where} {verb} not in the model's symbol table and would be "
        f"dropped: {listed}. Use a model whose symbol table has them, or pass on_unknown='drop' to "
        "drop them anyway"
    )


def intersperse(ids: list[int], item: int = BLANK_ID) -> list[int]:
    """``[a, b]`` → ``[item, a, item, b, item]``."""
    result = [item] * (2 * len(ids) + 1)
    result[1::2] = ids
    return result


def text_to_tokens(
    text: str,
    language: str = "en-us",
    symbols: Sequence[str] | None = None,
    on_unknown: OnUnknown | None = None,
) -> Tensor:
    """Text → phoneme ids with blanks (id 0) interspersed, LongTensor ``[2 * n_phonemes + 1]``.

    ``language``: a code :func:`~hierspeech2.text.languages.espeak_voice` accepts (``en``, ``fr-FR``,
    ``kor`` …). ``symbols``: the model's symbol table, id 0 the pad/blank (default: the released
    178-symbol table). With ``on_unknown="error"``, phonemes outside it raise
    :class:`~hierspeech2.errors.TextError` saying which and how many; with ``"drop"`` they are dropped
    with a warning. The default (None) is ``"drop"`` for English with the released table, exactly as
    the released models' front end did (``croissant`` → ``kwˈɑːsɑ``), and ``"error"`` otherwise.
    Punctuation outside the table is always dropped with a warning.
    """
    if not isinstance(text, str):
        raise TextError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(language, str):
        raise TextError(f"language must be an espeak-ng language code such as 'en-us', got {language!r}")
    if not text.strip():
        raise TextError("text is empty; give at least one word to synthesise")
    _, id_to_symbol, silent = _resolve_table(symbols)
    if on_unknown is None:
        released = id_to_symbol == SYMBOLS
        on_unknown = "drop" if released and is_english(espeak_voice(language)) else "error"
    phonemes = text_to_phonemes(text, language)
    ids = _phonemes_to_ids(phonemes, symbols, on_unknown, text=text, stacklevel=3, language=language)
    if not any(id_to_symbol[i] not in silent for i in ids):
        raise TextError(
            f"text {_quote(text)} yields no phonemes (espeak-ng output {_quote(phonemes)}); "
            f"give words espeak-ng can read in language={language!r}"
        )
    return torch.tensor(intersperse(ids), dtype=torch.long)


def _quote(text: str) -> str:
    """``repr(text)``, shortened for error messages."""
    if len(text) <= _MAX_QUOTED:
        return repr(text)
    return f"{text[:_MAX_QUOTED]!r}… ({len(text)} characters)"


def tokens_to_phonemes(tokens: Tensor | list[int], symbols: Sequence[str] | None = None) -> str:
    """Inverse of :func:`text_to_tokens` for display: ids → phoneme string, blanks removed."""
    id_to_symbol = _resolve_table(symbols)[1]
    ids = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
    bad = sorted({i for i in ids if not 0 <= i < len(id_to_symbol)})
    if bad:
        raise TextError(f"token ids {bad} are outside the {len(id_to_symbol)}-symbol table")
    return "".join(id_to_symbol[i] for i in ids if i != BLANK_ID)
