"""The `lightning` command end to end, as a user runs it: fit a tiny recipe, export, load, synthesise; DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_models import one_thread
from tiny_training import LossHistory, shared_corpus_caches

from hierspeech2 import load_model
from hierspeech2.models import TextToVec
from hierspeech2.tasks import TTVTask
from hierspeech2.tasks.export import export
from hierspeech2.training_cli import HierSpeechCLI, main

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict[str, str]:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared mini corpora not found at {SHARED_DATA} (clone the project next to ../shared)")
    with one_thread():
        return shared_corpus_caches(SHARED_DATA, tmp_path_factory.mktemp("caches"))


def lightning(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # two OpenMP threads per process on two shared cores slow tiny models down ~50x
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "hierspeech2.training_cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_fit_tiny_ttv_recipe_then_export_and_load(tmp_path, caches) -> None:
    # the stand-in MMS of the test cache has 32 channels (MMS-300m: 1024)
    result = lightning(
        "fit", "-c", str(RECIPES / "tiny" / "ttv.yaml"),
        "--data.init_args.data_dir", caches["ttv"],
        "--model.init_args.model.init_args.semantic_channels", "32",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.name", "lightning_logs",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoints = sorted(tmp_path.glob("lightning_logs/version_0/checkpoints/*.ckpt"))
    assert [c.name for c in checkpoints][-1] == "last.ckpt"
    assert (tmp_path / "lightning_logs/version_0/config.yaml").is_file()
    # TensorBoard by default: the recipe's 24 steps are logged and the training loss fell
    events = EventAccumulator(str(tmp_path / "lightning_logs/version_0"))
    events.Reload()
    losses = [event.value for event in events.Scalars("train/loss")]
    assert len(losses) == 24
    assert sum(losses[-3:]) < 0.75 * sum(losses[:3]), losses
    assert {"train/semantic", "train/kl", "train/f0", "train/duration", "train/ctc", "val/loss"} <= set(
        events.Tags()["scalars"]
    )
    assert "val/0/semantic_synthesised" in events.Tags()["images"]

    out_dir = export(checkpoints[-1], tmp_path / "exported")
    model = load_model(out_dir)
    assert isinstance(model, TextToVec)
    checkpoint = torch.load(checkpoints[-1], weights_only=True)
    assert checkpoint["global_step"] == 24
    state = checkpoint["state_dict"]
    assert torch.equal(
        model.state_dict()["phoneme_classifier.weight"], state["model.phoneme_classifier.weight"]
    )
    tokens = torch.tensor([[0, 5, 0, 9, 0, 12, 0]])
    semantic, log_f0 = model.infer(
        tokens, torch.tensor([7]), torch.randn(2, 80, 40) - 4, torch.tensor([40, 40])
    )
    assert semantic.shape[:2] == (1, 32) and log_f0.shape[-1] == 4 * semantic.shape[-1]
    assert torch.isfinite(semantic).all()

    # fine-tuning starts from the exported weights (a registry name resolves the same way)
    task = TTVTask(TextToVec(**model.config), init_from=str(out_dir))
    for key, value in model.state_dict().items():
        assert torch.equal(task.model.state_dict()[key], value), key


def test_print_config_resolves_every_recipe(capsys) -> None:
    names = ["ttv", "speechsr24k", "speechsr48k"]
    for recipe in [RECIPES / f"{name}.yaml" for name in names] + [
        RECIPES / "tiny" / f"{name}.yaml" for name in names
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "-c", str(recipe), "--print_config"])
        assert exit_info.value.code in (0, None), recipe
        config = yaml.safe_load(capsys.readouterr().out)
        assert config["model"]["class_path"].startswith("hierspeech2.tasks."), recipe
        assert config["data"]["class_path"], recipe


GAN_SETTINGS = ["adversarial_weight", "feature_matching_weight", "grad_clip", "init_from",
                "discriminator_init_from", "log_examples", "max_nonfinite_steps"]  # fmt: skip
CACHE_SETTINGS = ["val_dir", "corpus_dir", "semantic_encoder", "semantic_layer", "f0_extractor"]
# settings a task or datamodule takes by name for its base class (**gan_options, **cache_options ...)
FORWARDED_SETTINGS = {
    "speechsr48k": {"model": GAN_SETTINGS},
    "ttv": {"model": ["init_from", "log_examples", "max_nonfinite_steps"], "data": CACHE_SETTINGS},
    "hierspeech2": {"model": GAN_SETTINGS, "data": CACHE_SETTINGS},
}


@pytest.mark.parametrize("name", sorted(FORWARDED_SETTINGS))
def test_recipes_set_the_settings_forwarded_to_base_classes(capsys, name) -> None:
    recipe = str(RECIPES / f"{name}.yaml")
    overrides = {"model": ("max_nonfinite_steps", "7", 7), "data": ("semantic_layer", "5", 5)}
    argv = ["fit", "-c", recipe, "--print_config"]
    for part in FORWARDED_SETTINGS[name]:
        key, text, _ = overrides[part]
        argv += [f"--{part}.init_args.{key}", text]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    for part, names in FORWARDED_SETTINGS[name].items():
        init_args = config[part]["init_args"]
        assert set(names) <= set(init_args), (part, sorted(set(names) - set(init_args)))
        key, _, value = overrides[part]
        assert init_args[key] == value
    # a misspelt forwarded setting is refused by the parser, not passed on
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", recipe, "--model.init_args.max_nonfinite_stepz", "7", "--print_config"])
    assert exit_info.value.code not in (0, None)
    capsys.readouterr()


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path, caches) -> None:
    extra = tmp_path / "callbacks.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "callbacks": [
                        {
                            "class_path": "rank_weights.SaveRankWeights",
                            "init_args": {"out_dir": str(tmp_path)},
                        }
                    ]
                }
            }
        )
    )
    result = lightning(
        "fit", "-c", str(RECIPES / "tiny" / "speechsr24k.yaml"), "-c", str(extra),
        "--data.init_args.data_dir", caches["sr24k"],
        "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "4",
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false",
        "--trainer.check_val_every_n_epoch", "100", "--trainer.logger", "false",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["steps"] for r in ranks] == [4, 4]
    assert ranks[0]["state"].keys() == ranks[1]["state"].keys()
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key


@pytest.mark.parametrize(
    ("recipe", "cache", "metric", "steps"),
    [("speechsr24k", "sr24k", "train/mel", 32), ("speechsr48k", "sr48k", "train/mel", 32)],
)
def test_tiny_recipe_loss_falls(tmp_path, caches, recipe, cache, metric, steps) -> None:
    args = ["--data.init_args.data_dir", caches[cache], "--trainer.logger", "false"]
    args += ["--trainer.enable_progress_bar", "false"]
    args += ["--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(tmp_path)]
    with one_thread():
        cli = HierSpeechCLI(["-c", str(RECIPES / "tiny" / f"{recipe}.yaml"), *args], run=False)
        history = LossHistory(metric)
        cli.trainer.callbacks.append(history)
        cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == steps
    start, end = sum(history.values[:3]) / 3, sum(history.values[-3:]) / 3
    assert end < 0.75 * start, (history.values[:3], history.values[-3:])
