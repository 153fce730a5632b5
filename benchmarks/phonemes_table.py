"""Print, per language, a sentence, ``text_to_phonemes`` and espeak-ng's own IPA, as a Markdown table.

    .venv/bin/python benchmarks/phonemes_table.py            # the table
    .venv/bin/python benchmarks/phonemes_table.py --plain    # one block per language

"agrees" compares both sides without stress marks, punctuation, spaces and espeak-ng's language-switch
flags (``(en)``); "released table" lists the phonemes the released 178-symbol table lacks (what
``text_to_tokens`` refuses with that table).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import unicodedata

from hierspeech2.text import missing_symbols, text_to_phonemes
from hierspeech2.text.languages import espeak_voice

SENTENCES = {
    "en": "The quick brown fox jumps over the lazy dog.",
    "es": "El niño español come piña.",
    "de": "Die Mädchen sind schön und grün.",
    "fr": "Le garçon a mangé une pêche à Noël.",
    "pt-BR": "O coração não é pão.",
    "it": "Perché la città è così bella?",
    "nl": "De brug over de rivier is lang.",
    "pl": "Zażółć gęślą jaźń.",
    "cs": "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "tr": "Günaydın, nasılsın?",
    "ru": "Привет, как твои дела?",
    "el": "Καλημέρα, τι κάνεις;",
    "ar": "مرحبا بالعالم",
    "ko": "안녕하세요, 만나서 반갑습니다.",
    "hi": "नमस्ते, आप कैसे हैं?",
    "ja": "こんにちは、げんきですか。",
    "zh": "今天天气不错。",
    "yue": "今日天氣好好。",
    "vi": "Xin chào, bạn khỏe không?",
}

_FLAGS = re.compile(r"\([^()\s]*\)")


def espeak_ipa(text: str, voice: str) -> str:
    """espeak-ng's ``--ipa`` output, clauses joined by " / "."""
    command = ["espeak-ng", "-q", "--ipa", "-v", voice, text]
    lines = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    return " / ".join(line.strip() for line in lines.splitlines() if line.strip())


def comparable(phonemes: str) -> str:
    """Without stress marks, punctuation, whitespace and language-switch flags."""
    return "".join(
        char
        for char in _FLAGS.sub("", phonemes)
        if char not in "ˈˌ" and not char.isspace() and unicodedata.category(char)[0] != "P"
    )


def shown(symbol: str) -> str:
    """A phoneme for the table; combining marks on a dotted circle with their code point."""
    if unicodedata.category(symbol)[0] == "M":
        return f"◌{symbol} U+{ord(symbol):04X}"
    return symbol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", action="store_true", help="one block per language instead of a table")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt install espeak-ng)")
    if not args.plain:
        print(
            "| code | voice | sentence | text_to_phonemes | espeak-ng --ipa | agrees | released table lacks |"
        )
        print("|---|---|---|---|---|---|---|")
    for code, text in SENTENCES.items():
        voice = espeak_voice(code)
        ours = text_to_phonemes(text, code)
        theirs = espeak_ipa(text, voice)
        agrees = "yes" if comparable(ours) == comparable(theirs) else "no"
        missing = missing_symbols(ours)
        lacks = ", ".join(f"{shown(symbol)} ({count})" for symbol, count in missing.most_common()) or "-"
        if args.plain:
            print(f"{code} ({voice}): {text}\n  ours:      {ours}\n  espeak-ng: {theirs}")
            print(f"  agrees: {agrees}; released table lacks: {lacks}")
        else:
            print(f"| {code} | {voice} | {text} | {ours} | {theirs} | {agrees} | {lacks} |")


if __name__ == "__main__":
    main()
