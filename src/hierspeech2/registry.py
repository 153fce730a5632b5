"""The checkpoint registry: ``checkpoints.yaml`` → download → verify → build.

``load_model(name_or_path)`` accepts
- a registry name (``list_models()``): the file is fetched with ``huggingface_hub.hf_hub_download``
  (its cache under ``HF_HOME``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, revisions, progress bar), its
  sha256 checked before anything is deserialised, and the model or pipeline built;
- a local official ``.pth`` (the family is read off its keys), a native folder
  (``config.json`` + ``model.safetensors``), a native ``model.safetensors`` or a transformers
  Wav2Vec2 folder;
- ``hf://owner/repo`` (a native checkpoint at the root of a Hub repo), ``hf://owner/repo/sub/folder``
  (native, in a sub-folder) or ``hf://owner/repo/path/file.pth`` (official).

The registry is the ``checkpoints.yaml`` packaged with hierspeech2, or the file named by
``$HIERSPEECH2_REGISTRY``; it is validated when read.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from .errors import CheckpointError, HierSpeechError

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

REGISTRY_ENV = "HIERSPEECH2_REGISTRY"
SCHEMA_VERSION = 1
HF_SCHEME = "hf://"
FORMATS = ("official", "native", "transformers")
REPO_TYPES = ("model", "space", "dataset")
MODEL_FAMILIES = ("backbone", "ttv", "speechsr", "mms", "denoiser")
PIPELINES = {  # family → (pipeline class in hierspeech2.pipelines, role → component family)
    "tts": (
        "TextToSpeech",
        {"ttv": "ttv", "backbone": "backbone", "speechsr": "speechsr", "denoiser": "denoiser"},
    ),
    "vc": (
        "VoiceConversion",
        {"backbone": "backbone", "semantic_encoder": "mms", "speechsr": "speechsr", "denoiser": "denoiser"},
    ),
}
OPTIONAL_ROLES = frozenset({"denoiser"})  # a pipeline without a prompt denoiser runs with denoise_ratio 0
_FAMILY_CLASSES = {
    "backbone": "HierSpeech2",
    "ttv": "TextToVec",
    "speechsr": "SpeechSR",
    "denoiser": "MPSENet",
}
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # transformers' own order of preference
_HASH_CHUNK = 1 << 20
# One HEAD request without retries decides whether the Hub answers before anything is downloaded:
# huggingface_hub's own backed-off retries take about half a minute to give up on a dead network.
HUB_PROBE_TIMEOUT_S = 5.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MODEL_FIELDS = {"family", "description", "license", "format", "source", "sha256", "size", "config"}
_PIPELINE_FIELDS = {"family", "description", "license", "components"}
_SOURCE_FIELDS = {"repo_id", "repo_type", "revision", "filename"}


class RegistryError(HierSpeechError, ValueError):
    """A malformed registry file or an unknown model name."""


class DownloadError(HierSpeechError, OSError):
    """A checkpoint that could not be fetched (no network, offline mode, missing repo or file, interrupted)."""


class ChecksumError(CheckpointError):
    """A downloaded file whose sha256 differs from the registry's; it has been removed from the cache."""


@dataclass(frozen=True)
class Source:
    """Where a checkpoint lives on the Hugging Face Hub."""

    repo_id: str
    repo_type: str = "model"
    revision: str = "main"
    filename: str | None = None

    def describe(self, filename: str | None = None, revision: str | None = None) -> str:
        """``repo_type/repo_id@revision:filename`` for messages."""
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        name = filename or self.filename
        return f"{prefix}{self.repo_id}@{revision or self.revision}" + (f":{name}" if name else "")


@dataclass(frozen=True)
class Entry:
    """One registry entry: a single checkpoint (``source``) or a pipeline of entries (``components``)."""

    name: str
    family: str
    description: str
    license: str
    format: str | None = None
    source: Source | None = None
    sha256: str | None = None
    size: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    components: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_pipeline(self) -> bool:
        return self.family in PIPELINES


