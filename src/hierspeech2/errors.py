"""The exceptions hierspeech2 raises for problems a user can fix.

Each subclasses both :class:`HierSpeechError` (catch everything from this package)
and the built-in type a caller would expect (``ValueError``, ``FileNotFoundError``).
"""

from __future__ import annotations

import errno
from collections import Counter


class HierSpeechError(Exception):
    """Base class of every error hierspeech2 raises on purpose."""


class AudioError(HierSpeechError, ValueError):
    """Audio that cannot be read or used (unreadable file, empty, NaN, wrong rate)."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """An audio path that does not exist."""


class TextError(HierSpeechError, ValueError):
    """Text that yields no usable phonemes."""


class MissingSymbolsError(TextError):
    """Phonemes of a text that the model's symbol table cannot write; ``missing`` counts each one."""

    def __init__(self, message: str, missing: Counter[str]) -> None:
        super().__init__(message)
        self.missing = missing


class CheckpointError(HierSpeechError, ValueError):
    """A checkpoint that cannot be loaded: unsafe pickle, wrong keys or shapes, unknown format."""


class DataNotFoundError(HierSpeechError, FileNotFoundError):
    """A training feature cache or corpus that is missing or unfinished
    (``hierspeech2 preprocess`` makes one)."""


class SettingError(HierSpeechError, ValueError):
    """A setting outside its valid range (NaN, negative, or an output that would be far too long)."""


class OutputError(HierSpeechError, OSError):
    """An output file or folder that cannot be written (read-only location, disk full, no permission)."""

    @classmethod
    def writing(cls, path: object, error: Exception) -> OutputError:
        """The error for ``error`` (an ``OSError`` or a library's I/O error) raised while writing ``path``."""
        code = getattr(error, "errno", None)
        if code in (errno.ENOSPC, errno.EDQUOT) or "StorageFull" in str(error):
            advice = "the disk is full: free some space or write to another folder"
        elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
            advice = "the location is read-only or not writable by you: choose another output folder"
        else:
            advice = "check that the folder exists, is writable and has free space"
        reason = getattr(error, "strerror", None) or str(error)
        message = f"cannot write {path}: {reason}; {advice}"
        output_error = cls(message) if code is None else cls(code, message)
        output_error.path = str(path)
        return output_error


class NonFiniteLossError(HierSpeechError, RuntimeError):
    """Training produced NaN/Inf losses for too many consecutive steps."""
