"""The local feature cache: one safetensors file per utterance plus a manifest.

Layout of a cache folder::

    cache.json              settings the features were made with (model, encoder, F0 extractor, rates)
    items/<speaker>/<id>.safetensors   audio (int16 PCM), semantic (float16 [1024, T]), f0 (float32 [4T]),
                                       tokens (int64, TTV); the record as JSON in the header metadata
    skipped/<speaker>/<id>.json        why an utterance was skipped
    manifest.jsonl          one record per cached utterance, sorted by id (written when a run ends)
    skipped.tsv             the skip report: id, path, reason

Every file is written to a temporary name and renamed into place, so a killed run leaves either a
complete item or nothing; the item files are the source of truth and ``manifest.jsonl`` is
rebuilt from their headers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..errors import DataNotFoundError, OutputError

__all__ = ["CacheRecord", "FeatureCache", "atomic_write_text"]

CACHE_FORMAT = 1
ITEM_SUFFIX = ".safetensors"
TEMP_MARKER = ".tmp-"


@dataclass(frozen=True)
class CacheRecord:
    """What the datasets need to know about a cached utterance without opening it.

    ``num_frames`` counts 320-sample hops of the stored 16 kHz audio (0 for SpeechSR caches,
    which store target-rate audio); ``num_tokens`` includes blanks; ``voiced_frames`` counts
    F0 frames above 0.
    """

    id: str
    file: str
    speaker: str
    language: str
    text: str | None
    source: str
    sample_rate: int
    num_samples: int
    num_frames: int
    num_tokens: int
    voiced_frames: int

    @classmethod
    def from_dict(cls, data: dict) -> CacheRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file)."""

    def write(temp: Path) -> None:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    _atomic_write(path, write)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temp)`` then rename to ``path``; on failure the temporary file goes and ``path`` is untouched.

    An ``OSError`` (full disk, read-only folder) becomes an :class:`~hierspeech2.errors.OutputError`
    naming ``path``: it stops preprocessing, since every later item would fail the same way.
    """
    temp = path.with_name(f"{path.name}{TEMP_MARKER}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temp)
        os.replace(temp, path)
    except (OSError, SafetensorError) as error:  # safetensors reports its I/O errors as SafetensorError
        raise OutputError.writing(path, error) from error
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def safe_name(name: str) -> str:
    """A file-system-safe version of an id or speaker: path separators and odd characters → ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__")).strip(".")
    return cleaned or "_"


def _in_root(name: str) -> property:
    """A read-only attribute: ``root / name`` (one entry of the cache's layout)."""

    def path(self: FeatureCache) -> Path:
        return self.root / name

    return property(path, doc=f"``root / {name!r}``")