class Registry:
    """Validated registry entries by name, in file order."""

    def __init__(self, entries: Mapping[str, Entry], origin: str = "registry") -> None:
        self.entries = dict(entries)
        self.origin = origin

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Registry:
        """Read and validate a ``checkpoints.yaml``."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise RegistryError(f"cannot read the checkpoint registry {path}: {error}") from error
        except yaml.YAMLError as error:
            raise RegistryError(f"{path} is not valid YAML: {error}") from error
        return cls.from_dict(data, origin=str(path))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "registry") -> Registry:
        """Validate a parsed registry (``{"schema_version": 1, "models": {name: entry}}``)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("models"), Mapping):
            raise RegistryError(f"{origin}: expected a mapping with a 'models' mapping at the top level")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise RegistryError(
                f"{origin}: schema_version {version!r} is not supported (this hierspeech2 reads {SCHEMA_VERSION})"
            )
        entries = {}
        for name, raw in data["models"].items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
                raise RegistryError(f"{origin}: entry name {name!r} must be letters, digits, '.', '_' or '-'")
            entries[name] = _parse_entry(name, raw, origin)
        for entry in entries.values():
            for role, component in entry.components.items():
                wanted = PIPELINES[entry.family][1][role]
                if component not in entries:
                    _invalid(origin, entry.name, f"components.{role}", f"no entry named {component!r}")
                if entries[component].family != wanted:
                    _invalid(
                        origin,
                        entry.name,
                        f"components.{role}",
                        f"{component!r} is a {entries[component].family} entry, expected a {wanted} entry",
                    )
        return cls(entries, origin)

    def names(self, family: str | None = None) -> list[str]:
        return [name for name, entry in self.entries.items() if family is None or entry.family == family]

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def __getitem__(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            raise RegistryError(_unknown_name_message(name, list(self.entries))) from None


def _invalid(origin: str, name: str, field_name: str, problem: str) -> None:
    raise RegistryError(f"{origin}: entry {name!r}, field {field_name!r}: {problem}")


def _parse_entry(name: str, raw: Any, origin: str) -> Entry:
    if not isinstance(raw, Mapping):
        raise RegistryError(f"{origin}: entry {name!r} must be a mapping, got {type(raw).__name__}")
    family = raw.get("family")
    if not isinstance(family, str) or (family not in MODEL_FAMILIES and family not in PIPELINES):
        _invalid(
            origin, name, "family", f"got {family!r}, expected one of {MODEL_FAMILIES + tuple(PIPELINES)}"
        )
    allowed = _PIPELINE_FIELDS if family in PIPELINES else _MODEL_FIELDS
    unknown = sorted((key for key in raw if key not in allowed), key=str)  # YAML keys may be ints or null
    if unknown:
        _invalid(origin, name, str(unknown[0]), f"unknown field (allowed: {', '.join(sorted(allowed))})")
    for text_field in ("description", "license"):
        if not isinstance(raw.get(text_field), str) or not raw[text_field].strip():
            _invalid(origin, name, text_field, "required, a non-empty string")
    common = {"name": name, "family": family, "description": raw["description"], "license": raw["license"]}
    if family in PIPELINES:
        roles = PIPELINES[family][1]
        components = raw.get("components")
        required = set(roles) - OPTIONAL_ROLES
        if not isinstance(components, Mapping) or not required <= set(components) <= set(roles):
            _invalid(
                origin,
                name,
                "components",
                f"required, a mapping with the roles {sorted(required)} "
                f"(optional: {sorted(set(roles) & OPTIONAL_ROLES)})",
            )
        for role, component in components.items():
            if not isinstance(component, str):
                _invalid(origin, name, f"components.{role}", "must be an entry name")
        return Entry(**common, components=MappingProxyType(dict(components)))

    fmt = raw.get("format")
    if fmt not in FORMATS:
        _invalid(origin, name, "format", f"got {fmt!r}, expected one of {FORMATS}")
    source = _parse_source(name, raw.get("source"), fmt, origin)
    sha256, size = raw.get("sha256"), raw.get("size")
    if fmt != "transformers" or sha256 is not None:
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            _invalid(origin, name, "sha256", f"expected 64 lowercase hex digits, got {sha256!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            _invalid(
                origin, name, "size", f"expected the file size in bytes (a positive integer), got {size!r}"
            )
    config = raw.get("config", {})
    if not isinstance(config, Mapping) or not all(isinstance(key, str) for key in config):
        _invalid(origin, name, "config", "must be a mapping of constructor arguments")
    config = {key: _as_tuples(value) for key, value in config.items()}
    return Entry(
        **common, format=fmt, source=source, sha256=sha256, size=size, config=MappingProxyType(config)
    )


def _parse_source(name: str, raw: Any, fmt: str, origin: str) -> Source:
    if not isinstance(raw, Mapping):
        _invalid(origin, name, "source", "required, a mapping with repo_id, repo_type, revision, filename")
    unknown = sorted((key for key in raw if key not in _SOURCE_FIELDS), key=str)
    if unknown:
        _invalid(
            origin,
            name,
            f"source.{unknown[0]}",
            f"unknown field (allowed: {', '.join(sorted(_SOURCE_FIELDS))})",
        )
    repo_id = raw.get("repo_id")
    if not isinstance(repo_id, str) or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo_id):
        _invalid(origin, name, "source.repo_id", f"expected 'owner/name', got {repo_id!r}")
    repo_type = raw.get("repo_type", "model")
    if repo_type not in REPO_TYPES:
        _invalid(origin, name, "source.repo_type", f"got {repo_type!r}, expected one of {REPO_TYPES}")
    revision = raw.get("revision", "main")
    if not isinstance(revision, str) or not revision:
        _invalid(origin, name, "source.revision", f"expected a branch, tag or commit hash, got {revision!r}")
    filename = raw.get("filename")
    if fmt == "transformers":
        if filename is not None:
            _invalid(
                origin, name, "source.filename", "not used by transformers entries (the repo is read whole)"
            )
    elif not isinstance(filename, str) or not filename or filename.startswith("/"):
        _invalid(origin, name, "source.filename", f"required, a path inside the repo, got {filename!r}")
    elif fmt == "native" and not filename.endswith(".safetensors"):
        _invalid(
            origin, name, "source.filename", f"a native entry names its .safetensors file, got {filename!r}"
        )
    return Source(repo_id=repo_id, repo_type=repo_type, revision=revision, filename=filename)


