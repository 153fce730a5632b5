"""``checkpoints.yaml``: the typed model of the checkpoint registry, validated with pydantic.

A registry file is ``{"schema_version": 1, "models": {name: entry}}``. An entry is a single
checkpoint (:class:`ModelEntry`: family, format, Hub ``source``, sha256, size, constructor
``config``) or a pipeline of entries (:class:`PipelineEntry`: ``components``, role → entry name).
pydantic checks types and shapes, the validators below what types cannot say (a native entry names
a ``.safetensors`` file, a pipeline has its roles, components exist); the first problem is reported
as one :class:`RegistryError` line naming the file, the entry, the field and what was expected.
``RegistryFile.model_json_schema()`` is the file's JSON schema.

The registry is the ``checkpoints.yaml`` packaged with hierspeech2, or the file named by
``$HIERSPEECH2_REGISTRY``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from .._util import as_tuples
from ..errors import HierSpeechError

REGISTRY_ENV = "HIERSPEECH2_REGISTRY"
SchemaVersion = Literal[1]
ModelFamily = Literal["backbone", "ttv", "speechsr", "mms", "denoiser"]
PipelineFamily = Literal["tts", "vc"]
Format = Literal["official", "native", "transformers"]
RepoType = Literal["model", "space", "dataset"]
SCHEMA_VERSION = get_args(SchemaVersion)[0]
MODEL_FAMILIES = get_args(ModelFamily)
FORMATS = get_args(Format)
REPO_TYPES = get_args(RepoType)
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
FAMILIES = MODEL_FAMILIES + get_args(PipelineFamily)


class RegistryError(HierSpeechError, ValueError):
    """A malformed registry file or an unknown model name."""


class _Problem(ValueError):
    """What a validator found wrong with one field (of ``entry``, when the whole file was checked)."""

    def __init__(self, field: str, problem: str, entry: str | None = None) -> None:
        super().__init__(problem)
        self.field, self.problem, self.entry = field, problem, entry


def hub_path(
    repo_id: str, filename: str | None = None, *, repo_type: str = "model", revision: str = "main"
) -> str:
    """``repo_type/repo_id@revision:filename`` for messages (model repos have no prefix)."""
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{prefix}{repo_id}@{revision}" + (f":{filename}" if filename else "")


class _Strict(BaseModel):
    """No coercion (``"3"`` is not a size), no unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Source(_Strict):
    """Where a checkpoint lives on the Hugging Face Hub."""

    repo_id: str = Field(pattern=r"^[\w.-]+(/[\w.-]+)?$", description="'owner/name'")
    repo_type: RepoType = Field("model", description=f"one of {REPO_TYPES}")
    revision: str = Field("main", min_length=1, description="a branch, tag or commit hash")
    filename: str | None = Field(None, pattern=r"^[^/]", description="a path inside the repo")

    def describe(self, filename: str | None = None, revision: str | None = None) -> str:
        """``repo_type/repo_id@revision:filename`` for messages."""
        return hub_path(
            self.repo_id,
            filename or self.filename,
            repo_type=self.repo_type,
            revision=revision or self.revision,
        )


class Entry(_Strict):
    """What every registry entry has; its ``name`` is its key in the file."""

    family: str
    description: str = Field(pattern=r"\S", description="a non-empty string")
    license: str = Field(pattern=r"\S", description="a non-empty string")
    _name: str = PrivateAttr("")

    @property
    def name(self) -> str:
        return self._name

    @property
    def is_pipeline(self) -> bool:
        return self.family in PIPELINES


def _required(cls: type[BaseModel], field: str) -> str:
    return f"required, {cls.model_fields[field].description}"


