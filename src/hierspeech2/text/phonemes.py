"""espeak-ng phonemisation through ``phonemizer``, one backend per language for the process."""

from __future__ import annotations

import functools
import threading

from hierspeech2.errors import TextError

__all__ = ["phonemize"]

_LOCK = threading.Lock()


@functools.cache
def _backend(language: str):
    # Building an EspeakBackend loads the espeak-ng library and a voice: do it once per language.
    try:
        from phonemizer.backend import EspeakBackend
    except ImportError as error:  # pragma: no cover - phonemizer is a hard dependency
        raise RuntimeError("the text front end needs `phonemizer`: pip install phonemizer") from error
    if not EspeakBackend.is_available():
        raise RuntimeError(
            "espeak-ng was not found; install it (apt install espeak-ng, brew install espeak-ng) "
            "or point PHONEMIZER_ESPEAK_LIBRARY at libespeak-ng"
        )
    try:
        # Punctuation kept and primary/secondary stress marked: the released TTV's input alphabet.
        # English keeps phonemizer's default language-switch flags, as the official front end did
        # (parity); other languages drop them, or "(en)"-style markers would leak letters into ids.
        switch = "keep-flags" if language.startswith("en") else "remove-flags"
        return EspeakBackend(language, preserve_punctuation=True, with_stress=True, language_switch=switch)
    except RuntimeError as error:
        if "not supported" in str(error):
            raise TextError(
                f"language {language!r} is not supported by espeak-ng; run `espeak-ng --voices` "
                "for the codes it knows (English: 'en-us')"
            ) from error
        raise


def phonemize(text: str, language: str = "en-us") -> str:
    """IPA phonemes of ``text`` with stress marks and punctuation, words separated by spaces."""
    backend = _backend(language)
    # The espeak-ng library holds global state; serialise calls from threads.
    with _LOCK:
        phonemes = backend.phonemize([text], strip=True)
    return phonemes[0] if phonemes else ""