def _as_tuples(value: Any) -> Any:
    """YAML/JSON lists → tuples: our constructors take tuples, never lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def _unknown_name_message(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (
        f"unknown model {name!r}: {hint}Known models: {', '.join(known)} (`hierspeech2 models` lists them). "
        "A local checkpoint file or folder, or hf://owner/repo, also works."
    )


def default_registry() -> Registry:
    """The registry named by ``$HIERSPEECH2_REGISTRY``, else the ``checkpoints.yaml`` packaged with hierspeech2."""
    override = os.environ.get(REGISTRY_ENV)
    if override:
        return Registry.from_file(override)
    packaged = resources.files("hierspeech2") / "checkpoints.yaml"
    with resources.as_file(packaged) as path:
        return Registry.from_file(path)


def _registry(registry: Registry | str | os.PathLike | None) -> Registry:
    if registry is None:
        return default_registry()
    return registry if isinstance(registry, Registry) else Registry.from_file(registry)


def list_models(family: str | None = None, registry: Registry | str | os.PathLike | None = None) -> list[str]:
    """Names ``load_model`` accepts, in registry order; ``family`` filters (e.g. ``"speechsr"``, ``"tts"``)."""
    return _registry(registry).names(family)


# ----------------------------------------------------------------------------------------- download


def _hub_constants():
    from huggingface_hub import constants

    return constants


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network exception types of whichever HTTP client this huggingface_hub uses."""
    errors: list[type[BaseException]] = [OSError]
    for module_name, attribute in (
        ("httpx2", "HTTPError"),
        ("httpx", "HTTPError"),
        ("requests", "RequestException"),
    ):
        module = sys.modules.get(module_name)
        if module is not None and isinstance(getattr(module, attribute, None), type):
            errors.append(getattr(module, attribute))
    return tuple(errors)


