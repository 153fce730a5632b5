"""The Hugging Face Hub: downloads with one-line errors, cache checks, the reachability probe, sha256.

Everything goes through ``huggingface_hub`` (its cache under ``HF_HOME``, ``HF_ENDPOINT``,
``HF_HUB_OFFLINE``, revisions, tokens), imported on first use. :func:`require_downloadable` is
the one probe that decides in seconds whether missing files can be downloaded at all: the
registry (:mod:`.fetch`), ``hf://`` URIs (:func:`ensure_hub_files`) and the MMS encoder
(:func:`hierspeech2.ssl.ensure_downloadable`) all call it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from ..errors import CheckpointError, HierSpeechError
from .schema import hub_path

HF_SCHEME = "hf://"
# One HEAD request without retries decides whether the Hub answers before anything is downloaded:
# huggingface_hub's own backed-off retries take about half a minute to give up on a dead network.
HUB_PROBE_TIMEOUT_S = 5.0
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # transformers' own order of preference
_HASH_CHUNK = 1 << 20
# The base network exception of each HTTP client huggingface_hub has used: requests (before 1.0),
# httpx, then httpx2 (which it requires today); urllib3 under requests.
_TRANSPORT_ERRORS = (
    ("httpx2", "HTTPError"),
    ("httpx", "HTTPError"),
    ("requests", "RequestException"),
    ("urllib3.exceptions", "HTTPError"),
)


class DownloadError(HierSpeechError, OSError):
    """A checkpoint that could not be fetched: no network, offline mode, missing repo or file, interrupted."""


class ChecksumError(CheckpointError):
    """A downloaded file whose sha256 differs from the registry's; it has been removed from the cache."""


def _hub_constants() -> ModuleType:
    """``huggingface_hub.constants``, read at call time (tests and users change ``HF_HUB_OFFLINE`` there)."""
    from huggingface_hub import constants

    return constants


def transport_errors() -> tuple[type[BaseException], ...]:
    """Network exception types of whichever HTTP client this huggingface_hub uses (and ``OSError``).

    Catch the Hub's own :class:`~huggingface_hub.errors.HfHubHTTPError` first: it subclasses them.
    """
    errors: list[type[BaseException]] = [OSError]
    for module_name, attribute in _TRANSPORT_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(getattr(module, attribute, None), type):
            errors.append(getattr(module, attribute))
    return tuple(errors)


