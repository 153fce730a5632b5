"""Word and character error rates, with the text normalisation the field scores them under.

The counting is jiwer's (edit distance over words or characters); this module decides what the
strings are before counting. ``"basic"`` (the default) is what seed-tts-eval and F5-TTS do:
Unicode NFKC, case folded, punctuation removed (an apostrophe inside a word is kept, as in
"don't"), whitespace collapsed. ``"whisper"`` is Whisper's English normaliser (numbers spelled as
digits, contractions and abbreviations standardised), the one Whisper's own WERs are reported under;
``"none"`` scores the strings as given.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import cache
from typing import Literal

__all__ = ["NORMALIZERS", "Normalization", "character_error_rate", "normalize_text", "word_error_rate"]

Normalization = Literal["basic", "whisper", "none"]

_INNER_APOSTROPHE = re.compile(r"(?<=\w)['’](?=\w)")


def _basic(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _INNER_APOSTROPHE.sub("\x00", text)
    # Unicode categories P* (punctuation) and S* (symbols) become spaces, so "well—no" is two words.
    text = "".join(" " if unicodedata.category(char)[0] in "PS" else char for char in text)
    return " ".join(text.replace("\x00", "'").split())


@cache
def _whisper_normalizer() -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    # Whisper's British→American spelling table ships with its checkpoints, not with transformers;
    # without a checkpoint at hand it is left empty (spelling variants then count as errors).
    return EnglishTextNormalizer({})


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "basic": _basic,
    "whisper": lambda text: " ".join(_whisper_normalizer()(text).split()),
    "none": lambda text: text,
}
"""Name → function from text to the string that is scored."""


def normalize_text(text: str, normalization: Normalization = "basic") -> str:
    """``text`` as it is scored under ``normalization`` (see the module docstring)."""
    try:
        normalizer = NORMALIZERS[normalization]
    except KeyError:
        raise ValueError(
            f"normalization must be one of {sorted(NORMALIZERS)}, got {normalization!r}"
        ) from None
    return normalizer(text)


def word_error_rate(
    hypotheses: Sequence[str] | str,
    references: Sequence[str] | str,
    normalization: Normalization = "basic",
) -> float:
    """Corpus-level WER: word edits (substitutions + deletions + insertions) over reference words.

    Pairs are summed before dividing, so a long utterance weighs more than a short one (per
    utterance rates come from calling this with one pair). A hypothesis that normalises to nothing
    counts every reference word as deleted.
    """
    return _error_rate(hypotheses, references, normalization, characters=False)


def character_error_rate(
    hypotheses: Sequence[str] | str,
    references: Sequence[str] | str,
    normalization: Normalization = "basic",
) -> float:
    """Corpus-level CER: character edits over reference characters (spaces count, as in jiwer).

    The rate for scripts written without spaces (Chinese, Japanese), where WER is meaningless.
    """
    return _error_rate(hypotheses, references, normalization, characters=True)


def _error_rate(
    hypotheses: Sequence[str] | str,
    references: Sequence[str] | str,
    normalization: Normalization,
    characters: bool,
) -> float:
    import jiwer

    hypotheses = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    references = [references] if isinstance(references, str) else list(references)
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not references:
        raise ValueError("no references to score against")
    hypotheses = [normalize_text(text, normalization) for text in hypotheses]
    references = [normalize_text(text, normalization) for text in references]
    empty = [index for index, text in enumerate(references) if not text]
    if empty:
        raise ValueError(f"reference {empty[0]} is empty after normalisation: an error rate needs words")
    if characters:
        return float(jiwer.cer(references, hypotheses))
    return float(jiwer.wer(references, hypotheses))