def _offline_advice(what: str, name: str | None) -> str:
    constants = _hub_constants()
    prefetch = f"hierspeech2 download {name}" if name else "hierspeech2 download NAME"
    if constants.HF_HUB_OFFLINE:
        return (
            f"{what} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1 forbids "
            f"downloading it. Unset HF_HUB_OFFLINE to download it, or fetch it beforehand with `{prefetch}` "
            "(on a machine with network, then copy its HF_HOME here)"
        )
    return (
        f"cannot reach {constants.ENDPOINT} to download {what}, and it is not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}). Check the network, or point HF_ENDPOINT at a reachable Hub mirror, or "
        f"pre-download with `{prefetch}` on a machine with network, copy its HF_HOME here and set HF_HUB_OFFLINE=1"
    )


def _hub_download(
    repo_id: str,
    filename: str,
    *,
    repo_type: str = "model",
    revision: str = "main",
    local_files_only: bool = False,
    name: str | None = None,
) -> Path:
    """``hf_hub_download`` with its errors turned into one-line :class:`DownloadError` messages."""
    from huggingface_hub import errors as hub_errors
    from huggingface_hub import hf_hub_download

    what = Source(repo_id, repo_type, revision).describe(filename)
    try:
        return Path(
            hf_hub_download(
                repo_id=repo_id,
                filename=filename,
                repo_type=repo_type,
                revision=revision,
                local_files_only=local_files_only,
            )
        )
    except hub_errors.LocalEntryNotFoundError as error:
        if local_files_only and not _hub_constants().HF_HUB_OFFLINE:
            raise DownloadError(
                f"{what} is not in the Hugging Face cache and local_files_only=True"
            ) from error
        raise DownloadError(_offline_advice(what, name)) from error
    except hub_errors.GatedRepoError as error:
        raise DownloadError(
            f"{what}: the repository is gated; accept its terms on the Hub and log in (`hf auth login`)"
        ) from error
    except hub_errors.RepositoryNotFoundError as error:
        raise DownloadError(
            f"{what}: repository not found on {_hub_constants().ENDPOINT} (or private: log in with `hf auth login`)"
        ) from error
    except hub_errors.RevisionNotFoundError as error:
        raise DownloadError(
            f"{what}: revision {revision!r} not found; pass an existing branch, tag or commit"
        ) from error
    except hub_errors.EntryNotFoundError as error:
        raise DownloadError(f"{what}: no such file in the repository at revision {revision!r}") from error
    except hub_errors.HfHubHTTPError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DownloadError(f"downloading {what} failed: {first_line}") from error
    except _transport_errors() as error:
        raise DownloadError(
            f"downloading {what} was interrupted ({type(error).__name__}: {error}); nothing partial was kept in "
            "the cache: run the same command again to retry"
        ) from error


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _remove_from_cache(path: Path) -> None:
    """Delete a cached file: the snapshot entry and the blob it points to."""
    blob = Path(os.path.realpath(path))
    for target in {path, blob}:
        try:
            target.unlink()
        except FileNotFoundError:
            pass


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
        _remove_from_cache(path)
        raise ChecksumError(
            f"{entry.source.describe()} ({entry.name}) failed verification: expected sha256 {entry.sha256} "
            f"({entry.size} bytes), got {actual} ({size} bytes). The file was removed from the cache; run again to "
            "download it afresh, and if it still differs the file changed upstream: report it"
        )


@dataclass(frozen=True)
class _Fetched:
    entry: Entry
    path: Path  # the weights file (official/native) or the snapshot folder (transformers)


