"""Language codes as corpora write them (ISO 639-1/2/3, BCP-47) → the espeak-ng voice that speaks them.

:func:`espeak_voice` accepts the voices espeak-ng itself reports (``en-us``, ``fr-fr``, ``cmn`` …), the
other names espeak-ng lists for them (``zh``, ``no``, ``es-mx`` …), ISO 639-3 and 639-2/B codes
(``kor``, ``deu``, ``ger``), and BCP-47 tags with region, script or variant subtags (``fr-FR``,
``pt_BR``, ``zh-Hans-CN``, ``es-419``), case-insensitively. A tag espeak-ng has no voice for falls back
to its language (``de-AT`` → ``de``). An unknown code is a :class:`~hierspeech2.errors.TextError`
naming the closest known codes.

English (``en``) is ``en-us``, the accent the released models were trained on.
"""

from __future__ import annotations

import difflib
import functools

from hierspeech2.errors import TextError

__all__ = ["ENGLISH", "espeak_voice", "is_english", "language_codes"]

ENGLISH = "en-us"  # the released models' espeak-ng voice
_MANDARIN, _MANDARIN_PINYIN = "cmn", "cmn-latn-pinyin"
_SUGGESTIONS = 5

# Codes that are not espeak-ng voice names → the voice (or another alias). Entries whose target this
# espeak-ng lacks are left out when the table is built.
_ALIASES: dict[str, str] = {
    # Bare languages whose espeak-ng voices all carry a region, and the region tags espeak-ng knows
    # under another name (its `--voices` "Other languages" column: zh, zh-cmn, es-mx, pt-pt, no, hbs …).
    "en": ENGLISH,
    "en-uk": "en-gb",
    "en-au": "en-gb",
    "en-nz": "en-gb",
    "en-ie": "en-gb",
    "en-za": "en-gb",
    "en-scotland": "en-gb-scotland",
    "fr": "fr-fr",
    "fr-ca": "fr-fr",
    "fr-lu": "fr-fr",
    "pt-pt": "pt",
    "zh": _MANDARIN,
    "zh-cmn": _MANDARIN,
    "zh-yue": "yue",
    "zh-hk": "yue",
    "zh-mo": "yue",
    "zh-hant-hk": "yue",
    "zh-hant-mo": "yue",
    "zh-hak": "hak",
    "no": "nb",
    "nn": "nb",
    "hbs": "hr",
    "sh": "hr",
    "hy-arevela": "hy",
    "hy-arevmda": "hyw",
    "vi-vn": "vi",
    **{f"es-{region}": "es-419" for region in ("mx", "ar", "bo", "cl", "co", "cr", "cu", "do", "ec", "gt")},
    **{f"es-{region}": "es-419" for region in ("hn", "ni", "pa", "pe", "pr", "py", "sv", "us", "uy", "ve")},
    # ISO 639-3 (and 639-2/B where it differs) → the two-letter code.
    "afr": "af",
    "amh": "am",
    "arg": "an",
    "ara": "ar",
    "arb": "ar",
    "asm": "as",
    "aze": "az",
    "azj": "az",
    "bak": "ba",
    "bel": "be",
    "bul": "bg",
    "ben": "bn",
    "bos": "bs",
    "cat": "ca",
    "ces": "cs",
    "cze": "cs",
    "chv": "cv",
    "cym": "cy",
    "wel": "cy",
    "dan": "da",
    "deu": "de",
    "ger": "de",
    "ell": "el",
    "gre": "el",
    "eng": "en",
    "epo": "eo",
    "spa": "es",
    "est": "et",
    "ekk": "et",
    "eus": "eu",
    "baq": "eu",
    "fas": "fa",
    "per": "fa",
    "pes": "fa",
    "fin": "fi",
    "fra": "fr",
    "fre": "fr",
    "gle": "ga",
    "gla": "gd",
    "grn": "gn",
    "gug": "gn",
    "guj": "gu",
    "heb": "he",
    "hin": "hi",
    "hrv": "hr",
    "hat": "ht",
    "hun": "hu",
    "hye": "hy",
    "arm": "hy",
    "ina": "ia",
    "ind": "id",
    "ido": "io",
    "isl": "is",
    "ice": "is",
    "ita": "it",
    "jpn": "ja",
    "kat": "ka",
    "geo": "ka",
    "kaz": "kk",
    "kal": "kl",
    "kan": "kn",
    "kor": "ko",
    "kur": "ku",
    "kmr": "ku",
    "kir": "ky",
    "lat": "la",
    "ltz": "lb",
    "lit": "lt",
    "lav": "lv",
    "lvs": "lv",
    "mri": "mi",
    "mao": "mi",
    "mkd": "mk",
    "mac": "mk",
    "mal": "ml",
    "mar": "mr",
    "msa": "ms",
    "may": "ms",
    "zsm": "ms",
    "mlt": "mt",
    "mya": "my",
    "bur": "my",
    "nob": "nb",
    "nor": "nb",
    "nno": "nb",
    "nep": "ne",
    "npi": "ne",
    "nld": "nl",
    "dut": "nl",
    "orm": "om",
    "gaz": "om",
    "ori": "or",
    "ory": "or",
    "pan": "pa",
    "pol": "pl",
    "por": "pt",
    "que": "qu",
    "ron": "ro",
    "rum": "ro",
    "mol": "ro",
    "rus": "ru",
    "snd": "sd",
    "sin": "si",
    "slk": "sk",
    "slo": "sk",
    "slv": "sl",
    "sqi": "sq",
    "alb": "sq",
    "als": "sq",
    "srp": "sr",
    "swe": "sv",
    "swa": "sw",
    "swh": "sw",
    "tam": "ta",
    "tel": "te",
    "tha": "th",
    "tuk": "tk",
    "tsn": "tn",
    "tur": "tr",
    "tat": "tt",
    "uig": "ug",
    "ukr": "uk",
    "urd": "ur",
    "uzb": "uz",
    "uzn": "uz",
    "vie": "vi",
    "zho": "zh",
    "chi": "zh",
    "chr": "chr-us-qaaa-x-west",
}


