"""The checkpoint registry: ``checkpoints.yaml`` → download → verify → build.

- :mod:`.schema`: the registry file, a typed (pydantic) model validated when read;
  :func:`list_models`, :func:`default_registry`.
- :mod:`.hub`: the Hugging Face Hub: downloads with one-line errors, cache checks, the one probe
  that decides in seconds whether missing files can be downloaded, sha256.
- :mod:`.fetch`: registry entries in the cache: :func:`download`, :func:`is_cached`,
  :func:`missing_from_cache`, :func:`ensure_available`.
- :mod:`.build`: checkpoints → models and pipelines: :func:`load_model`, :func:`family_class`.

Importing it imports neither torch nor huggingface_hub: ``list_models()`` stays light.
"""

from __future__ import annotations

from .build import family_class, load_model, model_class, official_family
from .fetch import download, ensure_available, is_cached, missing_from_cache
from .hub import (
    HF_SCHEME,
    HUB_PROBE_TIMEOUT_S,
    ChecksumError,
    DownloadError,
    ensure_hub_files,
    require_downloadable,
    sha256_of,
)
from .schema import (
    FORMATS,
    MODEL_FAMILIES,
    OPTIONAL_ROLES,
    PIPELINES,
    REGISTRY_ENV,
    REPO_TYPES,
    SCHEMA_VERSION,
    Entry,
    ModelEntry,
    PipelineEntry,
    Registry,
    RegistryError,
    RegistryFile,
    Source,
    default_registry,
    list_models,
)

__all__ = [
    "FORMATS",
    "HF_SCHEME",
    "HUB_PROBE_TIMEOUT_S",
    "MODEL_FAMILIES",
    "OPTIONAL_ROLES",
    "PIPELINES",
    "REGISTRY_ENV",
    "REPO_TYPES",
    "SCHEMA_VERSION",
    "ChecksumError",
    "DownloadError",
    "Entry",
    "ModelEntry",
    "PipelineEntry",
    "Registry",
    "RegistryError",
    "RegistryFile",
    "Source",
    "default_registry",
    "download",
    "ensure_available",
    "ensure_hub_files",
    "family_class",
    "is_cached",
    "list_models",
    "load_model",
    "missing_from_cache",
    "model_class",
    "official_family",
    "require_downloadable",
    "sha256_of",
]
