"""Fuzzing ``text_to_tokens``: any Unicode gives ids inside the symbol table or a ``TextError``."""

from __future__ import annotations

import warnings

import pytest
import torch
from fuzz_contract import expect_finite_or_error
from hypothesis import strategies as st

from hierspeech2.errors import TextError
from hierspeech2.text import BLANK_ID, SYMBOLS, text_to_tokens

pytest.importorskip("phonemizer")

_ALPHABETS = st.sampled_from(
    [
        "abcdefghijklmnopqrstuvwxyz ABCXYZ",
        "0123456789 ,.-+%$€£/:",
        ";:,.!?¡¿—…\"«»“” '()[]{}-_*&^#@~`|\\<>",
        "\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x7f\u200b\u200e\u200f\u202a\u202e\u2066\ufeff\ufffd",
        "مرحبا بالعالم שלום עולם",  # right-to-left
        "😀🎉👍🏽🇰🇷\u200d❤️",  # emoji, skin tone, flags, ZWJ
        "日本語中文한국어ไทยहिन्दी",
        "ɑɐɒæɓʙβɔɕçɗɖðʤəˈˌː\u0329ᵻ",  # the IPA the symbol table holds
        "àéîõüçñ\u0300\u0301\u0308",  # combining marks
    ]
)


@st.composite
def texts(draw) -> str:
    """Mixtures of scripts, control characters, digits, punctuation and arbitrary code points."""
    parts = draw(
        st.lists(
            st.one_of(
                st.text(max_size=40),
                _ALPHABETS.flatmap(lambda alphabet: st.text(alphabet=alphabet, max_size=40)),
                st.sampled_from(["Dr.", "Mrs.", "St.", "hello world", "1,234.56", "(en)", "..."]),
            ),
            max_size=6,
        )
    )
    return "".join(parts)


def _check(text: str, language: str = "en-us") -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped symbols warn; that is the documented behaviour
        tokens = expect_finite_or_error(lambda: text_to_tokens(text, language))
    if tokens is None:
        return
    assert tokens.dtype == torch.long and tokens.ndim == 1
    assert tokens.numel() % 2 == 1 and tokens.numel() >= 3
    assert bool((tokens[::2] == BLANK_ID).all())
    assert 0 <= int(tokens.min()) and int(tokens.max()) < len(SYMBOLS)


def test_text_to_tokens_on_any_unicode(fuzz) -> None:
    fuzz.run("text_to_tokens", _check, default=150, long=4_000, text=texts())


def test_text_to_tokens_on_other_languages_and_codes(fuzz) -> None:
    languages = st.one_of(
        st.sampled_from(["en-us", "en-gb", "fr-fr", "de", "es", "ja", "ko", "xx", "", "EN-US", "../en"]),
        st.text(max_size=8),
        st.none(),
        st.integers(),
    )
    fuzz.run("text_to_tokens(language)", _check, default=40, long=500, text=texts(), language=languages)


def test_text_to_tokens_on_100k_characters() -> None:
    tokens = text_to_tokens("the quick brown fox. " * 5_000)  # 105 000 characters
    assert tokens.numel() > 100_000 and int(tokens.max()) < len(SYMBOLS)


@pytest.mark.parametrize("text", ["😀" * 50_000, "." * 100_000, "\u202e" * 100_000])
def test_error_message_of_a_huge_unreadable_text_is_short(text) -> None:
    # Caught by fuzzing: the TextError repeated the whole input (400 kB of emoji) in its message.
    with pytest.raises(TextError) as caught:
        text_to_tokens(text)
    assert len(str(caught.value)) < 1_000
    assert f"({len(text)} characters)" in str(caught.value)


@pytest.mark.parametrize("language", [None, 3, b"en-us"])
def test_non_string_language_is_a_text_error(language) -> None:
    # Caught by fuzzing: language=None died with AttributeError ('NoneType' has no 'startswith').
    with pytest.raises(TextError, match="language must be an espeak-ng language code"):
        text_to_tokens("hello", language)
