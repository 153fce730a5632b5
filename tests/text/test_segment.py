"""Long-form text splitting: sentences, clauses, words, pauses, and text the front end must survive."""

from __future__ import annotations

import warnings

import pytest

from hierspeech2.text import text_to_tokens
from hierspeech2.text.segment import CLAUSE_PAUSE, PARAGRAPH_PAUSE, SENTENCE_PAUSE, split_text

CHAPTER = (
    "Mr. Smith went to Washington on Jan. 5th, 1901. He paid $3.50 for 12 apples — “a bargain”, "
    "he said… Dr. J. R. Jones (the vet) disagreed; prices, after all, had risen 50% since 1899!\n\n"
    "« Bonjour », dit-elle. Yes. No? It was 10:30 p.m. at St. Paul’s, e.g. late.\n"
    "This line was hard-wrapped\nby a text editor."
)


def test_sentences_abbreviations_and_paragraphs() -> None:
    pieces = split_text(CHAPTER)
    texts = [p.text for p in pieces]
    assert texts[0] == "Mr. Smith went to Washington on Jan. 5th, 1901."  # "Mr." and "Jan." do not end it
    assert texts[1].startswith("He paid $3.50 for 12 apples") and texts[1].endswith("he said…")
    assert texts[2].startswith("Dr. J. R. Jones (the vet)") and texts[2].endswith("since 1899!")
    assert pieces[2].pause == PARAGRAPH_PAUSE  # the paragraph ends there
    assert "Yes. No? It was 10:30 p.m. at St. Paul’s, e.g. late." in texts  # short ones join the next
    assert texts[-1] == "This line was hard-wrapped by a text editor."
    assert pieces[-1].pause == 0.0 and pieces[0].pause == SENTENCE_PAUSE
    assert "".join(texts).replace(" ", "") == CHAPTER.replace(" ", "").replace("\n", "")  # nothing lost


def test_long_sentences_are_cut_at_clauses_then_words() -> None:
    clause = "and the river ran on past the mill, "
    sentence = "It began quietly, " + clause * 12 + "until the night fell."
    pieces = split_text(sentence, max_chars=120)
    assert all(len(p.text) <= 120 for p in pieces)
    assert all(p.text.endswith(",") for p in pieces[:-1]) and pieces[-1].text.endswith("fell.")
    assert {p.pause for p in pieces[:-1]} == {CLAUSE_PAUSE}
    words = split_text("word " * 100 + "end. …", max_chars=50)
    assert all(len(p.text) <= 50 for p in words) and words[-1].text.endswith("end. …")
    assert split_text("supercalifragilistic" * 5, max_chars=10)[0].text == "supercalifragilistic" * 5


def test_wordless_text_yields_no_piece_and_short_text_one() -> None:
    assert split_text("") == [] and split_text(" … — \n\n ... ") == []
    assert [p.text for p in split_text("— Hi. (!)")] == ["— Hi. (!)"]
    assert [(p.text, p.pause) for p in split_text("Hello there, this is a test.")] == [
        ("Hello there, this is a test.", 0.0)
    ]
    with pytest.raises(ValueError, match="max_chars"):
        split_text("Hi.", max_chars=0)


def test_every_piece_of_awkward_text_reaches_phonemes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # symbols without an id ("(", "%") are dropped with a warning
        for piece in split_text(CHAPTER + " ¿Qué? 日本語 “quotes” ‘single’ – dash — em 1/2 #hashtag @home"):
            assert text_to_tokens(piece.text).numel() > 1
