"""Text normalisation before phonemisation.

English keeps the released models' ``english_cleaners2`` front end (:func:`normalize_english`: ASCII
transliteration, lowercase, abbreviations). Every other language goes to espeak-ng as written
(:func:`normalize_text`: Unicode NFC and whitespace only), so ñ, ö, é and non-Latin scripts reach it.
"""

from __future__ import annotations

import re
import unicodedata

from unidecode import unidecode

__all__ = ["collapse_whitespace", "expand_abbreviations", "normalize_english", "normalize_text"]

_WHITESPACE = re.compile(r"\s+")
# C0/C1 control characters that are not whitespace (NUL would cut the text short in espeak-ng's C API).
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")

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
    """ASCII transliteration, lowercase, abbreviation expansion: the text half of ``english_cleaners2``."""
    return expand_abbreviations(unidecode(text).lower())


def normalize_text(text: str) -> str:
    """Text as written, for espeak-ng: Unicode NFC, control characters removed, whitespace collapsed.

    No transliteration, case change or abbreviation expansion: espeak-ng's voice for the language
    reads letters, digits and abbreviations by its own rules.
    """
    text = unicodedata.normalize("NFC", text)
    return collapse_whitespace(_CONTROLS.sub("", text)).strip()
