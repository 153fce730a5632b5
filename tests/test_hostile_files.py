"""Hostile pickles: a checkpoint whose unpickling would run code is refused on every load path.

Each payload's ``__reduce__`` calls ``open(marker, "w")``: if any loader unpickled it with
``weights_only=False``, the marker file would exist after the attempt.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hierspeech2.checkpoint import load_official_file
from hierspeech2.errors import CheckpointError
from hierspeech2.models import SpeechSR
from hierspeech2.registry import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))


class _CreatesMarker:
    """Unpickling this object opens (creates) the marker file: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _write(path: Path, payload: object, layout: str) -> Path:
    if layout == "zip":
        torch.save(payload, path)
    elif layout == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a hostile pickle ran code while being loaded"


def _state_with_payload(marker: Path) -> dict:
    return {
        "model": {"dec.conv_pre.bias": torch.zeros(2), "dec.evil": _CreatesMarker(marker)},
        "iteration": 1,
    }


def test_the_payload_does_run_code_when_unpickled_unsafely(tmp_path) -> None:
    # Guards the other tests: the payload really creates the marker under weights_only=False.
    marker = tmp_path / "PROOF"
    path = _write(tmp_path / "evil.pth", _state_with_payload(marker), "zip")
    torch.load(path, weights_only=False)
    assert marker.exists()


LAYOUTS = ["zip", "legacy", "raw-pickle"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_official_file_refuses_a_hostile_pickle(tmp_path, marker, layout) -> None:
    path = _write(tmp_path / "G_0.pth", _state_with_payload(marker), layout)
    with pytest.raises(CheckpointError, match="refusing to load|cannot read checkpoint"):
        load_official_file(path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_from_official_refuses_a_hostile_pickle(tmp_path, marker, layout) -> None:
    path = _write(tmp_path / "G_0.pth", _state_with_payload(marker), layout)
    with pytest.raises(CheckpointError):
        SpeechSR.from_official(path, config={"upsample_ratio": 3.0})


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_model_refuses_a_hostile_local_checkpoint(tmp_path, marker, layout) -> None:
    path = _write(tmp_path / "G_0.pth", _state_with_payload(marker), layout)
    with pytest.raises(CheckpointError):
        load_model(path)


def test_load_model_refuses_a_hostile_registry_download(tmp_path, marker, loopback_hub, monkeypatch) -> None:
    # A registry entry whose sha256 matches the hostile file: verification passes, unpickling must not run it.
    path = _write(tmp_path / "G_0.pth", _state_with_payload(marker), "zip")
    data = path.read_bytes()
    loopback_hub.add_file("evil/repo", "G_0.pth", data)
    registry = tmp_path / "checkpoints.yaml"
    entry = {
        "family": "speechsr", "description": "hostile", "license": "MIT", "format": "official",
        "source": {"repo_id": "evil/repo", "filename": "G_0.pth"},
        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "config": {"upsample_ratio": 3.0},
    }  # fmt: skip
    registry.write_text(yaml.safe_dump({"schema_version": 1, "models": {"evil": entry}}))
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_model("evil", registry=registry)


@pytest.fixture
def tiny_training():
    pytest.importorskip("lightning")
    import tiny_training
    from tiny_models import one_thread

    with one_thread():
        yield tiny_training


def _hostile_lightning_checkpoint(tmp_path, marker, tiny_training) -> Path:
    task = tiny_training.tiny_speechsr_task()
    checkpoint = {
        "state_dict": task.state_dict(),
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "2.6.0",
        "loops": {},
        "hyper_parameters": {"evil": _CreatesMarker(marker)},
    }
    return _write(tmp_path / "last.ckpt", checkpoint, "zip")


def test_lightning_resume_refuses_a_hostile_checkpoint(tmp_path, marker, tiny_training) -> None:
    path = _hostile_lightning_checkpoint(tmp_path, marker, tiny_training)
    task, data = tiny_training.tiny_speechsr_task(), tiny_training.tiny_speechsr_data()
    run = tiny_training.trainer(max_epochs=1, limit_train_batches=1, default_root_dir=tmp_path)
    # Lightning loads --ckpt_path with torch.load(weights_only=None), which torch >= 2.6 treats as True.
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        run.fit(task, data, ckpt_path=path)


def test_discriminator_init_refuses_a_hostile_checkpoint(tmp_path, marker, tiny_training) -> None:
    path = _hostile_lightning_checkpoint(tmp_path, marker, tiny_training)
    task = tiny_training.tiny_speechsr_task()
    with pytest.raises(CheckpointError, match="refusing anything that would run code"):
        task.load_discriminator_weights(str(path))


def test_export_refuses_a_hostile_checkpoint(tmp_path, marker, tiny_training) -> None:
    from hierspeech2.tasks.export import export

    path = _hostile_lightning_checkpoint(tmp_path, marker, tiny_training)
    with pytest.raises(CheckpointError, match="cannot read"):
        export(path, tmp_path / "out")
