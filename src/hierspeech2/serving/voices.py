"""Voices of the server: built-in prompts from a folder, uploaded ones, and their encodings (LRU).

A request names a voice by id only; ids are looked up in this library, never turned into paths,
so no request can reach a file of the server. Uploaded voices are resampled to 16 kHz, cut to
``max_prompt_seconds`` and kept in memory (and in ``store_dir`` when one is given, so that a
restart keeps them). A voice is denoised and encoded once per pipeline, then served from the cache.
"""

from __future__ import annotations

import collections
import hashlib
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from ..audio import load_audio, resample, save_audio
from ..constants import MODEL_SAMPLE_RATE
from ..errors import HierSpeechError

__all__ = ["AUDIO_SUFFIXES", "VoiceLibrary", "VoiceNotFound", "VoiceStoreFull"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_ID = re.compile(r"[^A-Za-z0-9_.-]+")


class VoiceNotFound(HierSpeechError):
    """No voice of that id."""


class VoiceStoreFull(HierSpeechError):
    """``max_voices`` uploaded voices are kept already."""


class VoiceLibrary:
    """Built-in and uploaded voice prompts by id, with a bounded cache of their encodings."""

    def __init__(
        self,
        builtin_dir: Path | None = None,
        store_dir: Path | None = None,
        *,
        max_voices: int = 256,
        cache_size: int = 32,
        max_prompt_seconds: float = 30.0,
    ) -> None:
        self.max_voices = max_voices
        self.cache_size = cache_size
        self.max_samples = int(max_prompt_seconds * MODEL_SAMPLE_RATE)
        self.store_dir = store_dir
        self._lock = threading.Lock()
        self._builtin: dict[str, Path] = {}
        self._uploads: dict[str, tuple[str, Tensor]] = {}
        self._encoded: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
        if builtin_dir is not None:
            if not builtin_dir.is_dir():
                raise HierSpeechError(f"voices folder not found: {builtin_dir}")
            for path in sorted(builtin_dir.iterdir()):
                if path.suffix.lower() in AUDIO_SUFFIXES:
                    self._builtin[_ID.sub("-", path.stem)[:64]] = path
        if store_dir is not None:
            store_dir.mkdir(parents=True, exist_ok=True)
            for path in sorted(store_dir.glob("voice_*.wav")):
                self._uploads[path.stem] = (path.stem, load_audio(path)[: self.max_samples])

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            builtin = [{"id": key, "name": key, "builtin": True} for key in self._builtin]
            uploaded = [
                {"id": key, "name": name, "builtin": False} for key, (name, _) in self._uploads.items()
            ]
        return builtin + uploaded

    def add(self, wav: Tensor, rate: int, name: str | None = None) -> dict[str, Any]:
        """Keep an uploaded prompt; its id is a hash of its audio, so the same upload gets the same id."""
        if rate != MODEL_SAMPLE_RATE:
            wav = resample(wav, rate, MODEL_SAMPLE_RATE)
        wav = wav[: self.max_samples].contiguous()
        key = "voice_" + hashlib.sha256(wav.numpy().tobytes()).hexdigest()[:16]
        label = (name or key).strip()[:100] or key
        with self._lock:
            if key not in self._uploads and len(self._uploads) >= self.max_voices:
                raise VoiceStoreFull(
                    f"{self.max_voices} voices are stored already; delete one (DELETE /v1/voices/ID) first"
                )
            self._uploads[key] = (label, wav)
        if self.store_dir is not None:
            save_audio(self.store_dir / f"{key}.wav", wav, MODEL_SAMPLE_RATE, subtype="FLOAT")
        return {
            "id": key,
            "name": label,
            "builtin": False,
            "seconds": round(wav.numel() / MODEL_SAMPLE_RATE, 3),
        }

    def remove(self, key: str) -> None:
        with self._lock:
            if key in self._builtin:
                raise PermissionError(f"voice {key!r} is built in; it cannot be deleted")
            if key not in self._uploads:
                raise VoiceNotFound(f"no voice {key!r}; GET /v1/voices lists them")
            del self._uploads[key]
            for cached in [k for k in self._encoded if k[0] == key]:
                del self._encoded[cached]
        if self.store_dir is not None:
            (self.store_dir / f"{key}.wav").unlink(missing_ok=True)

    def waveform(self, key: str) -> Tensor:
        """The 16 kHz prompt of voice ``key``."""
        with self._lock:
            if key in self._uploads:
                return self._uploads[key][1]
            path = self._builtin.get(key)
        if path is None:
            raise VoiceNotFound(f"no voice {key!r}; GET /v1/voices lists them")
        return load_audio(path)[: self.max_samples]

    def encoded(self, key: str, kind: str, encode: Callable[[Tensor], Any]) -> Any:
        """Voice ``key`` encoded for pipeline ``kind`` by ``encode`` (once; least recently used dropped)."""
        with self._lock:
            if (key, kind) in self._encoded:
                self._encoded.move_to_end((key, kind))
                return self._encoded[(key, kind)]
        prompt = encode(self.waveform(key))
        with self._lock:
            self._encoded[(key, kind)] = prompt
            while len(self._encoded) > self.cache_size:
                self._encoded.popitem(last=False)
        return prompt

    @property
    def cached(self) -> int:
        return len(self._encoded)
