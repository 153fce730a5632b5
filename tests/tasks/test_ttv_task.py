"""TTVTask and TextToVec's training forward: alignment, windows, masking, learning, precision."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_training import LossHistory, tiny_ttv_data, tiny_ttv_task, trainer

from hierspeech2.tasks.synthetic import collate_ttv

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(size: int = 4, seed: int = 0):
    data = tiny_ttv_data(seed=seed)
    return collate_ttv([data.train_set[i] for i in range(size)])


def test_training_forward_alignment_covers_every_frame_once() -> None:
    torch.manual_seed(0)
    task = tiny_ttv_task()
    batch = _batch()
    out = task(batch)
    # monotonic alignment search: each valid frame belongs to one token, each valid token gets ≥ 1 frame
    assert torch.equal(out.durations.sum(dim=(1, 2)), batch.semantic_lengths.float())
    token_mask = out.text_mask.bool()
    assert bool((out.durations[token_mask] >= 1).all())
    assert bool((out.durations[~token_mask] == 0).all())
    # the expanded prior is zero on padded frames
    padded = ~out.frame_mask.bool().expand_as(out.prior_mean)
    assert out.prior_mean[padded].abs().max() == 0
    assert out.semantic_pred.shape == batch.semantic.shape
    assert out.phoneme_logits.shape == (4, 20, batch.semantic.shape[-1])
    assert out.log_f0_pred.shape == (4, 1, 8 * 4)
    highest = batch.semantic_lengths - 8
    assert bool(((out.pitch_window_starts >= 0) & (out.pitch_window_starts <= highest)).all())


def test_short_utterance_pitch_window_starts_at_zero_and_is_masked() -> None:
    task = tiny_ttv_task(pitch_window=30)
    batch = _batch()
    starts = torch.zeros(4, dtype=torch.long)
    target, mask = task.f0_window(batch, starts)
    assert target.shape == mask.shape == (4, 1, 120)
    valid = (batch.semantic_lengths * 4).clamp_max(120)
    assert torch.equal(mask.sum(dim=(1, 2)), valid.float())
    for row in range(4):
        frames = int(valid[row])
        assert torch.equal(target[row, 0, :frames], batch.log_f0[row, 0, :frames])


def test_masked_losses_ignore_padding_and_official_mode_does_not() -> None:
    torch.manual_seed(0)
    batch = _batch()
    out = tiny_ttv_task()(batch)
    # put garbage on padded frames of the target: masked semantic L1 must not move
    noisy = batch.semantic + 100.0 * (1 - batch.frame_mask)
    masked, official = tiny_ttv_task(), tiny_ttv_task(masked_losses=False)
    clean_terms = masked.losses(batch, out)
    batch.semantic = noisy
    assert torch.allclose(masked.losses(batch, out)["semantic"], clean_terms["semantic"])
    # the official average includes padded positions
    assert torch.allclose(official.losses(batch, out)["semantic"], F.l1_loss(out.semantic_pred, noisy))
    assert official.losses(batch, out)["semantic"] > 10 * clean_terms["semantic"]


def test_loss_terms_are_weighted_as_the_official_config() -> None:
    task = tiny_ttv_task()
    assert task.weights == {"semantic": 10.0, "kl": 0.1, "f0": 1.0, "duration": 1.0, "ctc": 1.0}
    optimizer = task.configure_optimizers()["optimizer"]
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert group["betas"] == (0.8, 0.99) and group["eps"] == 1e-9


def test_overfits_one_batch() -> None:
    torch.manual_seed(0)
    task = tiny_ttv_task()
    batch = _batch()
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-2)
    history = []
    for _ in range(40):
        terms = {name: task.weights[name] * value for name, value in task.losses(batch, task(batch)).items()}
        loss = torch.stack(list(terms.values())).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append({name: value.item() for name, value in terms.items()} | {"total": loss.item()})
    fresh, trained = history[0], history[-1]  # the first step measures the fresh model
    assert trained["total"] < 0.6 * fresh["total"], (fresh, trained)
    assert trained["f0"] < 0.3 * fresh["f0"], (fresh, trained)
    assert trained["ctc"] < 0.4 * fresh["ctc"], (fresh, trained)


def test_bf16_mixed_runs_with_finite_losses() -> None:
    torch.manual_seed(0)
    history = LossHistory("train/loss")
    task = tiny_ttv_task()
    trainer(max_steps=2, precision="bf16-mixed", callbacks=[history]).fit(task, tiny_ttv_data())
    assert len(history.values) == 2
    assert all(math.isfinite(value) for value in history.values)
    assert all(torch.isfinite(p).all() for p in task.parameters())


def test_validation_word_error_rate_speaks_the_rows_through_a_backbone(tmp_path) -> None:
    from tiny_models import TINY_BACKBONE, TTV_UNIT

    from hierspeech2.models import HierSpeech2

    torch.manual_seed(0)
    backbone = tmp_path / "backbone"
    config = {**TINY_BACKBONE, "semantic_channels": TTV_UNIT["semantic_channels"], "mel_channels": 12}
    HierSpeech2(**config).save_pretrained(backbone)
    with pytest.raises(ValueError, match="go together"):
        tiny_ttv_task(validation_asr_model="pocketsphinx")
    task = tiny_ttv_task(validation_asr_model="pocketsphinx", validation_backbone=str(backbone))
    data = tiny_ttv_data()
    run = trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    run.fit(task, data)
    wer = float(run.callback_metrics["val/wer"])
    assert math.isnan(wer) or wer >= 0  # synthetic audio: the ASR may hear no word in the recordings
    assert not any("_vocoder" in key or key.startswith("backbone") for key in task.state_dict())
    batch = next(iter(data.val_dataloader()))
    spoken = task._spoken(batch, 0)
    assert spoken.dim() == 1 and spoken.numel() % 320 == 0 and torch.isfinite(spoken).all()