class ModelEntry(Entry):
    """A single checkpoint: its family, format, Hub location, sha256 and size, and constructor arguments."""

    family: ModelFamily = Field(description=f"one of {FAMILIES}")
    format: Format = Field(description=f"one of {FORMATS}")
    source: Source = Field(description="a mapping with repo_id, repo_type, revision, filename")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="64 lowercase hex digits")
    size: int | None = Field(None, gt=0, description="the file size in bytes (a positive integer)")
    config: Mapping[str, Any] = Field(
        default_factory=dict, description="a mapping of constructor arguments (of the family's class)"
    )
    components: ClassVar[Mapping[str, str]] = MappingProxyType({})

    @field_validator("config", mode="after")
    @classmethod
    def _read_only_tuples(cls, config: Mapping[str, Any]) -> Mapping[str, Any]:
        return MappingProxyType(as_tuples(dict(config)))

    @model_validator(mode="after")
    def _check_file(self) -> ModelEntry:
        filename = self.source.filename
        if self.format == "transformers":
            if filename is not None:
                raise _Problem("source.filename", "not used by transformers entries (the repo is read whole)")
        elif filename is None:
            raise _Problem("source.filename", _required(Source, "filename"))
        elif self.format == "native" and not filename.endswith(".safetensors"):
            raise _Problem("source.filename", f"a native entry names its .safetensors file, got {filename!r}")
        if self.format != "transformers" or self.sha256 is not None:  # a transformers repo may go unpinned
            for name in ("sha256", "size"):
                if getattr(self, name) is None:
                    raise _Problem(name, _required(ModelEntry, name))
        return self


class PipelineEntry(Entry):
    """A pipeline built from other entries: ``components`` maps each role to an entry name."""

    family: PipelineFamily = Field(description=f"one of {FAMILIES}")
    components: Mapping[str, str] = Field(
        default_factory=dict, description="a mapping of role → entry name (see PIPELINES)"
    )
    format: ClassVar[None] = None
    source: ClassVar[None] = None
    sha256: ClassVar[None] = None
    size: ClassVar[None] = None
    config: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    @field_validator("components", mode="after")
    @classmethod
    def _read_only(cls, components: Mapping[str, str]) -> Mapping[str, str]:
        return MappingProxyType(dict(components))

    @model_validator(mode="after")
    def _check_roles(self) -> PipelineEntry:
        roles = set(PIPELINES[self.family][1])
        required = roles - OPTIONAL_ROLES
        if not required <= set(self.components) <= roles:
            optional = sorted(roles & OPTIONAL_ROLES)
            raise _Problem(
                "components", f"required, a mapping with the roles {sorted(required)} (optional: {optional})"
            )
        return self


def _entry_kind(raw: Any) -> str:
    family = raw.get("family") if isinstance(raw, Mapping) else getattr(raw, "family", None)
    return "pipeline" if isinstance(family, str) and family in PIPELINES else "model"


EntryName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
AnyEntry = Annotated[
    Annotated[ModelEntry, Tag("model")] | Annotated[PipelineEntry, Tag("pipeline")],
    Discriminator(_entry_kind),
]


class RegistryFile(BaseModel):
    """A whole ``checkpoints.yaml``; other top-level keys are ignored."""

    model_config = ConfigDict(frozen=True, strict=True)

    schema_version: SchemaVersion = SCHEMA_VERSION
    models: dict[EntryName, AnyEntry]

    @model_validator(mode="after")
    def _link_components(self) -> RegistryFile:
        for name, entry in self.models.items():
            entry._name = name
        for entry in self.models.values():
            for role, component in entry.components.items():
                wanted = PIPELINES[entry.family][1][role]
                target = self.models.get(component)
                if target is None:
                    raise _Problem(f"components.{role}", f"no entry named {component!r}", entry.name)
                if target.family != wanted:
                    problem = f"{component!r} is a {target.family} entry, expected a {wanted} entry"
                    raise _Problem(f"components.{role}", problem, entry.name)
        return self


