"""Text as written for any language espeak-ng speaks; language codes; refusing phonemes a model lacks."""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
import warnings

import pytest
import torch

from hierspeech2.errors import TextError
from hierspeech2.text import (
    SYMBOLS,
    english_cleaners2,
    is_phoneme,
    missing_symbols,
    phonemes_to_ids,
    text_to_phonemes,
    text_to_tokens,
    tokens_to_phonemes,
)
from hierspeech2.text.cleaners import normalize_text
from hierspeech2.text.languages import espeak_voice, language_codes

pytest.importorskip("phonemizer")

# One sentence per language, across scripts. Each must phonemise as espeak-ng's own `--ipa` reads it.
SENTENCES = {
    "en": "The quick brown fox jumps over the lazy dog.",
    "es": "El niño español come piña.",
    "es-419": "Me gusta el rock and roll y el jazz.",
    "de": "Die Mädchen sind schön und grün.",
    "fr": "Le garçon a mangé une pêche à Noël.",
    "pt-BR": "O coração não é pão.",
    "pt": "O coração não é pão.",
    "it": "Perché la città è così bella?",
    "nl": "De brug over de rivier is lang.",
    "sv": "Björnen åt blåbär i skogen.",
    "pl": "Zażółć gęślą jaźń.",
    "cs": "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "hu": "Árvíztűrő tükörfúrógép.",
    "fi": "Hyvää päivää, mitä kuuluu?",
    "tr": "Günaydın, nasılsın?",
    "ru": "Привет, как твои дела?",
    "ru-RU": "Я люблю Google и YouTube.",  # espeak-ng switches to English mid-sentence: "(en)"
    "uk": "Добрий день, як справи?",
    "el": "Καλημέρα, τι κάνεις;",
    "ar": "مرحبا بالعالم",
    "fa": "سلام دنیا",
    "ko": "안녕하세요, 만나서 반갑습니다.",
    "hi": "नमस्ते, आप कैसे हैं?",
    "bn": "আমি বাংলায় গান গাই।",
    "ta": "வணக்கம், எப்படி இருக்கிறீர்கள்?",
    "ka": "გამარჯობა",
    "ja": "こんにちは、げんきですか。",
    "zh": "今天天气不错。",
    "cmn": "谢谢你。",
    "yue": "今日天氣好好。",
}

_FLAGS = re.compile(r"\([^()\s]*\)")  # espeak-ng's language switches: "(en)", "(ru)"
_STRESS = "ˈˌ"

needs_espeak_cli = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng program")


def espeak_ipa(text: str, language: str) -> str:
    """espeak-ng's own IPA for ``text`` (one line per clause, language-switch flags printed)."""
    command = ["espeak-ng", "-q", "--ipa", "-v", espeak_voice(language), text]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout


def comparable(phonemes: str, drop: str = "") -> str:
    """Phonemes without stress marks, punctuation, whitespace, language-switch flags and ``drop``."""
    phonemes = _FLAGS.sub("", phonemes)
    return "".join(
        char
        for char in phonemes
        if char not in _STRESS + drop and not char.isspace() and unicodedata.category(char)[0] != "P"
    )


@needs_espeak_cli
@pytest.mark.parametrize("language", list(SENTENCES))
def test_phonemes_are_espeak_ngs_own(language):
    text = SENTENCES[language]
    ours = text_to_phonemes(text, language)
    print(f"{language:7} {text}\n        ours:     {ours}\n        espeak-ng: {espeak_ipa(text, language)}")
    assert comparable(ours) == comparable(espeak_ipa(text, language))
    assert ours == ours.strip() and "  " not in ours and "(" not in ours  # no flags left


@needs_espeak_cli
@pytest.mark.parametrize(
    ("language", "text", "tones"),
    [
        # espeak_TextToPhonemes (phonemizer) leaves out Vietnamese tone 1, which the CLI prints;
        ("vi", "Xin chào, bạn khỏe không?", "0123456789"),
        # the CLI applies Mandarin third-tone sandhi (and prints tone 3 as "ɜ"), the library does not.
        ("zh", "你好，今天天气很好。", "0123456789ɜ"),
    ],
)
def test_tone_marks_are_the_known_difference(language, text, tones):
    ours = text_to_phonemes(text, language)
    assert comparable(ours, drop=tones) == comparable(espeak_ipa(text, language), drop=tones)


