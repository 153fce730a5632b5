"""Corpus readers: LibriTTS, Libri-light and manifest corpora (TSV/JSONL) → utterance records.

Readers only look at the file system (and audio headers for durations); they never decode audio.
A header that cannot be read gives ``duration=None`` and the preprocessing reports the file.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import soundfile as sf

from hierspeech2.errors import TextError

__all__ = [
    "CorpusKind",
    "Utterance",
    "detect_corpus_kind",
    "read_corpus",
    "read_librilight",
    "read_libritts",
    "read_manifest",
    "split_long_utterances",
]

logger = logging.getLogger(__name__)

CorpusKind = Literal["libritts", "librilight", "manifest"]
DEFAULT_LANGUAGE = "en-us"  # espeak-ng voice of the released English models
MANIFEST_COLUMNS = ("path", "text", "speaker", "language")
# the manifest file a corpus folder may stand for
MANIFEST_NAMES = ("manifest.tsv", "manifest.jsonl", "manifest.csv", "manifest.json")


@dataclass(frozen=True)
class Utterance:
    """One utterance of a corpus. ``text`` is None for untranscribed corpora (Libri-light).

    ``id`` is unique within the corpus; ``language`` is an espeak-ng voice (``en-us``, ``de`` …);
    ``duration`` is in seconds, None when the audio header is unreadable. ``start``/``end``
    (seconds) select a piece of a longer file (see :func:`split_long_utterances`).
    """

    id: str
    path: str
    text: str | None
    speaker: str
    language: str
    duration: float | None
    start: float = 0.0
    end: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def espeak_voice(language: str | None) -> str:
    """Manifest language code → espeak-ng voice (``en`` → ``en-us``, ``fr-FR`` → ``fr-fr``, ``kor`` → ``ko``).

    The mapping is :func:`hierspeech2.text.languages.espeak_voice`. A code espeak-ng has no voice for
    is kept as written (lowercased): the backbone and SpeechSR need no text, and preprocessing for
    the text-to-vec model reports such utterances with the closest codes espeak-ng has.
    """
    if not language:
        return DEFAULT_LANGUAGE
    from hierspeech2.text.languages import espeak_voice as voice_of

    try:
        return voice_of(language)
    except (TextError, RuntimeError):  # unknown code, or espeak-ng not installed
        return language.strip().lower().replace("_", "-")


def audio_duration(path: str | os.PathLike) -> float | None:
    """Duration in seconds from the audio header, None when the file cannot be read as audio."""
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError):
        return None
    if info.samplerate <= 0:
        return None
    return info.frames / info.samplerate


def _subset_dirs(root: Path, subsets: Sequence[str] | None) -> list[Path]:
    if subsets is None:
        return sorted(path for path in root.iterdir() if path.is_dir())
    missing = [name for name in subsets if not (root / name).is_dir()]
    if missing:
        found = sorted(path.name for path in root.iterdir() if path.is_dir())
        raise FileNotFoundError(f"subset(s) {missing} not found under {root}; available: {found}")
    return [root / name for name in subsets]


def _libritts_root(root: Path) -> Path:
    # Accept the folder holding LibriTTS/ as well as LibriTTS/ itself.
    return root / "LibriTTS" if (root / "LibriTTS").is_dir() else root


def read_libritts(root: str | os.PathLike, subsets: Sequence[str] | None = None) -> list[Utterance]:
    """LibriTTS ``<subset>/<speaker>/<chapter>/<id>.wav`` with ``<id>.normalized.txt``;
    every subset by default.

    Utterances without a ``.normalized.txt`` are left out with a warning (LibriTTS has a few).
    """
    root = _libritts_root(Path(root))
    if not root.is_dir():
        raise FileNotFoundError(f"LibriTTS root not found: {root}")
    utterances = []
    missing_text = 0
    for subset in _subset_dirs(root, subsets):
        for wav in sorted(subset.glob("*/*/*.wav")):
            text_path = wav.with_name(wav.stem + ".normalized.txt")
            if not text_path.is_file():
                missing_text += 1
                continue
            text = text_path.read_text(encoding="utf-8").strip()
            speaker = wav.parent.parent.name
            utterances.append(
                Utterance(wav.stem, str(wav), text, speaker, DEFAULT_LANGUAGE, audio_duration(wav))
            )
    if missing_text:
        logger.warning(
            "LibriTTS: left out %d wav files without a .normalized.txt under %s", missing_text, root
        )
    return utterances


def read_librilight(root: str | os.PathLike, subsets: Sequence[str] | None = None) -> list[Utterance]:
    """Libri-light ``<subset>/<speaker>/<book>/<name>.flac`` (no transcripts: ``text=None``).

    ``root`` is the folder holding the subsets (``small``, ``medium``, ``large``) or one subset
    folder itself (one that directly holds speaker folders with ``.flac`` files two levels down).
    Ids are ``<speaker>/<book>/<name>``: file names repeat across readers of the same book.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Libri-light root not found: {root}")
    subset_dirs = [root] if subsets is None and any(root.glob("*/*/*.flac")) else _subset_dirs(root, subsets)
    utterances = []
    for subset in subset_dirs:
        for flac in sorted(subset.glob("*/*/*.flac")):
            book, speaker = flac.parent.name, flac.parent.parent.name
            utterance_id = f"{speaker}/{book}/{flac.stem}"
            utterances.append(
                Utterance(utterance_id, str(flac), None, speaker, DEFAULT_LANGUAGE, audio_duration(flac))
            )
    return utterances