def _fetch(entry: Entry, revision: str | None = None, local_files_only: bool = False) -> _Fetched:
    """Download (or find in the cache) and verify the files of one model entry."""
    source = entry.source
    revision = revision or source.revision
    if entry.sha256 is not None and revision == source.revision and _entry_cached(entry, revision):
        local_files_only = True  # the registry pins these bytes: a cached copy needs no revalidation
    kwargs = {
        "repo_type": source.repo_type,
        "revision": revision,
        "local_files_only": local_files_only,
        "name": entry.name,
    }
    if entry.format == "transformers":
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        config = _hub_download(source.repo_id, "config.json", **kwargs)
        errors: list[DownloadError] = []
        for weights in _TRANSFORMERS_WEIGHTS:
            try:
                _hub_download(source.repo_id, weights, **kwargs)
                return _Fetched(entry, config.parent)
            except DownloadError as error:
                if not isinstance(error.__cause__, EntryNotFoundError):
                    raise
                errors.append(error)
        offline = [error for error in errors if isinstance(error.__cause__, LocalEntryNotFoundError)]
        if offline:
            raise offline[0]
        raise DownloadError(
            f"{source.describe(revision=revision)} has none of {', '.join(_TRANSFORMERS_WEIGHTS)}"
        )
    path = _hub_download(source.repo_id, source.filename, **kwargs)
    _verify(path, entry, revision)
    if entry.format == "native":
        _hub_download(source.repo_id, _native_config_name(source.filename), **kwargs)
    return _Fetched(entry, path)


def _model_entries(entry: Entry, registry: Registry) -> list[Entry]:
    return [registry[name] for name in entry.components.values()] if entry.is_pipeline else [entry]


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
    registry = _registry(registry)
    entry = registry[name]
    if revision is not None and entry.is_pipeline:
        raise ValueError(
            f"{name} is a pipeline of several checkpoints; download its components to pick revisions"
        )
    ensure_available([name], registry=registry, revision=revision, local_files_only=local_files_only)
    return [_fetch(part, revision, local_files_only).path for part in _model_entries(entry, registry)]


def is_cached(name: str, registry: Registry | str | os.PathLike | None = None) -> bool:
    """Whether every file of a registry entry is in the Hugging Face cache (nothing is downloaded)."""
    return not missing_from_cache([name], registry=registry)


def _in_cache(repo_id: str, filename: str, revision: str, repo_type: str = "model") -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision, repo_type=repo_type)
    return isinstance(found, str)


def _native_config_name(filename: str) -> str:
    return f"{filename.rpartition('/')[0]}/config.json".lstrip("/")


def _entry_cached(entry: Entry, revision: str | None = None) -> bool:
    source = entry.source
    revision = revision or source.revision

    def cached(filename: str) -> bool:
        return _in_cache(source.repo_id, filename, revision, source.repo_type)

    if entry.format == "transformers":
        return cached("config.json") and any(cached(weights) for weights in _TRANSFORMERS_WEIGHTS)
    if entry.format == "native" and not cached(_native_config_name(source.filename)):
        return False
    return cached(source.filename)


def missing_from_cache(
    names: Sequence[str],
    *,
    registry: Registry | str | os.PathLike | None = None,
    revision: str | None = None,
) -> list[str]:
    """The checkpoints of ``names`` (pipelines count as their components) not in the Hugging Face cache, in order."""
    registry = _registry(registry)
    missing: list[str] = []
    for name in names:
        for part in _model_entries(registry[name], registry):
            if part.name not in missing and not _entry_cached(part, revision):
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
    """Return when every checkpoint of ``names`` is cached or the Hub answers; else raise :class:`DownloadError`.

    Decided in seconds, before anything is downloaded: with ``HF_HUB_OFFLINE=1``, ``local_files_only``
    or a Hub that does not answer one HEAD request, the one-line message names every missing
    checkpoint and the ``hierspeech2 download`` command that fetches them; a missing part that is a
    component of ``pipeline`` (or of a pipeline in ``names``) is fetched by downloading that pipeline.
    """
    registry = _registry(registry)
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
    what = _enumerate([entry.name for entry in missing]) + (
        "" if total is None else f" ({total / 1e6:.1f} MB)" if total < 1e7 else f" ({total / 1e6:.0f} MB)"
    )
    first = missing[0]
    probe_file = "config.json" if first.format == "transformers" else first.source.filename
    _require_downloadable(
        what,
        len(missing),
        Source(first.source.repo_id, first.source.repo_type, revision or first.source.revision, probe_file),
        command,
        local_files_only,
    )


