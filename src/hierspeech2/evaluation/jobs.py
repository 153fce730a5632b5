"""Evaluation job lists: one row per utterance to score, read from and written to TSV.

A job list is a tab-separated file with a header. Only ``id`` is required; the other columns say
what can be measured:

========== ===============================================================================
``id``     a unique key (results are matched and resumed by it)
``audio``  the audio to score (empty when ``hierspeech2 evaluate --run`` makes it)
``text``   what the audio should say (TTS input; for VC, the source's transcript): WER/CER
``prompt`` the voice prompt (TTS, VC): speaker similarity is measured against it
``source`` the input of VC or super-resolution
``reference`` ground-truth audio of the same utterance: log-spectral distance and F0 metrics
========== ===============================================================================

Relative paths are relative to the job list's folder, so a list and its audio move together.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

__all__ = ["COLUMNS", "EvaluationJob", "read_jobs", "write_jobs"]


@dataclass(frozen=True)
class EvaluationJob:
    """One utterance to score; every path is absolute once read (see :func:`read_jobs`)."""

    id: str
    audio: Path | None = None
    text: str | None = None
    prompt: Path | None = None
    source: Path | None = None
    reference: Path | None = None

    def with_audio(self, audio: Path) -> EvaluationJob:
        return replace(self, audio=audio)


COLUMNS = tuple(field.name for field in fields(EvaluationJob))
PATH_COLUMNS = ("audio", "prompt", "source", "reference")


def read_jobs(path: str | os.PathLike[str]) -> list[EvaluationJob]:
    """Read a job list; relative paths become paths under the list's folder.

    Raises:
        ValueError: no ``id`` column, an unknown column, a duplicate or empty id (with its line).
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = reader.fieldnames or []
        if "id" not in header:
            raise ValueError(f"{path}: a job list needs an 'id' column; its header is {header}")
        unknown = [name for name in header if name not in COLUMNS]
        if unknown:
            raise ValueError(f"{path}: unknown column(s) {unknown}; the columns are {list(COLUMNS)}")
        jobs: list[EvaluationJob] = []
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            if None in row or any(value is None for value in row.values()):
                raise ValueError(f"{path}:{line}: expected {len(header)} tab-separated fields")
            key = row["id"].strip()
            if not key:
                raise ValueError(f"{path}:{line}: empty id")
            if key in seen:
                raise ValueError(f"{path}:{line}: id {key!r} appears twice")
            seen.add(key)
            values: dict[str, object] = {"id": key}
            for name in header:
                value = row[name].strip()
                if name == "id" or not value:
                    continue
                values[name] = (path.parent / value).resolve() if name in PATH_COLUMNS else value
            jobs.append(EvaluationJob(**values))  # type: ignore[arg-type]
    return jobs


def write_jobs(
    jobs: Iterable[EvaluationJob],
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
) -> Path:
    """Write ``jobs`` as a job list at ``path``; paths are written relative to its folder when inside it.

    ``columns`` defaults to ``id`` plus every column that some job fills.
    """
    path = Path(path)
    jobs = list(jobs)
    if columns is None:
        columns = [name for name in COLUMNS if name == "id" or any(getattr(job, name) for job in jobs)]
    for job in jobs:
        for name in ("id", "text"):
            value = getattr(job, name) or ""
            if "\t" in value or "\n" in value:
                raise ValueError(f"job {job.id!r}: {name} cannot hold a tab or a newline")
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.write("\t".join(columns) + "\n")
        for job in jobs:
            cells = []
            for name in columns:
                value = getattr(job, name)
                if value is None:
                    cells.append("")
                elif name in PATH_COLUMNS:
                    cells.append(_relative(Path(value).resolve(), folder))
                else:
                    cells.append(str(value))
            handle.write("\t".join(cells) + "\n")
    return path


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)
