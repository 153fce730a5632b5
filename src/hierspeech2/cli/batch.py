"""Batch files (``vc --batch``, ``tts --batch``) and the per-item report of many-item runs."""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import HierSpeechError
from .common import BatchFailed, check_output, one_line, require_audio

__all__ = ["BATCH_HELP", "Row", "batch_jobs", "read_batch", "read_jobs", "report", "run_batch"]

log = logging.getLogger("hierspeech2")

BATCH_HELP = """Batch files: tab-separated, one job per line, an optional header line, '#' comments; relative
paths are relative to the batch file. A failing row is reported and skipped; the exit code is 1
if any row failed.
"""
"""The batch-file paragraph of ``vc --help`` and ``tts --help``."""


@dataclass(frozen=True)
class Row:
    """One job of a batch file: its line number and its cells."""

    line: int
    cells: tuple[str, ...]


def read_batch(path: Path, columns: tuple[str, ...]) -> list[Row | HierSpeechError]:
    """Rows of a tab-separated batch file; a malformed row becomes an error for that row only."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HierSpeechError(f"batch file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise HierSpeechError(f"cannot read batch file {path}: {error}") from None
    rows: list[Row | HierSpeechError] = []
    lines = [
        (n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")
    ]
    for number, line in lines:
        cells = [cell.strip() for cell in next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))]
        if not rows and [c.lower() for c in cells] == list(columns):
            continue  # header
        if len(cells) != len(columns) or not all(cells):
            rows.append(
                HierSpeechError(
                    f"{path.name} line {number}: expected {len(columns)} non-empty tab-separated columns "
                    f"({', '.join(columns)}), got {len(cells)}"
                )
            )
            continue
        rows.append(Row(number, tuple(cells)))
    if not rows:
        raise HierSpeechError(f"batch file {path} has no jobs (expected rows of: {', '.join(columns)})")
    return rows


def _relative_to(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def batch_jobs(
    batch: Path, rows: Sequence[Row | HierSpeechError], path_columns: tuple[int, ...]
) -> tuple[list[tuple], list[str], dict[int, HierSpeechError]]:
    """Jobs from a batch file's rows, their labels, and the rows that failed already (by index).

    The cells of ``path_columns`` become paths, relative ones resolved against the batch file's folder.
    """
    jobs: list[tuple] = []
    labels: list[str] = []
    early: dict[int, HierSpeechError] = {}
    for index, row in enumerate(rows):
        if isinstance(row, HierSpeechError):
            labels.append(batch.name)
            early[index] = row
            continue
        labels.append(f"{batch.name} line {row.line}")
        jobs.append(
            tuple(
                _relative_to(batch.parent, cell) if column in path_columns else cell
                for column, cell in enumerate(row.cells)
            )
        )
    return jobs, labels, early


def report(command: str, labels: Sequence[str], results: Sequence, early: dict[int, HierSpeechError]) -> None:
    """One line per failed item, a summary, and :class:`BatchFailed` if anything failed.

    ``results`` are those of the items not in ``early`` (failed before the run), in order.
    """
    failed = 0
    remaining = iter(results)
    for index, label in enumerate(labels):
        error = early.get(index)
        if error is None:
            result = next(remaining)
            if result.ok:
                log.info("wrote %s", result.path)
                continue
            error = result.error
        failed += 1
        print(f"hierspeech2 {command}: {label}: error: {one_line(error)}", file=sys.stderr)
    if failed:
        raise BatchFailed(f"{failed} of {len(labels)} items failed (reported above); the others were written")
    log.info("all %d items written", len(labels))


def read_jobs(
    batch: Path | None, columns: tuple[str, ...], inputs: Sequence[tuple[Path, str]], output: Path
) -> list[Row | HierSpeechError] | None:
    """The rows of the ``--batch`` file; without one, ``None`` once the single job's files check out.

    ``inputs`` are the single job's audio files, each with what to call it in a message.
    """
    if batch is not None:
        return read_batch(batch, columns)
    for path, what in inputs:
        require_audio(path, what)
    check_output(output)
    return None


def run_batch(
    command: str,
    batch: Path,
    rows: Sequence[Row | HierSpeechError],
    path_columns: tuple[int, ...],
    run_many: Callable[[list[tuple]], Sequence],
) -> None:
    """Run a batch file's jobs with ``run_many`` and :func:`report` on every row."""
    jobs, labels, early = batch_jobs(batch, rows, path_columns)
    report(command, labels, run_many(jobs), early)