def enumerate_names(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def hf_download_command(
    repo_id: str, filenames: Sequence[str], *, repo_type: str = "model", revision: str | None = None
) -> str:
    """The ``hf download`` command line that fetches ``filenames`` of a Hub repository."""
    options = (f" --repo-type {repo_type}" if repo_type != "model" else "") + (
        f" --revision {revision}" if revision else ""
    )
    return f"hf download {repo_id} {' '.join(filenames)}{options}"


def _unavailable(
    what: str,
    command: str,
    *,
    count: int = 1,
    cache_dir: str | os.PathLike | None = None,
    error: BaseException | None = None,
    alternative: str | None = None,
) -> str:
    """Why ``what`` (``count`` names), missing from the cache, cannot be downloaded, and what to do instead.

    ``error``: the Hub could not be reached; otherwise ``HF_HUB_OFFLINE`` or ``local_files_only``
    forbade asking it. ``command`` fetches the files; ``alternative`` is another way round (a local folder).
    """
    constants = _hub_constants()
    cache = cache_dir or constants.HF_HUB_CACHE
    verb, pronoun = ("is", "it") if count == 1 else ("are", "them")
    missing = f"{what} {verb} not in the Hugging Face cache ({cache})"
    if error is not None:
        reason = " ".join(str(error).split()) or "no answer"
        return (
            f"cannot reach {constants.ENDPOINT} ({type(error).__name__}: {reason}) to download {what}, which "
            f"{verb} not in the Hugging Face cache ({cache}): check the network or point HF_ENDPOINT at a "
            f"reachable Hub mirror, or run `{command}` on a machine with network, copy its HF_HOME here and "
            "set HF_HUB_OFFLINE=1"
        ) + (f", or {alternative}" if alternative else "")
    if alternative:  # one Hub model that a local folder can replace (hierspeech2.ssl)
        reason = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "local_files_only=True"
        return (
            f"{missing} and {reason}, so {pronoun} cannot be downloaded: run `{command}` with network first "
            f"(or unset HF_HUB_OFFLINE), or {alternative}"
        )
    if constants.HF_HUB_OFFLINE:
        return (
            f"{missing} and HF_HUB_OFFLINE=1 forbids downloading {pronoun}: run `{command}` on a machine "
            "with network and copy its HF_HOME here, or unset HF_HUB_OFFLINE"
        )
    return f"{missing} and local_files_only=True: run `{command}` first"


def _refusal(error: BaseException, what: str, revision: str) -> str:
    """What the Hub's answer ``error`` (an HTTP error status) means for the file ``what``."""
    from huggingface_hub import errors as hub_errors

    if isinstance(error, hub_errors.GatedRepoError):
        return f"{what}: the repository is gated; accept its terms on the Hub and log in (`hf auth login`)"
    if isinstance(error, hub_errors.RepositoryNotFoundError):
        endpoint = _hub_constants().ENDPOINT
        return f"{what}: repository not found on {endpoint} (or private: log in with `hf auth login`)"
    if isinstance(error, hub_errors.RevisionNotFoundError):
        return f"{what}: revision {revision!r} not found; pass an existing branch, tag or commit"
    if isinstance(error, hub_errors.EntryNotFoundError):
        return f"{what}: no such file in the repository at revision {revision!r}"
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"downloading {what} failed: {first_line}"


def hub_download(
    repo_id: str,
    filename: str,
    *,
    repo_type: str = "model",
    revision: str = "main",
    local_files_only: bool = False,
    command: str | None = None,
) -> Path:
    """``hf_hub_download`` with its errors turned into one-line :class:`DownloadError` messages.

    ``command`` is what a message tells the user to run to fetch the file (default: ``hf download``).
    """
    from huggingface_hub import errors as hub_errors
    from huggingface_hub import hf_hub_download

    what = hub_path(repo_id, filename, repo_type=repo_type, revision=revision)
    command = command or hf_download_command(
        repo_id, [filename], repo_type=repo_type, revision=None if revision == "main" else revision
    )
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
    except (
        hub_errors.LocalEntryNotFoundError
    ) as error:  # not cached, and the Hub was not (or could not be) asked
        asked = not (local_files_only or _hub_constants().HF_HUB_OFFLINE)
        cause = (error.__cause__ or error.__context__ or error) if asked else None
        raise DownloadError(_unavailable(what, command, error=cause)) from error
    except (hub_errors.EntryNotFoundError, hub_errors.HfHubHTTPError) as error:
        raise DownloadError(_refusal(error, what, revision)) from error
    except transport_errors() as error:
        raise DownloadError(
            f"downloading {what} was interrupted ({type(error).__name__}: {error}); nothing partial was kept "
            "in the cache: run the same command again to retry"
        ) from error


def in_cache(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = "main",
    repo_type: str = "model",
    cache_dir: str | os.PathLike | None = None,
) -> bool:
    """Whether one file of a Hub repository is in the Hugging Face cache (nothing is downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        repo_id, filename, cache_dir=cache_dir, revision=revision, repo_type=repo_type
    )
    return isinstance(found, str)


def transformers_cached(
    repo_id: str,
    *,
    revision: str | None = "main",
    repo_type: str = "model",
    cache_dir: str | os.PathLike | None = None,
) -> bool:
    """Whether a transformers repository is cached: its ``config.json`` and one of its weights files."""

    def cached(filename: str) -> bool:
        return in_cache(repo_id, filename, revision=revision, repo_type=repo_type, cache_dir=cache_dir)

    return cached("config.json") and any(cached(weights) for weights in TRANSFORMERS_WEIGHTS)


def require_downloadable(
    what: str,
    command: str,
    *,
    repo_id: str,
    filename: str,
    repo_type: str = "model",
    revision: str = "main",
    count: int = 1,
    local_files_only: bool = False,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    alternative: str | None = None,
) -> None:
    """Return when the Hub may be asked and answers a HEAD request for ``filename``, else raise DownloadError.

    For files missing from the cache, before downloading them: ``what`` names them (``count`` of
    them) and ``command`` fetches them. One request, without huggingface_hub's backed-off retries,
    so that no network fails in seconds. ``HF_HUB_OFFLINE=1``, ``local_files_only`` or a Hub that
    does not answer raise a one-line message naming ``command`` (and ``alternative``, another way
    round); a Hub that answers with an error (no such repository, revision or file, a gated
    repository) raises the message the download would give.
    """
    from huggingface_hub import errors as hub_errors
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    wording = {"count": count, "cache_dir": cache_dir, "alternative": alternative}
    if local_files_only or _hub_constants().HF_HUB_OFFLINE:
        raise DownloadError(_unavailable(what, command, **wording))
    url = hf_hub_url(repo_id, filename, repo_type=repo_type, revision=revision)
    try:
        get_hf_file_metadata(url, token=token, timeout=HUB_PROBE_TIMEOUT_S)
    except (hub_errors.EntryNotFoundError, hub_errors.HfHubHTTPError) as error:
        file = hub_path(repo_id, filename, repo_type=repo_type, revision=revision)
        raise DownloadError(_refusal(error, file, revision)) from error
    except transport_errors() as error:
        raise DownloadError(_unavailable(what, command, error=error, **wording)) from error


def ensure_hub_files(
    repo_id: str,
    filenames: Sequence[str],
    *,
    revision: str | None = None,
    repo_type: str = "model",
    local_files_only: bool = False,
) -> None:
    """Return when these files of a Hub repository are cached or the Hub answers, else raise DownloadError.

    As :func:`~hierspeech2.registry.ensure_available`, for files outside the registry: the one-line
    message names the missing files and the ``hf download`` command that fetches them.
    """
    resolved = revision or "main"
    missing = [
        name for name in filenames if not in_cache(repo_id, name, revision=resolved, repo_type=repo_type)
    ]
    if not missing:
        return
    require_downloadable(
        enumerate_names(
            [hub_path(repo_id, name, repo_type=repo_type, revision=resolved) for name in missing]
        ),
        hf_download_command(repo_id, missing, repo_type=repo_type, revision=revision),
        repo_id=repo_id,
        filename=missing[0],
        repo_type=repo_type,
        revision=resolved,
        count=len(missing),
        local_files_only=local_files_only,
    )


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remove_from_cache(path: Path) -> None:
    """Delete a cached file: the snapshot entry and the blob it points to."""
    blob = Path(os.path.realpath(path))
    for target in {path, blob}:
        try:
            target.unlink()
        except FileNotFoundError:
            pass
