"""Resuming from a checkpoint continues a run exactly: 2 epochs == 1 epoch + resume for 1 more."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_training import (
    tiny_speechsr_data,
    tiny_speechsr_task,
    tiny_ttv_data,
    tiny_ttv_task,
    trainer,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(make_task, make_data, epochs: int, root, ckpt_path=None):
    pl.seed_everything(0)
    task, data = make_task(), make_data()
    checkpoint = ModelCheckpoint(dirpath=root, save_last=True)
    run = trainer(max_epochs=epochs, limit_train_batches=2, enable_checkpointing=True, callbacks=[checkpoint])
    run.fit(task, data, ckpt_path=ckpt_path)
    return task, run


@pytest.mark.parametrize(
    ("make_task", "make_data"),
    [(tiny_ttv_task, tiny_ttv_data), (tiny_speechsr_task, tiny_speechsr_data)],
    ids=["ttv", "speechsr"],
)
def test_resume_matches_an_uninterrupted_run(tmp_path, make_task, make_data) -> None:
    straight, _ = _train(make_task, make_data, 2, tmp_path / "straight")
    _train(make_task, make_data, 1, tmp_path / "first")
    resumed, run = _train(
        make_task, make_data, 2, tmp_path / "second", ckpt_path=tmp_path / "first" / "last.ckpt"
    )
    assert run.current_epoch == 2
    # Bit-identical: the checkpoint restores weights, optimizer and scheduler states, the loop
    # position and (hierspeech2 tasks) the global random generators the steps draw noise from.
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    for opt_a, opt_b in zip(_optimizers(straight), _optimizers(resumed)):
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"] < 2e-3
        assert torch.equal(
            opt_a.state_dict()["state"][0]["exp_avg"], opt_b.state_dict()["state"][0]["exp_avg"]
        )


def _optimizers(task) -> list:
    optimizers = task.optimizers(use_pl_optimizer=False)
    return optimizers if isinstance(optimizers, list) else [optimizers]