class FeatureCache:
    """Read and write a cache folder (see the module docstring for its layout)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # ---------------------------------------------------------------- layout

    items_dir = _in_root("items")
    skipped_dir = _in_root("skipped")
    manifest_path = _in_root("manifest.jsonl")
    report_path = _in_root("skipped.tsv")
    config_path = _in_root("cache.json")

    def item_path(self, speaker: str, utterance_id: str) -> Path:
        return self.items_dir / safe_name(speaker) / f"{safe_name(utterance_id)}{ITEM_SUFFIX}"

    def skip_path(self, speaker: str, utterance_id: str) -> Path:
        return self.skipped_dir / safe_name(speaker) / f"{safe_name(utterance_id)}.json"

    # ---------------------------------------------------------------- settings

    def read_config(self) -> dict | None:
        if not self.config_path.is_file():
            return None
        return json.loads(self.config_path.read_text(encoding="utf-8"))

    def check_or_write_config(self, config: dict) -> None:
        """Record the settings of a new cache, or refuse to resume one made with other settings."""
        config = {"format": CACHE_FORMAT, **config}
        existing = self.read_config()
        if existing is None:
            atomic_write_text(self.config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
            return
        different = {
            key: (existing.get(key), value) for key, value in config.items() if existing.get(key) != value
        }
        if different:
            details = "; ".join(
                f"{key}: cache has {old!r}, this run {new!r}" for key, (old, new) in different.items()
            )
            raise ValueError(
                f"{self.root} was made with other settings ({details}); resume with the same settings "
                "or choose another --out folder"
            )

    # ---------------------------------------------------------------- writing

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files a killed run left behind; returns how many."""
        count = 0
        if self.root.is_dir():
            for path in self.root.rglob(f"*{TEMP_MARKER}*"):
                path.unlink(missing_ok=True)
                count += 1
        return count

    def write_item(self, record: CacheRecord, tensors: dict[str, Tensor]) -> Path:
        """Atomically write one utterance's tensors with its record in the header."""
        path = self.root / record.file

        def write(temp: Path) -> None:
            contiguous = {k: v.contiguous() for k, v in tensors.items()}
            save_file(contiguous, str(temp), metadata={"record": record.to_json()})
            with open(temp, "rb") as handle:
                os.fsync(handle.fileno())

        _atomic_write(path, write)
        return path

    def write_skip(self, speaker: str, utterance_id: str, source: str, reason: str) -> None:
        payload = {"id": utterance_id, "source": source, "reason": reason}
        atomic_write_text(
            self.skip_path(speaker, utterance_id), json.dumps(payload, ensure_ascii=False) + "\n"
        )

    # ---------------------------------------------------------------- scanning

    def item_files(self) -> Iterator[Path]:
        if self.items_dir.is_dir():
            yield from (p for p in self.items_dir.rglob(f"*{ITEM_SUFFIX}") if TEMP_MARKER not in p.name)

    def skip_files(self) -> Iterator[Path]:
        if self.skipped_dir.is_dir():
            yield from (p for p in self.skipped_dir.rglob("*.json") if TEMP_MARKER not in p.name)

    def read_record(self, path: Path) -> CacheRecord:
        with safe_open(str(path), framework="pt") as handle:
            return CacheRecord.from_dict(json.loads(handle.metadata()["record"]))

    def scan_records(self) -> list[CacheRecord]:
        """Records of every complete item file, sorted by id."""
        return sorted((self.read_record(path) for path in self.item_files()), key=lambda r: r.id)

    def scan_skips(self) -> list[dict]:
        skips = [json.loads(path.read_text(encoding="utf-8")) for path in self.skip_files()]
        return sorted(skips, key=lambda skip: skip["id"])

    def write_manifest(self) -> tuple[list[CacheRecord], list[dict]]:
        """Rebuild ``manifest.jsonl`` and ``skipped.tsv`` from the item and skip files."""
        records = self.scan_records()
        skips = self.scan_skips()
        atomic_write_text(self.manifest_path, "".join(record.to_json() + "\n" for record in records))
        lines = ["id\tpath\treason\n"]
        lines += [f"{s['id']}\t{s['source']}\t{' '.join(str(s['reason']).split())}\n" for s in skips]
        atomic_write_text(self.report_path, "".join(lines))
        return records, skips

    # ---------------------------------------------------------------- reading

    @property
    def finished(self) -> bool:
        """Whether a preprocessing run completed here (it writes ``manifest.jsonl`` last)."""
        return self.manifest_path.is_file()

    def records(self) -> list[CacheRecord]:
        """The records of ``manifest.jsonl`` (run ``hierspeech2 preprocess`` to completion first)."""
        if not self.finished:
            raise DataNotFoundError(
                f"{self.manifest_path} not found: {self.root} is not a finished feature cache; run "
                f"`hierspeech2 preprocess CORPUS --out {self.root}` (it resumes where it stopped)"
            )
        with self.manifest_path.open(encoding="utf-8") as handle:
            return [CacheRecord.from_dict(json.loads(line)) for line in handle if line.strip()]

    def load(self, record: CacheRecord) -> dict[str, Tensor]:
        """The tensors of one cached utterance (int16 audio, float16 semantic, float32 f0, int64 tokens)."""
        return load_file(str(self.root / record.file))


def tensors_for_item(
    audio: np.ndarray, semantic: Tensor | None, f0: np.ndarray | None, tokens: np.ndarray | None
) -> dict[str, Tensor]:
    """The tensors stored for one utterance, leaving out the ones this model does not use."""
    tensors = {"audio": torch.from_numpy(np.ascontiguousarray(audio))}
    if semantic is not None:
        tensors["semantic"] = semantic
    if f0 is not None:
        tensors["f0"] = torch.from_numpy(np.ascontiguousarray(f0, dtype=np.float32))
    if tokens is not None:
        tensors["tokens"] = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))
    return tensors
