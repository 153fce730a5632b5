"""Which phonemes of a corpus a symbol table cannot write: counted once, before preprocessing.

``hierspeech2 preprocess --model ttv`` phonemises every transcript first (espeak-ng, a few ms
each) and reports the symbols outside the model's table once, with counts and example words,
instead of one warning per utterance. With ``--extend-symbols`` it writes the extended table the
corpus needs (:func:`hierspeech2.text.extend_symbols`: the base rows first, so that a model
trained with the base table can grow into it).
"""

from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from hierspeech2.data.corpora import Utterance
from hierspeech2.errors import TextError
from hierspeech2.text import missing_symbols, text_to_phonemes
from hierspeech2.text.symbols import SYMBOLS
from hierspeech2.text.tables import extend_symbols

__all__ = ["SymbolSurvey", "survey_symbols"]

logger = logging.getLogger(__name__)

_EXAMPLES = 3  # example words kept per missing symbol
_LISTED = 30  # missing symbols a report lists


@dataclass
class SymbolSurvey:
    """Phonemes of a corpus outside a symbol table.

    ``missing`` counts each missing phoneme over the corpus, ``utterances`` how many utterances
    hold at least one, and ``examples`` keeps a few words for each (``word → phonemes``).
    """

    table: tuple[str, ...]
    surveyed: int = 0
    missing: Counter[str] = field(default_factory=Counter)
    utterances: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def extended_table(self) -> tuple[str, ...]:
        """The table followed by the missing symbols, most frequent first (ties in code-point order)."""
        ranked = sorted(self.missing, key=lambda symbol: (-self.missing[symbol], symbol))
        return extend_symbols(self.table, ranked)

    def report(self) -> str:
        """One message: how many phonemes are missing, in how many utterances, each with examples."""
        total = sum(self.missing.values())
        ranked = sorted(self.missing.items(), key=lambda item: (-item[1], item[0]))
        header = (
            f"{total} phonemes in {self.utterances} of {self.surveyed} transcripts are not in the "
            f"{len(self.table)}-symbol table ({len(ranked)} distinct symbols):"
        )
        lines = [header]
        for symbol, count in ranked[:_LISTED]:
            shown = f"◌{symbol}" if _is_combining(symbol) else symbol
            lines.append(
                f"  {shown} (U+{ord(symbol):04X}) × {count}, e.g. {', '.join(self.examples.get(symbol, []))}"
            )
        if len(ranked) > _LISTED:
            lines.append(f"  … {len(ranked) - _LISTED} more")
        return "\n".join(lines)

    def _add(self, text: str, phonemes: str, missing: Counter[str]) -> None:
        self.missing.update(missing)
        self.utterances += 1
        for word, spoken in _word_pairs(text, phonemes):
            for symbol in set(spoken) & missing.keys():
                kept = self.examples.setdefault(symbol, [])
                example = f"{word} → {spoken}" if word else spoken
                if len(kept) < _EXAMPLES and example not in kept:
                    kept.append(example)


def survey_symbols(
    utterances: Sequence[Utterance], table: Sequence[str] | None = None, progress: bool = True
) -> SymbolSurvey:
    """Phonemise each transcript and count the phonemes outside ``table`` (default: the released one).

    Utterances without text, or in a language espeak-ng does not speak, are left out here;
    preprocessing skips them with the reason.
    """
    survey = SymbolSurvey(SYMBOLS if table is None else tuple(table))
    transcribed = [utterance for utterance in utterances if utterance.text]
    bar = tqdm(transcribed, unit="utt", desc="phonemes", disable=not progress, dynamic_ncols=True)
    for utterance in bar:
        try:
            phonemes = text_to_phonemes(utterance.text, utterance.language)
        except (TextError, RuntimeError):
            continue
        survey.surveyed += 1
        missing = missing_symbols(phonemes, survey.table)
        if missing:
            survey._add(utterance.text, phonemes, missing)
    return survey


def _word_pairs(text: str, phonemes: str) -> list[tuple[str, str]]:
    """(word, its phonemes) when text and phonemes have as many words; else (``""``, phoneme word)."""
    words, spoken = text.split(), phonemes.split()
    if len(words) == len(spoken):
        return list(zip(words, spoken, strict=True))
    return [("", word) for word in spoken]


def _is_combining(symbol: str) -> bool:
    return unicodedata.category(symbol).startswith("M")
