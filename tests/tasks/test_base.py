"""What the tasks share: optimizer config, hyper-parameters in checkpoints, RNG states, DDP for GANs."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import random

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from tiny_training import TINY_TTV, tiny_ttv_data, tiny_ttv_task, trainer
from torch import nn

from hierspeech2.errors import SettingError
from hierspeech2.models import TextToVec
from hierspeech2.tasks import GANTask, HierSpeech2Task, SpeechSRTask, TTVTask
from hierspeech2.tasks.base import (
    HIERSPEECH2_OPTIMIZER,
    RNG_KEY,
    SPEECHSR48K_OPTIMIZER,
    TTV_OPTIMIZER,
    OptimizerConfig,
    collect_rng_states,
    require_unused_parameter_detection,
    restore_rng_states,
)
from hierspeech2.training_cli import HierSpeechCLI

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_TTV_RECIPE = {
    "model": {
        "class_path": "hierspeech2.tasks.TTVTask",
        "init_args": {
            "model": {
                "class_path": "hierspeech2.models.TextToVec",
                "init_args": json.loads(json.dumps(TINY_TTV)),
            },
            "optimizer": {"learning_rate": 2e-3},
            "pitch_window": 8,
        },
    },
    "data": {
        "class_path": "hierspeech2.tasks.synthetic.SyntheticTTVDataModule",
        "init_args": {"batch_size": 2, "train_size": 2, "val_size": 2, "n_vocab": 20,
                      "semantic_channels": 24, "mel_channels": 12},
    },
}  # fmt: skip
TINY_SR_RECIPE = {
    "model": {
        "class_path": "hierspeech2.tasks.SpeechSRTask",
        "init_args": {
            "model": {"class_path": "hierspeech2.models.SpeechSR",
                      "init_args": {"upsample_ratio": 1.5, "channels": 8, "resblock_kernel_sizes": [3],
                                    "resblock_dilations": [[1, 3]]}},
            "discriminator": {"class_path": "hierspeech2.nn.discriminators.MultiDiscriminator",
                              "init_args": {"periods": [2], "resolutions": [[256, 64, 256]]}},
        },
    },
    "data": {"class_path": "hierspeech2.tasks.synthetic.SyntheticSpeechSRDataModule",
             "init_args": {"batch_size": 1, "train_size": 1, "val_size": 1, "segment": 4800,
                           "output_rate": 24000}},
    "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint"}]},
}  # fmt: skip


# ------------------------------------------------------------------------------ OptimizerConfig


def test_optimizer_defaults_are_the_official_configs() -> None:
    assert dataclasses.astuple(OptimizerConfig()) == (1e-4, (0.8, 0.99), 1e-9, 0.01, 0.999)
    assert HIERSPEECH2_OPTIMIZER == OptimizerConfig()
    assert dataclasses.astuple(TTV_OPTIMIZER) == (2e-4, (0.8, 0.99), 1e-9, 0.01, 0.999)
    assert dataclasses.astuple(SPEECHSR48K_OPTIMIZER) == (1e-4, (0.8, 0.99), 1e-9, 0.01, 0.995)
    defaults = {
        task: inspect.signature(task).parameters["optimizer"].default
        for task in (TTVTask, SpeechSRTask, HierSpeech2Task)
    }
    assert defaults == {
        TTVTask: TTV_OPTIMIZER,
        SpeechSRTask: SPEECHSR48K_OPTIMIZER,
        HierSpeech2Task: HIERSPEECH2_OPTIMIZER,
    }
    assert inspect.signature(GANTask).parameters["optimizer"].default is HIERSPEECH2_OPTIMIZER


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [("learning_rate", 0.0, "learning_rate must be > 0"), ("learning_rate", float("nan"), "learning_rate"),
     ("betas", (0.8, 1.0), "betas must be two numbers in [0, 1)"), ("betas", (0.9,), "betas must be two"),
     ("eps", -1e-9, "eps must be >= 0"), ("weight_decay", float("inf"), "weight_decay must be >= 0"),
     ("lr_decay", 0.0, "lr_decay must be in (0, 1]"), ("lr_decay", 1.5, "lr_decay must be in (0, 1]")],
)  # fmt: skip
def test_optimizer_config_refuses_settings_that_fail_in_training(field, value, words) -> None:
    with pytest.raises(ValueError, match="invalid optimizer settings") as error:
        OptimizerConfig(**{field: value})
    assert words in str(error.value)


def test_optimizer_config_is_frozen_and_keeps_betas_as_a_tuple() -> None:
    config = OptimizerConfig(betas=[0.5, 0.9])
    assert config.betas == (0.5, 0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.learning_rate = 1.0
    # a checkpoint's hyper-parameters hold it as a dict (betas as a list)
    as_dict = {"learning_rate": 3e-4, "betas": [0.5, 0.9], "eps": 1e-8, "weight_decay": 0.0, "lr_decay": 0.5}
    assert OptimizerConfig.coerce(as_dict) == OptimizerConfig(3e-4, (0.5, 0.9), 1e-8, 0.0, 0.5)
    assert OptimizerConfig.coerce(config) is config


def test_build_gives_adamw_and_a_per_epoch_exponential_decay() -> None:
    parameter = nn.Parameter(torch.zeros(3))
    optimizer, scheduler = OptimizerConfig(3e-4, (0.5, 0.9), 1e-8, 0.02, 0.5).build([parameter])
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        3e-4,
        (0.5, 0.9),
        1e-8,
        0.02,
    )
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert group["lr"] == pytest.approx(3e-4 * 0.5**2)


def test_gan_task_builds_one_optimizer_per_network_from_the_config() -> None:
    from tiny_training import tiny_speechsr_task

    task = tiny_speechsr_task(optimizer=OptimizerConfig(learning_rate=5e-4, lr_decay=0.9))
    (opt_g, opt_d), (sched_g, sched_d) = task.configure_optimizers()
    assert {id(p) for p in opt_g.param_groups[0]["params"]} == {id(p) for p in task.model.parameters()}
    assert {id(p) for p in opt_d.param_groups[0]["params"]} == {
        id(p) for p in task.discriminator.parameters()
    }
    for optimizer, scheduler in ((opt_g, sched_g), (opt_d, sched_d)):
        assert optimizer.param_groups[0]["lr"] == 5e-4 and scheduler.gamma == 0.9


# ------------------------------------------------------------------------------ hyper-parameters


def test_python_built_task_saves_plain_hyperparameters_and_reloads(tmp_path) -> None:
    torch.manual_seed(0)
    task = tiny_ttv_task(optimizer=OptimizerConfig(learning_rate=3e-3, lr_decay=0.9))
    # submodules stay out (the state dict holds them); the optimizer config is a plain dict
    assert "model" not in task.hparams
    assert task.hparams["optimizer"] == {
        "learning_rate": 3e-3, "betas": [0.8, 0.99], "eps": 1e-9, "weight_decay": 0.01, "lr_decay": 0.9,
    }  # fmt: skip
    assert task.hparams_initial["optimizer"] == task.hparams["optimizer"]
    run = trainer(max_steps=1)
    run.fit(task, tiny_ttv_data())
    path = tmp_path / "task.ckpt"
    run.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)  # no pickled classes in it
    assert checkpoint["hyper_parameters"]["pitch_window"] == 8
    reloaded = TTVTask.load_from_checkpoint(path, model=TextToVec(**TINY_TTV))
    assert reloaded.optimizer_config == OptimizerConfig(learning_rate=3e-3, lr_decay=0.9)
    for key, value in task.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key


def test_cli_built_task_keeps_the_recipe_config_and_reloads_from_it(tmp_path, capsys) -> None:
    # Relies on LightningCLI marking the hyper-parameters it hands a module with "_instantiator": if
    # Lightning stops doing so, the submodule configs below go missing and this test fails.
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(TINY_TTV_RECIPE))
    args = ["-c", str(recipe), "--trainer.accelerator", "cpu", "--trainer.max_steps", "1"]
    args += ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    args += ["--trainer.default_root_dir", str(tmp_path)]
    cli = HierSpeechCLI(args, run=False)
    hparams = cli.model.hparams
    assert hparams["model"]["class_path"] == "hierspeech2.models.TextToVec"
    assert hparams["model"]["init_args"]["hidden_channels"] == TINY_TTV["hidden_channels"]
    assert hparams["optimizer"] == {
        "learning_rate": 2e-3, "betas": [0.8, 0.99], "eps": 1e-9, "weight_decay": 0.01, "lr_decay": 0.999,
    }  # fmt: skip
    assert cli.model.optimizer_config == OptimizerConfig(learning_rate=2e-3)
    cli.trainer.fit(cli.model, cli.datamodule)
    path = tmp_path / "cli.ckpt"
    cli.trainer.save_checkpoint(path)
    torch.load(path, weights_only=True)
    # the task and its tiny model are rebuilt from the checkpoint alone
    reloaded = TTVTask.load_from_checkpoint(path)
    assert reloaded.model.config == cli.model.model.config
    assert reloaded.optimizer_config == OptimizerConfig(learning_rate=2e-3)
    for key, value in cli.model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key


# ------------------------------------------------------------------------------ random generators


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path) -> None:
    torch.manual_seed(3)
    random.seed(3)
    states = collect_rng_states(torch.device("cpu"))
    assert set(states) == {"torch", "python"}
    expected = (torch.rand(4), random.random())
    torch.save({RNG_KEY: states}, tmp_path / "rng.pt")
    torch.rand(10), random.random()  # move both generators on
    restore_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True)[RNG_KEY], torch.device("cpu"))
    again = (torch.rand(4), random.random())
    assert torch.equal(expected[0], again[0]) and expected[1] == again[1]


def test_rng_states_of_an_accelerator_go_through_its_torch_module(monkeypatch) -> None:
    # no accelerator here: a stand-in for torch.xpu's generator API (torch.cuda and torch.mps have the same)
    calls = []
    monkeypatch.setattr(torch.xpu, "get_rng_state", lambda device: torch.tensor([7, int(device.index)]))
    monkeypatch.setattr(
        torch.xpu, "set_rng_state", lambda state, device: calls.append((state.tolist(), device))
    )
    device = torch.device("xpu", 1)
    states = collect_rng_states(device)
    assert states["torch.xpu"].tolist() == [7, 1]
    restore_rng_states(states, device)
    # Lightning's layout (one state per visible device), which earlier checkpoints hold
    restore_rng_states(states | {"torch.xpu": [torch.tensor([0]), torch.tensor([5])]}, device)
    assert calls == [([7, 1], device), ([5], device)]
    # a state of another device type is left alone
    restore_rng_states(states, torch.device("cpu"))
    assert len(calls) == 2


# ------------------------------------------------------------------------------ DDP for GAN tasks


def test_gan_tasks_refuse_a_ddp_wrapper_that_ignores_unused_parameters(tmp_path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        module = nn.Linear(2, 2)
        with pytest.raises(SettingError, match="ddp_find_unused_parameters_true"):
            require_unused_parameter_detection(nn.parallel.DistributedDataParallel(module))
        require_unused_parameter_detection(
            nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)
        )
    finally:
        dist.destroy_process_group()
    require_unused_parameter_detection(module)  # not wrapped: nothing to check


@pytest.fixture
def trainer_strategies(monkeypatch) -> list:
    """The ``strategy`` each Trainer built from now on was given."""
    seen = []
    original = pl.Trainer.__init__

    @functools.wraps(original)  # the CLI reads the Trainer's options from this signature
    def recording(self, *args, **kwargs):
        seen.append(kwargs.get("strategy", "auto"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", recording)
    return seen


@pytest.mark.parametrize(
    ("recipe", "options", "given", "strategy_type"),
    [
        (TINY_SR_RECIPE, ["--trainer.devices", "2", "--trainer.strategy", "ddp"],
         ["ddp_find_unused_parameters_true"], DDPStrategy),
        (TINY_SR_RECIPE, ["--trainer.devices", "2", "--trainer.strategy", "ddp_spawn"],
         ["ddp_spawn_find_unused_parameters_true"], DDPStrategy),
        (TINY_SR_RECIPE, ["--trainer.devices", "2"],
         ["auto", "ddp_find_unused_parameters_true"], DDPStrategy),
        (TINY_SR_RECIPE, ["--trainer.devices", "2", "--trainer.strategy", "ddp_find_unused_parameters_false"],
         ["ddp_find_unused_parameters_false"], DDPStrategy),
        (TINY_SR_RECIPE, ["--trainer.devices", "1"], ["auto"], SingleDeviceStrategy),
        (TINY_TTV_RECIPE,
         ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu"],
         ["ddp"], DDPStrategy),
    ],
    ids=["ddp", "ddp_spawn", "auto-ddp", "explicit-false", "auto-single", "not-gan"],
)  # fmt: skip
def test_lightning_command_makes_gan_ddp_find_unused_parameters(
    tmp_path, trainer_strategies, recipe, options, given, strategy_type
) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cli = HierSpeechCLI(["-c", str(path), "--trainer.default_root_dir", str(tmp_path), *options], run=False)
    assert trainer_strategies == given
    assert type(cli.trainer.strategy) is strategy_type
    # a Trainer built twice ("auto" that chose DDP) has the recipe's and the CLI's callbacks once each
    kinds = [type(callback) for callback in cli.trainer.callbacks]
    if recipe is TINY_SR_RECIPE:
        assert kinds.count(ModelCheckpoint) == 1
    assert kinds.count(SaveConfigCallback) == 1
