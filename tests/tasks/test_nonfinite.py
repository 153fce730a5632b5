"""Non-finite training losses: the step is skipped (weights untouched), and too many in a row stop the run."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tiny_training import (
    tiny_speechsr_data,
    tiny_speechsr_task,
    tiny_ttv_data,
    tiny_ttv_task,
    trainer,
)

from hierspeech2.errors import HierSpeechError, NonFiniteLossError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def poison(task, field: str, batches: set[int] | None = None) -> None:
    """NaN in ``field`` of the training batches numbered in ``batches`` (all when None)."""

    def hook(batch, dataloader_idx):
        if task.trainer.training and (batches is None or task.trainer.fit_loop.batch_idx in batches):
            value = getattr(batch, field)
            return dataclasses.replace(batch, **{field: value * math.nan})
        return batch

    task.on_after_batch_transfer = hook


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def unchanged(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_ttv_step_with_nan_loss_is_skipped_and_leaves_weights_unchanged() -> None:
    torch.manual_seed(0)
    task = tiny_ttv_task()
    poison(task, "semantic")
    before = snapshot(task.model)
    run = trainer(limit_train_batches=1, max_epochs=1)
    with pytest.warns(RuntimeWarning, match=r"non-finite loss \(loss\).*1 skipped so far"):
        run.fit(task, tiny_ttv_data())
    assert unchanged(before, task.model)
    assert task.skipped_nonfinite_steps == 1
    assert task.optimizers().optimizer.state == {}  # AdamW never saw a gradient


def test_ttv_recovers_after_a_bad_batch_and_counts_it() -> None:
    torch.manual_seed(0)
    task = tiny_ttv_task()
    poison(task, "semantic", batches={0})
    before = snapshot(task.model)
    run = trainer(max_epochs=1, limit_train_batches=3)
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        run.fit(task, tiny_ttv_data())
    assert run.global_step == 3  # Lightning counts the skipped (gradient-free) step too
    assert task.skipped_nonfinite_steps == 1 and task.consecutive_nonfinite_steps == 0
    assert not unchanged(before, task.model)
    assert all(torch.isfinite(p).all() for p in task.model.parameters())


def test_ttv_stops_after_too_many_consecutive_nan_losses() -> None:
    torch.manual_seed(0)
    task = tiny_ttv_task(max_nonfinite_steps=2)
    poison(task, "semantic")
    before = snapshot(task.model)
    run = trainer(max_epochs=1, limit_train_batches=4)
    with pytest.warns(RuntimeWarning), pytest.raises(NonFiniteLossError) as caught:
        run.fit(task, tiny_ttv_data())
    message = str(caught.value)
    assert "3 consecutive steps" in message
    assert "learning rate" in message and "bf16-mixed" in message and "check the data" in message
    assert isinstance(caught.value, HierSpeechError) and isinstance(caught.value, RuntimeError)
    assert task.skipped_nonfinite_steps == 3
    assert unchanged(before, task.model)


def test_gan_step_with_nan_input_updates_neither_network() -> None:
    torch.manual_seed(0)
    task = tiny_speechsr_task()
    poison(task, "low_rate")
    generator, discriminator = snapshot(task.model), snapshot(task.discriminator)
    run = trainer(max_epochs=1, limit_train_batches=2)
    with pytest.warns(RuntimeWarning, match=r"non-finite loss \(discriminator\)"):
        run.fit(task, tiny_speechsr_data())
    assert unchanged(generator, task.model) and unchanged(discriminator, task.discriminator)
    assert task.skipped_nonfinite_steps == 2 and run.global_step == 0


def test_gan_stops_after_too_many_consecutive_nan_losses() -> None:
    torch.manual_seed(0)
    task = tiny_speechsr_task(max_nonfinite_steps=0)
    poison(task, "low_rate")
    with pytest.raises(NonFiniteLossError, match="1 consecutive steps"):
        trainer(max_epochs=1, limit_train_batches=2).fit(task, tiny_speechsr_data())


def test_gan_generator_nan_skips_only_the_generator_update(monkeypatch) -> None:
    torch.manual_seed(0)
    task = tiny_speechsr_task()
    generator, discriminator = snapshot(task.model), snapshot(task.discriminator)
    terms = task.reconstruction_terms
    monkeypatch.setattr(
        task, "reconstruction_terms", lambda *args: {k: v * math.nan for k, v in terms(*args).items()}
    )
    run = trainer(max_epochs=1, limit_train_batches=1)
    with pytest.warns(RuntimeWarning, match=r"non-finite loss \(generator\)"):
        run.fit(task, tiny_speechsr_data())
    assert unchanged(generator, task.model)
    assert not unchanged(discriminator, task.discriminator)
    assert run.global_step == 1  # the discriminator's step only


def test_skip_nonfinite_counts_resets_and_rejects_bad_limits() -> None:
    task = tiny_ttv_task(max_nonfinite_steps=1)
    finite, nan = torch.tensor(1.0), torch.tensor(math.nan)
    assert not task.skip_nonfinite(loss=finite)
    with pytest.warns(RuntimeWarning, match=r"\(kl\)"):
        assert task.skip_nonfinite(mel=finite, kl=torch.tensor(math.inf))
    assert not task.skip_nonfinite(loss=finite)
    assert task.consecutive_nonfinite_steps == 0 and task.skipped_nonfinite_steps == 1
    with pytest.warns(RuntimeWarning):
        assert task.skip_nonfinite(loss=nan)
    with pytest.raises(NonFiniteLossError, match="2 consecutive"):
        task.skip_nonfinite(loss=nan)
    with pytest.raises(ValueError, match="max_nonfinite_steps"):
        tiny_ttv_task(max_nonfinite_steps=-1)