def test_text_goes_to_espeak_as_written():
    # Nothing transliterated to ASCII: ñ, ö, ü keep their sounds.
    assert "ɲ" in text_to_phonemes("El niño come piña.", "es")
    german = text_to_phonemes("schön und grün", "de")
    assert "ø" in german and "y" in german
    assert german != text_to_phonemes("schon und grun", "de")
    # Hangul is read by espeak-ng's Korean, not romanised first.
    assert text_to_phonemes("반갑습니다", "ko") != text_to_phonemes("bangapseumnida", "ko")
    # NFC: a decomposed ñ is the composed one; whitespace and control characters go.
    assert text_to_phonemes("nin\u0303o", "es") == text_to_phonemes("niño", "es")
    assert normalize_text("  nin\u0303o \t\n\x00 pin\u0303a  ") == "ni\u00f1o pi\u00f1a"
    # No English abbreviation list: German "St." is not "saint".
    assert "saint" not in text_to_phonemes("St. Pauli", "de")


def test_english_is_english_cleaners2_unchanged():
    texts = ["Hello,   world!", "Mrs. Smith met Dr. Who at St. Louis.", "Café — naïve résumé", "hi (there)"]
    for text in texts:
        expected = english_cleaners2(text)
        for code in ("en", "en-us", "en-US", "EN_us", "eng"):
            assert text_to_phonemes(text, code) == expected
    assert text_to_phonemes("Hello,   world!") == "həlˈoʊ, wˈɜːld!"
    assert text_to_phonemes("Dr. Who", "en-gb") == english_cleaners2("Dr. Who", "en-gb")


@pytest.mark.parametrize(
    ("code", "voice"),
    [
        ("en", "en-us"),
        ("en-US", "en-us"),
        ("en_us", "en-us"),
        ("en-GB", "en-gb"),
        ("eng", "en-us"),
        ("fr", "fr-fr"),
        ("fr-FR", "fr-fr"),
        ("fr-CA", "fr-fr"),
        ("fra", "fr-fr"),
        ("pt-BR", "pt-br"),
        ("pt_BR", "pt-br"),
        ("pt", "pt"),
        ("pt-PT", "pt"),
        ("ko", "ko"),
        ("kor", "ko"),
        ("ko-KR", "ko"),
        ("de-DE", "de"),
        ("de-AT", "de"),
        ("ger", "de"),
        ("es", "es"),
        ("es-419", "es-419"),
        ("es-MX", "es-419"),
        ("zh-HK", "yue"),
        ("yue-Hant-HK", "yue"),
        ("ru", "ru"),
        ("rus", "ru"),
        ("no", "nb"),
    ],
)
def test_language_codes_map_to_voices(code, voice):
    assert espeak_voice(code) == voice


@pytest.mark.parametrize("code", ["zh", "cmn", "zh-CN", "zh-Hans", "zh-Hant-TW", "zho", "chi", "cmn-Hans-CN"])
def test_mandarin_codes_read_han_characters_as_mandarin(code):
    voice = espeak_voice(code)
    assert voice in ("cmn", "cmn-latn-pinyin")
    # espeak-ng 1.51's "cmn" reads 你好 as the English words "ni three hao three"; ours must not.
    phonemes = text_to_phonemes("你好", code)
    assert "θ" not in phonemes and "ɹ" not in phonemes


def test_every_espeak_voice_is_its_own_code():
    codes = language_codes()
    for voice in set(codes.values()):
        assert espeak_voice(voice) == voice
    assert all(code == code.lower() for code in codes)


@pytest.mark.parametrize(("code", "closest"), [("frr", "fr"), ("korean", "kor"), ("frr-FR", "fr")])
def test_unknown_code_names_the_closest(code, closest):
    with pytest.raises(TextError, match="not supported by espeak-ng") as caught:
        espeak_voice(code)
    message = str(caught.value)
    assert "closest:" in message and closest in message.split("closest:")[1]
    assert "espeak-ng --voices" in message and "language_codes()" in message


@pytest.mark.parametrize("code", [None, 3, b"en", ""])
def test_bad_codes_are_text_errors(code):
    with pytest.raises(TextError):
        espeak_voice(code)