def _manifest_rows(path: Path) -> Iterable[dict]:
    if path.suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{path}:{number} is not valid JSON ({error}); one object per line"
                    ) from error
    else:
        with path.open(encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle, delimiter="\t" if path.suffix != ".csv" else ",")


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """A TSV/CSV (header row) or JSONL manifest with ``path, text, speaker, language`` (MMS/MSSS style).

    ``path`` is absolute or relative to the manifest's folder; audio may be at any sample rate.
    An optional ``id`` column names utterances; otherwise the id is the path without its suffix.
    ``text`` may be empty (backbone and SpeechSR need none); ``language`` is mapped to an espeak-ng
    voice (``en`` → ``en-us``). A folder stands for the ``manifest.tsv`` (or ``.jsonl``) in it.
    """
    path = Path(path)
    if path.is_dir():
        path = _folder_manifest(path) or path
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    utterances = []
    seen: set[str] = set()
    for number, row in enumerate(_manifest_rows(path), 2):
        if not row.get("path"):
            raise ValueError(
                f"{path}: row {number} has no 'path'; "
                f"a manifest needs the columns {', '.join(MANIFEST_COLUMNS)}"
            )
        audio = Path(row["path"])
        audio = audio if audio.is_absolute() else path.parent / audio
        utterance_id = str(row.get("id") or Path(row["path"]).with_suffix("").as_posix())
        if utterance_id in seen:
            raise ValueError(
                f"{path}: duplicate utterance id {utterance_id!r} (row {number}); ids must be unique"
            )
        seen.add(utterance_id)
        text = row.get("text")
        utterances.append(
            Utterance(
                utterance_id,
                str(audio),
                text if text else None,
                str(row.get("speaker") or "unknown"),
                espeak_voice(row.get("language")),
                audio_duration(audio),
            )
        )
    return utterances


def _folder_manifest(folder: Path) -> Path | None:
    """The manifest file a corpus folder holds (``manifest.tsv``, ``manifest.jsonl`` …), if any."""
    return next((folder / name for name in MANIFEST_NAMES if (folder / name).is_file()), None)


def detect_corpus_kind(path: str | os.PathLike) -> CorpusKind:
    """Guess the layout: a file (or a folder with ``manifest.tsv``/``.jsonl``) is a manifest,
    ``*.normalized.txt`` means LibriTTS, ``*.flac`` Libri-light."""
    path = Path(path)
    if path.is_file() or (path.is_dir() and _folder_manifest(path) is not None):
        return "manifest"
    if not path.is_dir():
        raise FileNotFoundError(f"corpus not found: {path}")
    root = _libritts_root(path)
    if next(root.glob("*/*/*/*.normalized.txt"), None) is not None:
        return "libritts"
    if next(path.glob("*/*/*.flac"), None) is not None or next(path.glob("*/*/*/*.flac"), None) is not None:
        return "librilight"
    raise ValueError(
        f"cannot tell the layout of {path}: expected LibriTTS (<subset>/<spk>/<chapter>/*.wav + "
        ".normalized.txt), Libri-light (<subset>/<spk>/<book>/*.flac) or a manifest file (TSV/JSONL, or a "
        "folder holding manifest.tsv); "
        "pass kind= explicitly"
    )


def read_corpus(
    path: str | os.PathLike, kind: CorpusKind | None = None, subsets: Sequence[str] | None = None
) -> list[Utterance]:
    """Read any supported corpus (layout detected when ``kind`` is None), sorted by id."""
    kind = kind or detect_corpus_kind(path)
    if kind == "libritts":
        utterances = read_libritts(path, subsets)
    elif kind == "librilight":
        utterances = read_librilight(path, subsets)
    elif kind == "manifest":
        if subsets:
            raise ValueError("subsets apply to LibriTTS and Libri-light folders, not to manifest files")
        utterances = read_manifest(path)
    else:
        raise ValueError(f"unknown corpus kind {kind!r}; use libritts, librilight or manifest")
    return sorted(utterances, key=lambda utterance: utterance.id)


def split_long_utterances(
    utterances: Sequence[Utterance], max_seconds: float, min_seconds: float = 1.0
) -> list[Utterance]:
    """Cut untranscribed recordings longer than ``max_seconds`` into consecutive pieces.

    Libri-light files are whole chapters (minutes long): too long for the MMS encoder in one
    pass and for the datasets' random segments to see more than a sliver per epoch. Pieces get
    ids ``<id>#<k>``; a last piece shorter than ``min_seconds`` is dropped. Transcribed
    utterances are kept whole (their text covers the whole file).
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    pieces = []
    for utterance in utterances:
        duration = utterance.duration
        if utterance.text or duration is None or duration <= max_seconds:
            pieces.append(utterance)
            continue
        count = math.ceil(duration / max_seconds)
        for k in range(count):
            start = k * max_seconds
            end = min(duration, start + max_seconds)
            if end - start < min_seconds:
                continue
            pieces.append(
                replace(utterance, id=f"{utterance.id}#{k}", duration=end - start, start=start, end=end)
            )
    return pieces
