"""Text front end: English text → phoneme ids with blanks, as the released text-to-vec model expects."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from hierspeech2.errors import TextError
from hierspeech2.text.cleaners import collapse_whitespace, normalize_english
from hierspeech2.text.phonemes import phonemize
from hierspeech2.text.symbols import BLANK_ID, ID_TO_SYMBOL, PAD, PUNCTUATION, SYMBOL_TO_ID, SYMBOLS

__all__ = [
    "BLANK_ID",
    "SYMBOLS",
    "SYMBOL_TO_ID",
    "english_cleaners2",
    "intersperse",
    "phonemes_to_ids",
    "text_to_phonemes",
    "text_to_tokens",
    "tokens_to_phonemes",
]

_NON_PHONEMES = frozenset(PUNCTUATION) | {PAD}
_MAX_QUOTED = 80  # characters of the user's text an error message repeats


def english_cleaners2(text: str, language: str = "en-us") -> str:
    """ASCII, lowercase, abbreviations, then espeak-ng phonemes with stress and punctuation."""
    return collapse_whitespace(phonemize(normalize_english(text), language))


text_to_phonemes = english_cleaners2


def phonemes_to_ids(phonemes: str) -> list[int]:
    """Map a phoneme string to symbol ids; symbols outside the table are dropped with a warning."""
    return _phonemes_to_ids(phonemes, stacklevel=3)


def _phonemes_to_ids(phonemes: str, stacklevel: int) -> list[int]:
    ids = [SYMBOL_TO_ID[symbol] for symbol in phonemes if symbol in SYMBOL_TO_ID]
    unknown = sorted({symbol for symbol in phonemes if symbol not in SYMBOL_TO_ID})
    if unknown:
        warnings.warn(
            f"dropped symbols the model has no id for: {', '.join(map(repr, unknown))} (in {_quote(phonemes)})",
            stacklevel=stacklevel,
        )
    return ids


def intersperse(ids: list[int], item: int = BLANK_ID) -> list[int]:
    """``[a, b]`` → ``[item, a, item, b, item]``."""
    result = [item] * (2 * len(ids) + 1)
    result[1::2] = ids
    return result


def text_to_tokens(text: str, language: str = "en-us") -> Tensor:
    """Text → phoneme ids with blanks interspersed, LongTensor ``[2 * n_phonemes + 1]``."""
    if not isinstance(text, str):
        raise TextError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(language, str):
        raise TextError(f"language must be an espeak-ng language code such as 'en-us', got {language!r}")
    if not text.strip():
        raise TextError("text is empty; give at least one word to synthesise")
    phonemes = english_cleaners2(text, language)
    ids = _phonemes_to_ids(phonemes, stacklevel=3)
    if not any(ID_TO_SYMBOL[i] not in _NON_PHONEMES for i in ids):
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


def tokens_to_phonemes(tokens: Tensor | list[int]) -> str:
    """Inverse of :func:`text_to_tokens` for display: ids → phoneme string, blanks removed."""
    ids = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
    bad = sorted({i for i in ids if i not in ID_TO_SYMBOL})
    if bad:
        raise TextError(f"token ids {bad} are outside the {len(SYMBOLS)}-symbol table")
    return "".join(ID_TO_SYMBOL[i] for i in ids if i != BLANK_ID)