def test_phonemes_outside_the_table_are_refused_and_counted():
    with pytest.raises(TextError) as caught:
        text_to_tokens("Le garçon a mangé une pêche.", "fr")
    message = str(caught.value)
    # ɔ̃ and ɑ̃: the combining tilde is not in the released table.
    assert message.startswith("2 phonemes of 'Le garçon a mangé une pêche.'")
    assert "◌̃ U+0303 (2)" in message and "'fr-fr'" in message and "on_unknown='drop'" in message
    # Sorted by count: a table without ø and y.
    table = [symbol for symbol in SYMBOLS if symbol not in "øy"]
    with pytest.raises(TextError, match=r"^3 phonemes of 'schön schön grün'.*: ø \(2\), y \(1\)\."):
        text_to_tokens("schön schön grün", "de", symbols=table)
    assert missing_symbols(text_to_phonemes("schön schön grün", "de"), table) == {"ø": 2, "y": 1}


def test_english_with_the_released_table_drops_as_the_released_front_end_did():
    # espeak-ng's English reads "croissant" with a French nasal vowel the released table lacks; the
    # official front end dropped the tilde with a warning, and so does the default here.
    with pytest.warns(UserWarning, match="dropped symbols.*'̃'"):
        tokens = text_to_tokens("A croissant.")
    assert tokens_to_phonemes(tokens) == "ɐ kwˈɑːsɑ."
    with pytest.raises(TextError, match=r"^1 phoneme of 'A croissant.' \(language='en-us'.*◌̃ U\+0303 \(1\)"):
        text_to_tokens("A croissant.", on_unknown="error")
    with pytest.warns(UserWarning, match="dropped symbols"):  # the released table, given explicitly
        assert torch.equal(text_to_tokens("A croissant.", symbols=list(SYMBOLS)), tokens)
    with pytest.raises(TextError, match="◌̃ U"):  # another table: refused unless told to drop
        text_to_tokens("A croissant.", symbols=[*SYMBOLS, "5"])


def test_drop_keeps_the_lenient_behaviour():
    with pytest.warns(UserWarning, match="dropped symbols.*'̃'"):
        tokens = text_to_tokens("Le garçon.", "fr", on_unknown="drop")
    assert "\u0303" not in tokens_to_phonemes(tokens)
    with pytest.warns(UserWarning, match="'5'"):
        assert phonemes_to_ids("a5", on_unknown="drop") == phonemes_to_ids("a")
    with pytest.raises(TextError, match="1 phoneme of 'a5'"):
        phonemes_to_ids("a5")
    with pytest.raises(ValueError, match="on_unknown"):
        text_to_tokens("hello", on_unknown="ignore")


def test_a_table_with_the_phonemes_takes_them():
    table = [*SYMBOLS, "\u0303", "-", *"0123456789"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        french = text_to_tokens("Le garçon a mangé une pêche.", "fr-FR", symbols=table)
        mandarin = text_to_tokens("谢谢你。", "zh", symbols=table)
    assert len(SYMBOLS) in french.tolist() and tokens_to_phonemes(french, table).count("\u0303") == 2
    assert tokens_to_phonemes(mandarin, table) == text_to_phonemes("谢谢你。", "zh")
    # The released table still refuses tone digits.
    with pytest.raises(TextError, match=r"not in the model's symbol table.*5 \(2\)"):
        text_to_tokens("谢谢你。", "zh")


def test_punctuation_outside_the_table_is_dropped_with_a_warning_not_refused():
    phonemes = text_to_phonemes("hi (there)")
    assert missing_symbols(phonemes) == {}
    assert missing_symbols(phonemes, punctuation=True) == {"(": 1, ")": 1}
    with pytest.warns(UserWarning, match="dropped symbols"):
        assert text_to_tokens("hi (there)").numel() > 1
    assert is_phoneme("ɲ") and is_phoneme("\u0303") and is_phoneme("5") and is_phoneme("ˈ")
    assert not is_phoneme("(") and not is_phoneme(" ") and not is_phoneme("-")


def test_symbol_tables_must_be_single_characters():
    with pytest.raises(TextError, match="single characters"):
        text_to_tokens("hello", symbols=["_", "ab"])
    with pytest.raises(TextError, match="single characters"):
        text_to_tokens("hello", symbols=[])


def test_released_table_tokens_unchanged_for_languages_it_covers():
    # German and Spanish phonemes are all in the released table: ids as before, no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokens = text_to_tokens("Die Mädchen sind schön und grün.", "de-DE")
    assert tokens_to_phonemes(tokens) == text_to_phonemes("Die Mädchen sind schön und grün.", "de")
    assert torch.equal(tokens, text_to_tokens("Die Mädchen sind schön und grün.", "de"))
