"""SpeechSRTask: the manual-optimisation GAN step, schedules, learning, precision."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_training import LossHistory, tiny_speechsr_data, tiny_speechsr_task, trainer

from hierspeech2.errors import CheckpointError
from hierspeech2.nn.discriminators import RESOLUTIONS, RESOLUTIONS_48K, ComplexSTFTDiscriminator
from hierspeech2.tasks import SpeechSRTask
from hierspeech2.tasks.base import OptimizerConfig, gradient_norm
from hierspeech2.tasks.speechsr import MEL_SETTINGS, default_discriminator, default_mel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_defaults_follow_the_official_configs() -> None:
    for rate, resolutions in ((24000, RESOLUTIONS), (48000, RESOLUTIONS_48K)):
        stft = [
            d for d in default_discriminator(rate).discriminators if isinstance(d, ComplexSTFTDiscriminator)
        ]
        assert [(d.n_fft, d.hop_length, d.window.shape[0]) for d in stft] == list(resolutions)
        mel = default_mel(rate)
        assert (mel.n_fft, mel.hop_length, mel.n_mels) == (
            MEL_SETTINGS[rate]["n_fft"],
            MEL_SETTINGS[rate]["hop_length"],
            MEL_SETTINGS[rate]["n_mels"],
        )
    assert (default_mel(24000).n_fft, default_mel(24000).n_mels) == (960, 100)
    assert (default_mel(48000).n_fft, default_mel(48000).n_mels) == (1280, 128)
    with pytest.raises(ValueError, match="mel=LogMelSpectrogram"):
        default_mel(32000)


def test_one_step_updates_both_networks_and_epochs_decay_the_rate() -> None:
    torch.manual_seed(0)
    task = tiny_speechsr_task(optimizer=OptimizerConfig(learning_rate=1e-3, lr_decay=0.5))
    generator = [p.detach().clone() for p in task.model.parameters()]
    discriminator = [p.detach().clone() for p in task.discriminator.parameters()]
    run = trainer(max_epochs=2, limit_train_batches=1)
    run.fit(task, tiny_speechsr_data())
    assert all(not torch.equal(a, b) for a, b in zip(generator, task.model.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(discriminator, task.discriminator.parameters()))
    # two optimizers per batch: global_step counts both (Lightning #17958)
    assert run.global_step == 4
    opt_g, opt_d = task.optimizers()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**2)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**2)
    assert set(run.callback_metrics) >= {
        "train/mel",
        "train/adversarial",
        "train/feature_matching",
        "train/discriminator",
    }


def test_validation_logs_log_spectral_distance() -> None:
    torch.manual_seed(0)
    task = tiny_speechsr_task()
    run = trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    data = tiny_speechsr_data()
    run.fit(task, data)
    lsd, high = float(run.callback_metrics["val/lsd"]), float(run.callback_metrics["val/lsd_high"])
    assert 0 < lsd and 0 < high and math.isfinite(lsd + high)
    batch = next(iter(data.val_dataloader()))
    real = batch.high_rate
    assert task._spectral_distances(batch, real, real)["val/lsd"] == 0  # a perfect output


def test_generator_terms_are_weighted() -> None:
    torch.manual_seed(0)
    task = tiny_speechsr_task(mel_weight=45.0, adversarial_weight=2.0, feature_matching_weight=0.0)
    data = tiny_speechsr_data()
    from hierspeech2.tasks.synthetic import collate_speechsr

    batch = collate_speechsr([data.train_set[i] for i in range(2)])
    fake, real, extra = task.generate(batch)
    terms = task.reconstruction_terms(batch, fake, real, extra) | task.adversarial_terms(real, fake)
    assert terms["mel"].item() == pytest.approx(45.0 * task.mel_loss(fake, real).item(), rel=1e-5)
    logits, _ = task.discriminator(fake)
    assert terms["adversarial"].item() == pytest.approx(
        2.0 * task.gan_loss.generator_loss(logits).item(), rel=1e-5
    )
    assert terms["feature_matching"] == 0


def test_bf16_mixed_runs_with_finite_losses() -> None:
    torch.manual_seed(0)
    history = LossHistory("train/generator")
    task = tiny_speechsr_task()
    trainer(max_steps=4, precision="bf16-mixed", callbacks=[history]).fit(task, tiny_speechsr_data())
    assert len(history.values) == 2
    assert all(math.isfinite(value) for value in history.values)
    assert all(torch.isfinite(p).all() for p in task.parameters())


def test_gradient_clipping_bounds_the_update_norm() -> None:
    torch.manual_seed(0)
    task = tiny_speechsr_task(grad_clip=1e-3)
    run = trainer(max_steps=2)
    run.fit(task, tiny_speechsr_data())
    # the logged norm is measured before clipping; the gradients the optimizer used are clipped
    assert float(run.callback_metrics["train/grad_norm_generator"]) > 1e-2
    assert float(gradient_norm(task.model.parameters())) <= 1e-3 * 1.01
    assert float(gradient_norm(task.discriminator.parameters())) <= 1e-3 * 1.01


def test_init_from_loads_released_weights() -> None:
    from importlib import resources

    from hierspeech2.models import SpeechSR
    from hierspeech2.nn.discriminators import MultiDiscriminator

    released = SpeechSR.from_packaged(48000)
    with resources.as_file(resources.files("hierspeech2") / "weights" / "speechsr48k.safetensors") as path:
        task = SpeechSRTask(SpeechSR(), MultiDiscriminator(periods=(2,), resolutions=()), init_from=str(path))
    for key, value in released.state_dict().items():
        assert torch.equal(task.model.state_dict()[key], value), key
    with pytest.raises(CheckpointError, match="do not fit"):
        SpeechSRTask(
            SpeechSR(channels=8), MultiDiscriminator(periods=(2,), resolutions=()), init_from=str(path)
        )
