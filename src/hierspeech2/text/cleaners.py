"""Text normalisation before phonemisation (the ``english_cleaners2`` front end)."""

from __future__ import annotations

import re

from unidecode import unidecode

__all__ = ["collapse_whitespace", "expand_abbreviations", "normalize_english"]

_WHITESPACE = re.compile(r"\s+")

# Spoken forms of abbreviations that end in a period; matched case-insensitively on a word
# boundary, applied in this order (the released model's training text went through the same list).
ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("mrs", "misess"),
    ("mr", "mister"),
    ("dr", "doctor"),
    ("st", "saint"),
    ("co", "company"),
    ("jr", "junior"),
    ("maj", "major"),
    ("gen", "general"),
    ("drs", "doctors"),
    ("rev", "reverend"),
    ("lt", "lieutenant"),
    ("hon", "honorable"),
    ("sgt", "sergeant"),
    ("capt", "captain"),
    ("esq", "esquire"),
    ("ltd", "limited"),
    ("col", "colonel"),
    ("ft", "fort"),
)
_ABBREVIATION_PATTERNS = tuple(
    (re.compile(rf"\b{short}\.", re.IGNORECASE), spoken) for short, spoken in ABBREVIATIONS
)


def expand_abbreviations(text: str) -> str:
    """Replace ``"dr."``, ``"Mrs."``, ... by their spoken form."""
    for pattern, spoken in _ABBREVIATION_PATTERNS:
        text = pattern.sub(spoken, text)
    return text


def collapse_whitespace(text: str) -> str:
    """Turn every run of whitespace into a single space."""
    return _WHITESPACE.sub(" ", text)


def normalize_english(text: str) -> str:
    """ASCII transliteration, lowercase and abbreviation expansion (the text half of ``english_cleaners2``)."""
    return expand_abbreviations(unidecode(text).lower())
