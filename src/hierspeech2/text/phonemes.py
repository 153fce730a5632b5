"""espeak-ng phonemisation through ``phonemizer``, one backend per espeak-ng voice for the process.

phonemizer calls espeak-ng's ``espeak_TextToPhonemes`` (IPA, no tie bars) and keeps stress marks and
the punctuation it knows. English keeps espeak-ng's language-switch flags (``(fr)``), as the released
models' front end did; every other language drops the flags and keeps the phonemes between them.
"""

from __future__ import annotations

import functools
import logging
import threading

from hierspeech2.errors import TextError
from hierspeech2.text.languages import espeak_backend_class, espeak_voice, is_english

__all__ = ["phonemize"]

_LOCK = threading.Lock()
# phonemizer warns "words count mismatch" whenever espeak-ng joins or splits words (Korean, French
# liaisons); the phoneme string does not depend on word counts, so only its errors are shown.
_PHONEMIZER_LOG = logging.getLogger("hierspeech2.text.phonemizer")
_PHONEMIZER_LOG.setLevel(logging.ERROR)


@functools.cache
def _backend(language: str):
    """The phonemizer backend of an espeak-ng voice (built once per voice)."""
    # Building an EspeakBackend loads the espeak-ng library and a voice: do it once per language.
    espeak_backend = espeak_backend_class()
    try:
        # Punctuation kept and primary/secondary stress marked: the released TTV's input alphabet.
        # English keeps phonemizer's default language-switch flags, as the official front end did
        # (parity); other languages drop them, or "(en)"-style markers would leak letters into ids.
        switch = "keep-flags" if is_english(language) else "remove-flags"
        return espeak_backend(
            language,
            preserve_punctuation=True,
            with_stress=True,
            language_switch=switch,
            logger=_PHONEMIZER_LOG,
        )
    except RuntimeError as error:
        if "not supported" in str(error):
            raise TextError(
                f"language {language!r} is not supported by espeak-ng; run `espeak-ng --voices` "
                "for the codes it knows (English: 'en-us')"
            ) from error
        raise


def phonemize(text: str, language: str = "en-us") -> str:
    """IPA phonemes of ``text`` with stress marks and punctuation, words separated by spaces.

    ``language`` is any code :func:`~hierspeech2.text.languages.espeak_voice` accepts; the text is
    phonemised as given (normalise it first).
    """
    backend = _backend(espeak_voice(language))
    # The espeak-ng library holds global state; serialise calls from threads.
    with _LOCK:
        phonemes = backend.phonemize([text], strip=True)
    return phonemes[0] if phonemes else ""