def _registry_error(error: ValidationError, origin: str) -> RegistryError:
    """pydantic's first error as one line: the file, the entry, the field and what was expected."""
    first = error.errors()[0]
    loc, kind, value = first["loc"], first["type"], first.get("input")
    problem = first.get("ctx", {}).get("error")
    if isinstance(problem, _Problem) and problem.entry is not None:
        return _entry_error(origin, problem.entry, problem.field, problem.problem)
    if loc[:1] == ("schema_version",):
        return RegistryError(
            f"{origin}: schema_version {value!r} is not supported (this hierspeech2 reads {SCHEMA_VERSION})"
        )
    if len(loc) < 2:
        return RegistryError(f"{origin}: expected a mapping with a 'models' mapping at the top level")
    name, path = loc[1], loc[3:]  # loc[2] is the entry's kind, "model" or "pipeline"
    if loc[2:] == ("[key]",):
        return RegistryError(f"{origin}: entry name {name!r} must be letters, digits, '.', '_' or '-'")
    if isinstance(problem, _Problem):
        return _entry_error(origin, name, problem.field, problem.problem)
    if not path:
        return RegistryError(f"{origin}: entry {name!r} must be a mapping, got {type(value).__name__}")
    cls = PipelineEntry if loc[2] == "pipeline" else ModelEntry
    if kind in ("extra_forbidden", "invalid_key"):
        allowed = sorted((Source if len(path) > 1 else cls).model_fields)
        return _entry_error(origin, name, _dotted(path), f"unknown field (allowed: {', '.join(allowed)})")
    if path[-1] == "[key]":  # a key of config or components that is not a string
        expected = cls.model_fields[path[0]].description
        return _entry_error(
            origin, name, _dotted(path[:-2]), f"expected {expected}, got the key {path[-2]!r}"
        )
    if path[0] == "source" and len(path) > 1:
        expected = Source.model_fields[str(path[1])].description
    elif path[0] == "components" and len(path) > 1:
        expected = "an entry name"
    else:
        expected = cls.model_fields[str(path[0])].description
    if kind == "missing":
        text = f"required, {expected}"
    elif kind == "literal_error":
        text = f"got {value!r}, expected {expected}"
    else:
        text = f"expected {expected}, got {value!r}"
    return _entry_error(origin, name, _dotted(path), text)


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in path)


def _entry_error(origin: str, name: Any, field_name: str, problem: str) -> RegistryError:
    return RegistryError(f"{origin}: entry {name!r}, field {field_name!r}: {problem}")


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
        try:
            parsed = RegistryFile.model_validate(data)
        except ValidationError as error:
            raise _registry_error(error, origin) from error
        return cls(parsed.models, origin)

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
            raise RegistryError(unknown_name_message(name, list(self.entries))) from None


def unknown_name_message(name: str, known: list[str]) -> str:
    """The error for a name that is not in the registry, with the closest names."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (
        f"unknown model {name!r}: {hint}Known models: {', '.join(known)} (`hierspeech2 models` lists them). "
        "A local checkpoint file or folder, or hf://owner/repo, also works."
    )


def default_registry() -> Registry:
    """The registry named by ``$HIERSPEECH2_REGISTRY``, else the packaged ``checkpoints.yaml``."""
    override = os.environ.get(REGISTRY_ENV)
    if override:
        return Registry.from_file(override)
    packaged = resources.files("hierspeech2") / "checkpoints.yaml"
    with resources.as_file(packaged) as path:
        return Registry.from_file(path)


def resolve_registry(registry: Registry | str | os.PathLike | None) -> Registry:
    """``registry`` itself, the file it names, or (``None``) :func:`default_registry`."""
    if registry is None:
        return default_registry()
    return registry if isinstance(registry, Registry) else Registry.from_file(registry)


def list_models(family: str | None = None, registry: Registry | str | os.PathLike | None = None) -> list[str]:
    """Names ``load_model`` accepts, in registry order; ``family`` filters (``"speechsr"``, ``"tts"`` …)."""
    return resolve_registry(registry).names(family)
