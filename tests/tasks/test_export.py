"""`hierspeech2 export`: refuses what a hierspeech2 task did not write, with a message saying why."""

from __future__ import annotations

import stat

import pytest
import tiny_models
import torch

from hierspeech2 import load_model
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


def lightning_checkpoint(path, model, global_step: int, epoch: int) -> None:
    """What a hierspeech2 task's Lightning checkpoint holds for export (the rest of it does not matter)."""
    record = {
        "model_class": type(model).__name__,
        "model_config": dict(model.config),
        "state_prefix": "model.",
    }
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, EXPORT_KEY: record, "global_step": global_step, "epoch": epoch}, path)


def test_export_files_follow_the_umask_and_the_card_names_the_run(tmp_path, umask) -> None:
    from huggingface_hub import ModelCard

    model = tiny_models.speechsr(seed=5)
    checkpoint = tmp_path / "last.ckpt"
    lightning_checkpoint(checkpoint, model, global_step=1234, epoch=7)
    main([str(checkpoint), str(tmp_path / "out")])
    files = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert files == ["README.md", "config.json", "model.safetensors"]
    modes = {name: stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) for name in files}
    assert modes == dict.fromkeys(files, 0o666 & ~umask)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.license == "mit" and card.data.library_name == "hierspeech2"
    assert "More Information Needed" not in card.text
    assert f"Exported with `hierspeech2 export` from the Lightning checkpoint `{checkpoint}`" in card.text
    assert "global step 1234, epoch 7" in card.text
    assert f"**Parameters:** {sum(p.numel() for p in model.parameters()):,}" in card.text
    assert f'load_model("{tmp_path / "out"}")' in card.text
    loaded = load_model(tmp_path / "out")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_re_export_refreshes_the_card(tmp_path) -> None:
    checkpoint = tmp_path / "last.ckpt"
    lightning_checkpoint(checkpoint, tiny_models.speechsr(seed=5), global_step=10, epoch=0)
    export(checkpoint, tmp_path / "out")
    lightning_checkpoint(checkpoint, tiny_models.speechsr(seed=6), global_step=20, epoch=1)
    export(checkpoint, tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "global step 20, epoch 1" in card and "global step 10" not in card
