"""Shared fixtures: the reference material in ``../shared`` and the parity cases."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PARITY = SHARED / "parity"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference material not found at {path} (clone the project next to ../shared)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder next to the project checkout."""
    return _require(SHARED)


@pytest.fixture(scope="session")
def parity_cases() -> dict:
    """All tensors of ``parity/cases.safetensors`` keyed as in ``cases.json``."""
    from safetensors.torch import load_file

    return load_file(_require(PARITY / "cases.safetensors"))


@pytest.fixture(scope="session")
def parity_settings() -> dict:
    """The settings of each parity case (``cases.json`` → ``cases``)."""
    return json.loads(_require(PARITY / "cases.json").read_text())["cases"]


@pytest.fixture(scope="session")
def official_state_dict():
    """``fill.official_state_dict(model)``: deterministic full-size weights in the released format."""
    spec = importlib.util.spec_from_file_location("parity_fill", _require(PARITY / "fill.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cache: dict[str, dict] = {}

    def get(model: str) -> dict:
        if model not in cache:
            cache[model] = module.official_state_dict(model, str(PARITY))
        return cache[model]

    return get


@pytest.fixture(scope="session")
def manifest():
    """``manifest(model)`` → list of ``{key, shape, dtype, kind}`` of the official state dict."""

    def get(model: str) -> list[dict]:
        return json.loads(_require(PARITY / f"manifest_{model}.json").read_text())

    return get


@pytest.fixture
def loopback_hub(tmp_path, monkeypatch):
    """A Hub stand-in on 127.0.0.1 (``tests/hub_server.py``) that ``huggingface_hub`` downloads from.

    ``HF_ENDPOINT`` points at it and ``HF_HOME`` is a fresh folder under ``tmp_path``, both in the
    environment and in ``huggingface_hub.constants`` (which reads them once, at import). Offline
    mode is off and no token is sent. The server stops when the test ends.
    """
    from hub_server import LoopbackHub
    from huggingface_hub import constants

    hub = LoopbackHub().start()
    home = tmp_path / "hf-home"
    settings = {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HIERSPEECH2_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    patched = {
        "ENDPOINT": hub.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_PROGRESS_BARS": True,
    }
    for name, value in patched.items():
        monkeypatch.setattr(constants, name, value)
    yield hub
    hub.stop()


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-long",
        action="store_true",
        default=False,
        help=(
            "run the hypothesis fuzz suite (tests/fuzz) with its long budget: "
            ">= 10 000 generated inputs in total"
        ),
    )


@pytest.fixture(scope="session")
def tiny_onnx_exports(tmp_path_factory):
    """``get(kind)``: the ONNX export folder of the tiny ``"backbone"`` or ``"ttv"``
    (``tiny_models``' weights), made on first request in a session-wide export cache
    (``hierspeech2.onnx``'s layout: one folder per weights). Each export takes 35-50 s, so the
    test files share them; copying a folder into a test's own cache makes it a cache hit there."""
    onnx = pytest.importorskip("hierspeech2.onnx")
    pytest.importorskip("onnxscript")
    import tiny_models

    cache = tmp_path_factory.mktemp("onnx-cache")
    exporters = {
        "backbone": (tiny_models.backbone, onnx.export_backbone),
        "ttv": (tiny_models.ttv, onnx.export_ttv),
    }
    folders: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in folders:
            build, export = exporters[kind]
            with tiny_models.one_thread():
                folders[kind] = onnx._cached(kind, build(), export, cache)
        return folders[kind]

    return get


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: two OpenMP threads on two shared cores slow tiny models many
    times over."""
    from tiny_models import one_thread

    with one_thread():
        yield


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    """Run the test under a shared-folder umask (022) and a private one (077); the previous umask is
    restored."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)