def ensure_hub_files(
    repo_id: str,
    filenames: Sequence[str],
    *,
    revision: str | None = None,
    repo_type: str = "model",
    local_files_only: bool = False,
) -> None:
    """Return when these files of a Hub repository are cached or the Hub answers; else raise :class:`DownloadError`.

    As :func:`ensure_available`, for files outside the registry: the one-line message names the
    missing files and the ``hf download`` command that fetches them.
    """
    resolved = revision or "main"
    missing = [name for name in filenames if not _in_cache(repo_id, name, resolved, repo_type)]
    if not missing:
        return
    source = Source(repo_id, repo_type, resolved)
    options = (f" --repo-type {repo_type}" if repo_type != "model" else "") + (
        f" --revision {revision}" if revision else ""
    )
    command = f"hf download {repo_id} {' '.join(missing)}{options}"
    what = _enumerate([source.describe(name) for name in missing])
    probe = Source(repo_id, repo_type, resolved, missing[0])
    _require_downloadable(what, len(missing), probe, command, local_files_only)


def _enumerate(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _require_downloadable(what: str, count: int, probe: Source, command: str, local_files_only: bool) -> None:
    """Raise a one-line :class:`DownloadError` unless the Hub may be asked and answers a HEAD for ``probe``."""
    from huggingface_hub import errors as hub_errors
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    constants = _hub_constants()
    verb, pronoun = ("is", "it") if count == 1 else ("are", "them")
    cache = constants.HF_HUB_CACHE
    if constants.HF_HUB_OFFLINE:
        raise DownloadError(
            f"{what} {verb} not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE=1 forbids downloading "
            f"{pronoun}: run `{command}` on a machine with network and copy its HF_HOME here, or unset HF_HUB_OFFLINE"
        )
    if local_files_only:
        raise DownloadError(
            f"{what} {verb} not in the Hugging Face cache ({cache}) and local_files_only=True: run `{command}` first"
        )
    url = hf_hub_url(probe.repo_id, probe.filename, repo_type=probe.repo_type, revision=probe.revision)
    try:
        get_hf_file_metadata(url, timeout=HUB_PROBE_TIMEOUT_S)
    except hub_errors.HfHubHTTPError:
        return  # the Hub answered (a missing file, a gated repo ...): the download itself says what is wrong
    except _transport_errors() as error:
        reason = " ".join(str(error).split()) or "no answer"
        raise DownloadError(
            f"cannot reach {constants.ENDPOINT} ({type(error).__name__}: {reason}) to download {what}, which "
            f"{verb} not in the Hugging Face cache ({cache}): check the network or point HF_ENDPOINT at a reachable "
            f"Hub mirror, or run `{command}` on a machine with network, copy its HF_HOME here and set HF_HUB_OFFLINE=1"
        ) from error


# -------------------------------------------------------------------------------------------- build


def family_class(family: str) -> type:
    """The class that builds a model family (``"backbone"`` → ``HierSpeech2``, ``"mms"`` → ``SemanticEncoder`` …)."""
    if family == "mms":
        from .ssl import SemanticEncoder

        return SemanticEncoder
    if family not in _FAMILY_CLASSES:
        raise CheckpointError(
            f"hierspeech2 has no {family} model yet; `hierspeech2 download` can still fetch its checkpoint"
        )
    from . import models

    return getattr(models, _FAMILY_CLASSES[family])


def _class_by_name(class_name: str, source: str) -> type:
    for family, known in _FAMILY_CLASSES.items():
        if known == class_name:
            return family_class(family)
    raise CheckpointError(
        f"{source} holds a {class_name!r}, which hierspeech2 does not know ({', '.join(_FAMILY_CLASSES.values())})"
    )


def official_family(state: Mapping[str, Any], source: str = "checkpoint") -> str:
    """Which released model an official state dict belongs to, from its top-level key names."""
    prefixes = {key.split(".", 1)[0] for key in state}
    if "enc_p_l" in prefixes:
        return "backbone"
    if "w2v_decoder" in prefixes:
        return "ttv"
    if prefixes == {"dec"}:
        return "speechsr"
    if {"dense_encoder", "mask_decoder", "phase_decoder"} <= prefixes:
        return "denoiser"
    raise CheckpointError(
        f"cannot tell which model {source} is: its top-level keys ({', '.join(sorted(prefixes)[:8])}) match no "
        "released HierSpeech2 backbone (enc_p_l.*), TextToVec (w2v_decoder.*), SpeechSR (dec.* only) "
        "or MP-SENet denoiser (dense_encoder.*)"
    )


def _build_official(
    path: Path, family: str | None = None, config: Mapping[str, Any] | None = None
) -> nn.Module:
    from .checkpoint import load_official_file

    state = load_official_file(path)
    family = family or official_family(state, str(path))
    cls = family_class(family)
    if config:
        _check_config(cls, config, str(path))
    return cls.from_official(state, config=dict(config) if config else None)


def _check_config(cls: type, config: Mapping[str, Any], source: str) -> None:
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(config) - set(parameters))
    if unknown:
        raise RegistryError(
            f"{source}: config key(s) {', '.join(unknown)} are not arguments of {cls.__name__}"
        )


