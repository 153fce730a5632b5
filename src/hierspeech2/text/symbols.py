"""The 178-symbol table of the released text-to-vec model (ids are embedding rows; order is fixed)."""

from __future__ import annotations

__all__ = ["BLANK_ID", "ID_TO_SYMBOL", "PAD", "PUNCTUATION", "SPACE_ID", "SYMBOLS", "SYMBOL_TO_ID"]

# Id 0: padding, and the blank interspersed between phonemes.
PAD = "_"
PUNCTUATION = ';:,.!?¡¿—…"«»“” '
_ASCII_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# IPA letters, stress/length marks, tones; the apostrophe and the combining syllabic mark (U+0329)
# are single entries, as in the VITS table the weights were trained with.
_IPA = (
    "ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢǀǁǂǃ"
    "ˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘"
    "'\u0329'ᵻ"
)

SYMBOLS: tuple[str, ...] = (PAD, *PUNCTUATION, *_ASCII_LETTERS, *_IPA)
BLANK_ID = 0
# The apostrophe appears twice; the later id wins, as in the official lookup dict.
SYMBOL_TO_ID: dict[str, int] = {symbol: index for index, symbol in enumerate(SYMBOLS)}
ID_TO_SYMBOL: dict[int, str] = dict(enumerate(SYMBOLS))
SPACE_ID = SYMBOL_TO_ID[" "]
