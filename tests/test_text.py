from __future__ import annotations

import warnings

import pytest
import torch

from hierspeech2.errors import HierSpeechError, TextError
from hierspeech2.text import (
    BLANK_ID,
    SYMBOL_TO_ID,
    SYMBOLS,
    english_cleaners2,
    intersperse,
    phonemes_to_ids,
    text_to_tokens,
    tokens_to_phonemes,
)
from hierspeech2.text.cleaners import expand_abbreviations, normalize_english
from hierspeech2.text.phonemes import _backend


@pytest.mark.parametrize("case", ["a", "b"])
def test_tokens_match_official(parity_cases, parity_settings, case):
    settings = parity_settings[f"{case}.ttv"]
    assert settings["cleaners"] == "english_cleaners2"
    expected = parity_cases[f"{case}.ttv.tokens"][0]  # [L]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the official text maps without dropping anything
        tokens = text_to_tokens(settings["text"])
    assert tokens.dtype == torch.long
    assert torch.equal(tokens, expected)


def test_symbol_table():
    assert len(SYMBOLS) == 178
    assert SYMBOLS[BLANK_ID] == "_" and BLANK_ID == 0
    assert SYMBOLS[16] == " " and SYMBOLS[156] == "ˈ" and SYMBOLS[158] == "ː"
    assert SYMBOLS[177] == "ᵻ" and SYMBOLS[175] == "\u0329"
    # The apostrophe is listed twice; the later id is the one used.
    assert SYMBOL_TO_ID["'"] == 176
    assert all(SYMBOL_TO_ID[s] == i for i, s in enumerate(SYMBOLS) if s != "'")


def test_english_cleaners2_steps():
    assert normalize_english("Mrs. Dr. Smith — Café") == "misess doctor smith -- cafe"
    assert expand_abbreviations("st. louis, mt. x") == "saint louis, mt. x"
    assert english_cleaners2("Hello,   world!") == "həlˈoʊ, wˈɜːld!"
    assert english_cleaners2("Dr. Who") == english_cleaners2("doctor who")


def test_tokens_have_blanks_and_invert():
    tokens = text_to_tokens("Hello world.")
    assert tokens.ndim == 1 and len(tokens) % 2 == 1
    assert (tokens[0::2] == BLANK_ID).all() and (tokens[1::2] != BLANK_ID).all()
    assert tokens_to_phonemes(tokens) == "həlˈoʊ wˈɜːld."
    assert intersperse([5, 6]) == [0, 5, 0, 6, 0]


def test_unknown_symbols_are_dropped_with_warning():
    with pytest.warns(UserWarning, match=r"dropped symbols.*'\('.*'\)'"):
        tokens = text_to_tokens("hi (there)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = text_to_tokens("hi there")
    assert torch.equal(tokens, plain)
    with pytest.warns(UserWarning, match="'#'"):
        assert phonemes_to_ids("a#b") == [SYMBOL_TO_ID["a"], SYMBOL_TO_ID["b"]]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text(text):
    with pytest.raises(TextError, match="empty"):
        text_to_tokens(text)


@pytest.mark.parametrize("text", ["!!!", "...", "?"])
def test_text_without_phonemes(text):
    with pytest.raises(TextError, match="no phonemes"):
        text_to_tokens(text)


def test_non_string_and_bad_language():
    with pytest.raises(TextError, match="str"):
        text_to_tokens(b"hello")
    with pytest.raises(TextError, match="not supported by espeak-ng"):
        text_to_tokens("hello", language="xx-notalanguage")
    assert issubclass(TextError, HierSpeechError) and issubclass(TextError, ValueError)
    with pytest.raises(TextError, match="outside"):
        tokens_to_phonemes([0, 500])


def test_backend_is_built_once_per_language():
    text_to_tokens("one")
    text_to_tokens("two")
    assert _backend("en-us") is _backend("en-us")
    info = _backend.cache_info()
    assert info.misses >= 1 and info.currsize >= 1
    before = info.misses
    text_to_tokens("three")
    assert _backend.cache_info().misses == before