def _build_native(folder: Path) -> nn.Module:
    from .checkpoint import NATIVE_CLASS_KEY, NATIVE_CONFIG_FILE

    config_path = folder / NATIVE_CONFIG_FILE
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {config_path}: {error}") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object, got {type(config).__name__}")
    if config.get("model_type") == "wav2vec2":
        from .ssl import SemanticEncoder

        try:
            return SemanticEncoder.from_pretrained(folder)
        except (OSError, ValueError, TypeError, RuntimeError) as error:
            if isinstance(error, HierSpeechError):
                raise
            raise CheckpointError(f"cannot load the Wav2Vec2 checkpoint in {folder}: {error}") from error
    class_name = config.get(NATIVE_CLASS_KEY)
    if class_name is None:
        raise CheckpointError(
            f"{config_path} names no model class ({NATIVE_CLASS_KEY!r}); it was not written by hierspeech2's save_pretrained"
        )
    return _class_by_name(class_name, str(folder)).from_pretrained(folder)


def _build_entry(fetched: _Fetched) -> nn.Module:
    entry = fetched.entry
    if entry.format == "official":
        return _build_official(fetched.path, entry.family, entry.config)
    if entry.format == "native":
        model = _build_native(fetched.path.parent)
        expected = _FAMILY_CLASSES[entry.family]
        if type(model).__name__ != expected:
            raise CheckpointError(
                f"{entry.name} is registered as {entry.family} but holds a {type(model).__name__}"
            )
        return model
    from .ssl import SemanticEncoder

    return SemanticEncoder.from_pretrained(fetched.path, **dict(entry.config))


def _load_local(path: Path) -> nn.Module:
    if path.is_dir():
        if (path / "config.json").is_file():
            return _build_native(path)
        raise CheckpointError(
            f"{path} is a folder without config.json: expected a native checkpoint (config.json + "
            "model.safetensors) or a transformers Wav2Vec2 folder"
        )
    if path.suffix == ".safetensors":
        if (path.parent / "config.json").is_file():
            return _build_native(path.parent)
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as file:
                class_name = (file.metadata() or {}).get("model")
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"cannot read {path} as safetensors: {error}") from error
        cls = _class_by_name(class_name, str(path)) if class_name else None
        if cls is None or not hasattr(cls, "from_native"):
            raise CheckpointError(f"{path} is a bare safetensors file; put its config.json next to it")
        return cls.from_native(path)
    return _build_official(path)


