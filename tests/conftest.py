"""Shared fixtures: the reference material in ``../shared`` and the parity cases."""

from __future__ import annotations

import importlib.util
import json
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
