"""Registry entries ⇄ the Hugging Face cache: what is cached, what is missing, download and verify.

A file is fetched with ``huggingface_hub.hf_hub_download`` and its sha256 checked against the
registry before anything is deserialised; a cached file whose sha256 the registry pins is used
without asking the Hub. :func:`ensure_available` decides in seconds, before any download, whether
the missing checkpoints can be downloaded at all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .hub import (
    TRANSFORMERS_WEIGHTS,
    ChecksumError,
    DownloadError,
    enumerate_names,
    hub_download,
    in_cache,
    remove_from_cache,
    require_downloadable,
    sha256_of,
    transformers_cached,
)
from .schema import Entry, Registry, resolve_registry

log = logging.getLogger(__name__)


def model_entries(entry: Entry, registry: Registry) -> list[Entry]:
    """The single-checkpoint entries of ``entry``: itself, or a pipeline's components."""
    return [registry[name] for name in entry.components.values()] if entry.is_pipeline else [entry]


def native_config_name(filename: str) -> str:
    """The ``config.json`` next to a native ``model.safetensors`` in a Hub repository."""
    return f"{filename.rpartition('/')[0]}/config.json".lstrip("/")


def entry_cached(entry: Entry, revision: str | None = None) -> bool:
    """Whether every file of a single-checkpoint entry is in the Hugging Face cache."""
    source = entry.source
    location = {"revision": revision or source.revision, "repo_type": source.repo_type}
    if entry.format == "transformers":
        return transformers_cached(source.repo_id, **location)
    if entry.format == "native" and not in_cache(
        source.repo_id, native_config_name(source.filename), **location
    ):
        return False
    return in_cache(source.repo_id, source.filename, **location)


def _verify(path: Path, entry: Entry, revision: str) -> None:
    """Check the sha256 of a downloaded file; a bad file is removed from the cache, then reported."""
    if entry.sha256 is None:
        return
    if revision != entry.source.revision:
        log.warning(
            "%s: the registry pins the sha256 of revision %r, not %r; the file is not verified",
            entry.name,
            entry.source.revision,
            revision,
        )
        return
    actual = sha256_of(path)
    if actual != entry.sha256:
        size = path.stat().st_size
        remove_from_cache(path)
        raise ChecksumError(
            f"{entry.source.describe()} ({entry.name}) failed verification: expected sha256 {entry.sha256} "
            f"({entry.size} bytes), got {actual} ({size} bytes). The file was removed from the cache; run "
            "again to download it afresh, and if it still differs the file changed upstream: report it"
        )


@dataclass(frozen=True)
class Fetched:
    """A single-checkpoint entry on disk."""

    entry: Entry
    path: Path  # the weights file (official/native) or the snapshot folder (transformers)


def fetch(entry: Entry, revision: str | None = None, local_files_only: bool = False) -> Fetched:
    """Download (or find in the cache) and verify the files of one single-checkpoint entry."""
    source = entry.source
    revision = revision or source.revision
    if entry.sha256 is not None and revision == source.revision and entry_cached(entry, revision):
        local_files_only = True  # the registry pins these bytes: a cached copy needs no revalidation
    kwargs = {
        "repo_type": source.repo_type,
        "revision": revision,
        "local_files_only": local_files_only,
        "command": f"hierspeech2 download {entry.name}",
    }
    if entry.format == "transformers":
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        config = hub_download(source.repo_id, "config.json", **kwargs)
        errors: list[DownloadError] = []
        for weights in TRANSFORMERS_WEIGHTS:
            try:
                hub_download(source.repo_id, weights, **kwargs)
                return Fetched(entry, config.parent)
            except DownloadError as error:
                if not isinstance(error.__cause__, EntryNotFoundError):
                    raise
                errors.append(error)
        offline = [error for error in errors if isinstance(error.__cause__, LocalEntryNotFoundError)]
        if offline:
            raise offline[0]
        raise DownloadError(
            f"{source.describe(revision=revision)} has none of {', '.join(TRANSFORMERS_WEIGHTS)}"
        )
    path = hub_download(source.repo_id, source.filename, **kwargs)
    _verify(path, entry, revision)
    if entry.format == "native":
        hub_download(source.repo_id, native_config_name(source.filename), **kwargs)
    return Fetched(entry, path)


def download(
    name: str,
    revision: str | None = None,
    *,
    registry: Registry | str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> list[Path]:
    """Fetch and verify the file(s) of a registry entry (all components of a pipeline) → local paths.

    Use it to fill the cache before going offline (``HF_HUB_OFFLINE=1``).
    """
    registry = resolve_registry(registry)
    entry = registry[name]
    if revision is not None and entry.is_pipeline:
        raise ValueError(
            f"{name} is a pipeline of several checkpoints; download its components to pick revisions"
        )
    ensure_available([name], registry=registry, revision=revision, local_files_only=local_files_only)
    return [fetch(part, revision, local_files_only).path for part in model_entries(entry, registry)]


def is_cached(name: str, registry: Registry | str | os.PathLike | None = None) -> bool:
    """Whether every file of a registry entry is in the Hugging Face cache (nothing is downloaded)."""
    return not missing_from_cache([name], registry=registry)


def missing_from_cache(
    names: Sequence[str],
    *,
    registry: Registry | str | os.PathLike | None = None,
    revision: str | None = None,
) -> list[str]:
    """The checkpoints of ``names`` missing from the Hugging Face cache (a pipeline: its components)."""
    registry = resolve_registry(registry)
    missing: list[str] = []
    for name in names:
        for part in model_entries(registry[name], registry):
            if part.name not in missing and not entry_cached(part, revision):
                missing.append(part.name)
    return missing


def ensure_available(
    names: Sequence[str],
    *,
    registry: Registry | str | os.PathLike | None = None,
    revision: str | None = None,
    local_files_only: bool = False,
    pipeline: str | None = None,
) -> None:
    """Return when every checkpoint of ``names`` is cached or the Hub answers, else raise DownloadError.

    Decided in seconds, before anything is downloaded: with ``HF_HUB_OFFLINE=1``, ``local_files_only``
    or a Hub that does not answer one HEAD request, the one-line message names every missing
    checkpoint and the ``hierspeech2 download`` command that fetches them; a missing part that is a
    component of ``pipeline`` (or of a pipeline in ``names``) is fetched by downloading that pipeline.
    """
    registry = resolve_registry(registry)
    missing = [registry[name] for name in missing_from_cache(names, registry=registry, revision=revision)]
    if not missing:
        return
    pipelines = [name for name in (pipeline, *names) if name in registry and registry[name].is_pipeline]
    words: list[str] = []
    for entry in missing:
        owner = next(
            (name for name in pipelines if entry.name in registry[name].components.values()), entry.name
        )
        if owner not in words:
            words.append(owner)
    command = "hierspeech2 download " + " ".join(words) + (f" --revision {revision}" if revision else "")
    sizes = [entry.size for entry in missing]
    total = None if None in sizes else sum(sizes)
    what = enumerate_names([entry.name for entry in missing]) + (
        "" if total is None else f" ({total / 1e6:.1f} MB)" if total < 1e7 else f" ({total / 1e6:.0f} MB)"
    )
    first = missing[0].source
    require_downloadable(
        what,
        command,
        repo_id=first.repo_id,
        filename="config.json" if missing[0].format == "transformers" else first.filename,
        repo_type=first.repo_type,
        revision=revision or first.revision,
        count=len(missing),
        local_files_only=local_files_only,
    )
