"""The exceptions hierspeech2 raises for problems a user can fix.

Each subclasses both :class:`HierSpeechError` (catch everything from this package)
and the built-in type a caller would expect (``ValueError``, ``FileNotFoundError``).
"""

from __future__ import annotations


class HierSpeechError(Exception):
    """Base class of every error hierspeech2 raises on purpose."""


class AudioError(HierSpeechError, ValueError):
    """Audio that cannot be read or used (unreadable file, empty, NaN, wrong rate)."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """An audio path that does not exist."""


class TextError(HierSpeechError, ValueError):
    """Text that yields no usable phonemes."""


class CheckpointError(HierSpeechError, ValueError):
    """A checkpoint that cannot be loaded: unsafe pickle, wrong keys or shapes, unknown format."""