def _normalize(code: str) -> str:
    return code.strip().lower().replace("_", "-")


def espeak_backend_class() -> type:
    """phonemizer's ``EspeakBackend``, once espeak-ng is known to be installed (RuntimeError if not)."""
    try:
        from phonemizer.backend import EspeakBackend
    except ImportError as error:  # pragma: no cover - phonemizer is a hard dependency
        raise RuntimeError("the text front end needs `phonemizer`: pip install phonemizer") from error
    if not EspeakBackend.is_available():
        raise RuntimeError(
            "espeak-ng was not found; install it (apt install espeak-ng, brew install espeak-ng) "
            "or point PHONEMIZER_ESPEAK_LIBRARY at libespeak-ng"
        )
    return EspeakBackend


@functools.cache
def _voices() -> dict[str, str]:
    """espeak-ng's voices as it reports them, keyed by their lowercased name."""
    return {_normalize(voice): voice for voice in espeak_backend_class().supported_languages()}


@functools.cache
def _mandarin_voice() -> str:
    """``cmn``, unless this espeak-ng reads Han characters in it as English words (then the pinyin voice).

    espeak-ng 1.51 (Debian, Ubuntu) turns 你好 into the pinyin ``ni3 hao3`` and then, in the ``cmn``
    voice ("latin as English"), reads that pinyin as English: ``(en)nɪθɹˈiː …``. Its
    ``cmn-latn-pinyin`` voice reads the same pinyin as Mandarin (``nˈi2 χˈɑu2``).
    """
    voices = _voices()
    if _MANDARIN_PINYIN not in voices:
        return voices.get(_MANDARIN, _MANDARIN)
    if _MANDARIN not in voices:
        return voices[_MANDARIN_PINYIN]
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    wrapper = EspeakWrapper()
    wrapper.set_voice(voices[_MANDARIN])
    reads_as_english = "(en)" in wrapper.text_to_phonemes("你好")
    return voices[_MANDARIN_PINYIN if reads_as_english else _MANDARIN]


def language_codes() -> dict[str, str]:
    """Every code :func:`espeak_voice` accepts as written here (lowercase, ``-``) → its espeak-ng voice.

    Tags with further subtags (``de-AT``, ``zh-Hans-CN``) are accepted too, by falling back to a
    prefix that is listed here.
    """
    return dict(_codes())


@functools.cache
def _codes() -> dict[str, str]:
    voices = _voices()
    codes = dict(voices)
    for alias in _ALIASES:
        target = alias
        for _ in range(3):  # aliases chain at most twice (kor → ko, zho → zh → cmn)
            target = _ALIASES.get(target, target)
        if target in voices:
            codes.setdefault(alias, voices[target])
    mandarin = _mandarin_voice()
    for code, voice in codes.items():
        if voice == voices.get(_MANDARIN):
            codes[code] = mandarin
    return dict(sorted(codes.items()))


def espeak_voice(code: str) -> str:
    """The espeak-ng voice for a language code: ``fr`` → ``fr-fr``, ``pt-BR`` → ``pt-br``, ``kor`` → ``ko``.

    Raises :class:`~hierspeech2.errors.TextError` for a code that is not a str or that espeak-ng has
    no voice for, naming the closest codes it has.
    """
    if not isinstance(code, str):
        raise TextError(f"language must be an espeak-ng language code such as 'en-us', got {code!r}")
    return _resolve(code)


@functools.lru_cache(maxsize=1024)
def _resolve(code: str) -> str:
    codes = _codes()
    wanted = _normalize(code)
    subtags = wanted.split("-")
    for end in range(len(subtags), 0, -1):
        voice = codes.get("-".join(subtags[:end]))
        if voice is not None:
            return voice
    closest = difflib.get_close_matches(wanted, codes, n=_SUGGESTIONS, cutoff=0.5)
    if len(subtags) > 1:  # "frr-DE": also the codes close to its language subtag
        closest += difflib.get_close_matches(subtags[0], codes, n=_SUGGESTIONS, cutoff=0.5)
    closest = list(dict.fromkeys(closest))[:_SUGGESTIONS]
    hint = f"closest: {', '.join(closest)}; " if closest else ""
    raise TextError(
        f"language {code!r} is not supported by espeak-ng ({hint}English: 'en'). All codes: "
        "`espeak-ng --voices`, or hierspeech2.text.languages.language_codes()"
    )


def is_english(voice: str) -> bool:
    """Whether an espeak-ng voice is English, and so gets the released models' ``english_cleaners2``."""
    return voice == "en" or voice.startswith("en-")