def _load_hf_uri(uri: str, revision: str | None, local_files_only: bool) -> nn.Module:
    parts = uri[len(HF_SCHEME) :].strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise RegistryError(
            f"{uri!r}: expected hf://owner/repo, hf://owner/repo/sub/folder or hf://owner/repo/file.pth"
        )
    repo_id, inner = "/".join(parts[:2]), "/".join(parts[2:])
    kwargs = {"revision": revision or "main", "local_files_only": local_files_only}
    is_official = bool(inner) and not inner.endswith(".safetensors") and bool(Path(inner).suffix)
    folder = inner.rpartition("/")[0] if inner.endswith(".safetensors") else inner
    prefix = f"{folder}/" if folder else ""
    files = [inner] if is_official else [f"{prefix}config.json", f"{prefix}model.safetensors"]
    ensure_hub_files(repo_id, files, revision=revision, local_files_only=local_files_only)
    if is_official:
        return _build_official(_hub_download(repo_id, inner, **kwargs))
    _hub_download(repo_id, f"{prefix}config.json", **kwargs)
    weights = _hub_download(repo_id, f"{prefix}model.safetensors", **kwargs)
    return _build_native(weights.parent)


def _place(module: nn.Module, device: str | torch.device | None, dtype: torch.dtype | None) -> nn.Module:
    if device is None and dtype is None:
        return module
    return module.to(device=device, dtype=dtype)


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    revision: str | None = None,
    *,
    registry: Registry | str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> Any:
    """A ready model (eval mode) or pipeline from a registry name, a local checkpoint or ``hf://owner/repo``.

    ``revision`` picks a branch, tag or commit of the entry's repository (the registry's sha256
    is checked only at the registry's own revision). ``local_files_only`` never touches the
    network, like ``HF_HUB_OFFLINE=1``. Pipelines (``hierspeech2-tts``, ``hierspeech2-vc``) are
    built from their components, each downloaded and verified.
    """
    if isinstance(name_or_path, str) and not name_or_path.strip():
        raise RegistryError(
            "load_model needs a model name, a checkpoint path or hf://owner/repo; got an empty string"
        )
    if isinstance(name_or_path, str) and name_or_path.startswith(HF_SCHEME):
        return _place(_load_hf_uri(name_or_path, revision, local_files_only), device, dtype).eval()
    resolved = _registry(registry)
    if isinstance(name_or_path, str) and name_or_path in resolved:
        entry = resolved[name_or_path]
        for part in _model_entries(entry, resolved):
            family_class(part.family)  # fail before downloading anything we cannot build
        if revision is not None and entry.is_pipeline:
            raise ValueError(
                f"{entry.name} is a pipeline of several checkpoints; load its components to pick revisions"
            )
        ensure_available(
            [name_or_path], registry=resolved, revision=revision, local_files_only=local_files_only
        )
        if not entry.is_pipeline:
            return _place(_build_entry(_fetch(entry, revision, local_files_only)), device, dtype).eval()
        parts = {
            role: _place(_build_entry(_fetch(resolved[name], None, local_files_only)), device, dtype).eval()
            for role, name in entry.components.items()
        }
        from . import pipelines

        return getattr(pipelines, PIPELINES[entry.family][0])(**parts)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return _place(_load_local(path), device, dtype).eval()
    if isinstance(name_or_path, str) and "/" not in name_or_path and os.sep not in name_or_path:
        raise RegistryError(_unknown_name_message(name_or_path, resolved.names()))
    raise CheckpointError(
        f"checkpoint not found: {path} (no such file or folder); for a Hub repository write hf://owner/repo"
    )
