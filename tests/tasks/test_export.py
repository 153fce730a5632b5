"""`hierspeech2 export`: refuses what a hierspeech2 task did not write, with a message saying why."""

from __future__ import annotations

import pytest
import torch

from hierspeech2.errors import CheckpointError
from hierspeech2.tasks.base import EXPORT_KEY
from hierspeech2.tasks.export import export, main


def test_checkpoint_without_export_record_is_refused(tmp_path) -> None:
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not written by a hierspeech2 task"):
        export(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_model_class_and_missing_file(tmp_path) -> None:
    path = tmp_path / "odd.ckpt"
    record = {"model_class": "Transformer", "model_config": {}, "state_prefix": "model."}
    torch.save({"state_dict": {}, EXPORT_KEY: record}, path)
    with pytest.raises(CheckpointError, match="'Transformer'"):
        export(path, tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing.ckpt"), str(tmp_path / "out")])
    assert exit_info.value.code == 1


def test_mismatched_weights_are_reported(tmp_path) -> None:
    path = tmp_path / "bad.ckpt"
    record = {"model_class": "SpeechSR", "model_config": {"channels": 8}, "state_prefix": "model."}
    torch.save({"state_dict": {"model.generator.conv_pre.bias": torch.zeros(3)}, EXPORT_KEY: record}, path)
    with pytest.raises(CheckpointError, match="do not fit SpeechSR"):
        export(path, tmp_path / "out")
