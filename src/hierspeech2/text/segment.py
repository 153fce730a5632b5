"""Long text → pieces the text-to-vec model handles well, split at sentence, clause, then word boundaries.

The released TTV was trained on single LibriTTS utterances (the official scripts take up to
about 200 characters). :func:`split_text` cuts a chapter or a book into such pieces and says
how long a pause follows each one. Pieces keep the input's characters (runs of whitespace become
one space), so a one-line text that fits in one piece reaches the front end unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..options import MAX_PIECE_CHARS
from .cleaners import ABBREVIATIONS

__all__ = ["CLAUSE_PAUSE", "PARAGRAPH_PAUSE", "SENTENCE_PAUSE", "Piece", "split_text"]

MIN_PIECE_CHARS = 12  # shorter sentences ("Yes.") are joined to the next one: alone their prosody suffers
SENTENCE_PAUSE = 0.25  # seconds of silence after a sentence
CLAUSE_PAUSE = 0.12  # after a piece cut at a comma, semicolon, colon or dash inside a long sentence
WORD_PAUSE = 0.05  # after a piece cut between two words (a clause longer than MAX_PIECE_CHARS)
PARAGRAPH_PAUSE = 0.6  # after the last sentence of a paragraph

# Words ending in "." that do not end a sentence: the cleaners' abbreviations plus common ones.
_NON_FINAL = frozenset(short for short, _ in ABBREVIATIONS) | {
    "vs",
    "etc",
    "e.g",
    "i.e",
    "no",
    "nos",
    "fig",
    "figs",
    "vol",
    "approx",
    "dept",
    "est",
    "inc",
    "mt",
    "prof",
    "sr",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
}
_SENTENCE_END = re.compile(r"""[.!?…。！？]+[\"'”’»)\]]*(?=\s|$)""")
_CLAUSE_END = re.compile(r"""(?:[,;:，；：]|\s[—–-]{1,2})[\"'”’»)\]]*(?=\s)|[—–](?=\S)""")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_HAS_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class Piece:
    """A piece of text to synthesise in one call and the seconds of silence that follow it."""

    text: str
    pause: float


def split_text(text: str, max_chars: int = MAX_PIECE_CHARS, min_chars: int = MIN_PIECE_CHARS) -> list[Piece]:
    """Split ``text`` into pieces of at most ``max_chars`` characters (words longer than that stay whole).

    Paragraphs (blank lines) are kept apart; within one, sentences become pieces, a sentence shorter
    than ``min_chars`` joins the next, a longer one than ``max_chars`` is cut at clause marks
    (``, ; : —``), then between words. Fragments without a letter or digit join a neighbour.
    The last piece has no pause.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    pieces: list[Piece] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = " ".join(paragraph.split())
        if not _HAS_WORD.search(paragraph):
            continue
        sentences = _join_short(_merge_wordless(_sentences(paragraph)), min_chars, max_chars)
        for sentence in sentences:
            pieces.extend(_split_long(sentence, max_chars))
        if pieces:
            pieces[-1] = Piece(pieces[-1].text, PARAGRAPH_PAUSE)
    if pieces:
        pieces[-1] = Piece(pieces[-1].text, 0.0)
    return pieces


def _sentences(paragraph: str) -> list[str]:
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        following = paragraph[match.end() :].lstrip()[:1]
        if match.group().startswith(".") and (
            _is_abbreviation(paragraph[start : match.start()]) or following.islower()
        ):
            continue  # "Mr. Smith", "J. R. R. Tolkien", "at 10 p.m. and": not a sentence end
        sentences.append(paragraph[start : match.end()].strip())
        start = match.end()
    sentences.append(paragraph[start:].strip())
    return [s for s in sentences if s]


def _is_abbreviation(before: str) -> bool:
    words = before.split()
    if not words:
        return False
    word = words[-1].lstrip("\"'“‘«([").lower()
    # "Mr.", "e.g.", and initials such as "J." in "J. R. R. Tolkien"
    return word in _NON_FINAL or (len(word) == 1 and word.isalpha())


def _merge_wordless(parts: list[str]) -> list[str]:
    """Attach fragments with no letter or digit ("…", "—") to the previous part (or the next one)."""
    merged: list[str] = []
    carry = ""
    for part in parts:
        if not _HAS_WORD.search(part):
            if merged:
                merged[-1] = f"{merged[-1]} {part}"
            else:
                carry = f"{carry} {part}".strip()
            continue
        merged.append(f"{carry} {part}".strip() if carry else part)
        carry = ""
    return merged


def _join_short(sentences: list[str], min_chars: int, max_chars: int) -> list[str]:
    joined: list[str] = []
    for sentence in sentences:
        if joined and len(joined[-1]) < min_chars and len(joined[-1]) + 1 + len(sentence) <= max_chars:
            joined[-1] = f"{joined[-1]} {sentence}"
        else:
            joined.append(sentence)
    if len(joined) > 1 and len(joined[-1]) < min_chars and len(joined[-2]) + 1 + len(joined[-1]) <= max_chars:
        joined[-2:] = [f"{joined[-2]} {joined[-1]}"]
    return joined


def _split_long(sentence: str, max_chars: int) -> list[Piece]:
    if len(sentence) <= max_chars:
        return [Piece(sentence, SENTENCE_PAUSE)]
    clauses, start = [], 0
    for match in _CLAUSE_END.finditer(sentence):
        clauses.append(sentence[start : match.end()].strip())
        start = match.end()
    clauses.append(sentence[start:].strip())
    clauses = _merge_wordless([c for c in clauses if c])
    pieces: list[Piece] = []
    for clause in _pack(clauses, max_chars):
        if len(clause) <= max_chars:
            pieces.append(Piece(clause, CLAUSE_PAUSE))
        else:
            words = _merge_wordless(clause.split())
            pieces.extend(Piece(part, WORD_PAUSE) for part in _pack(words, max_chars))
            pieces[-1] = Piece(pieces[-1].text, CLAUSE_PAUSE)
    pieces[-1] = Piece(pieces[-1].text, SENTENCE_PAUSE)
    return pieces


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Greedily join consecutive parts with spaces while the result fits in ``max_chars``."""
    packed: list[str] = []
    for part in parts:
        if packed and len(packed[-1]) + 1 + len(part) <= max_chars:
            packed[-1] = f"{packed[-1]} {part}"
        else:
            packed.append(part)
    return packed
