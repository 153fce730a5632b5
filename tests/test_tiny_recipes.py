"""The four tiny recipes as a user runs them: ``lightning fit -c recipes/tiny/X.yaml`` on a clean
checkout, offline.

Each run starts in a working directory laid out like a fresh clone (``recipes/`` and the shared
mini corpora at ``../shared``, no ``data/``, an empty Hugging Face cache and ``HF_HUB_OFFLINE=1``):
the datamodule builds its cache from the recipe's ``corpus_dir``, trains, and writes its logs and
checkpoints under ``lightning_logs/<name>/version_0/``. Nothing is written into the repository.
Runs are cut to a few steps here; the recipes' own lengths are timed by hand (README).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hierspeech2.data.cache import FeatureCache

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# recipe → (cache it builds, utterances cached, logger name, optimizer steps run here, a loss it logs)
RECIPES = {
    "ttv": ("data/tiny/ttv", 16, "tiny-ttv", 4, "train/loss"),
    "speechsr24k": ("data/tiny/sr24k", 16, "tiny-speechsr24k", 4, "train/mel"),
    "speechsr48k": ("data/tiny/sr48k", 1, "tiny-speechsr48k", 4, "train/mel"),
    "hierspeech2": ("data/tiny/backbone", 16, "tiny-hierspeech2", 6, "train/mel"),
}
GAN_RECIPES = {"speechsr24k", "speechsr48k", "hierspeech2"}  # two optimizer steps per batch


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A working directory like a clean checkout: ``recipes/`` here and ``../shared`` beside it, nothing
    else."""
    if not (SHARED / "data").is_dir():
        pytest.skip(
            f"shared mini corpora not found at {SHARED / 'data'} (clone the project next to ../shared)"
        )
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "recipes").symlink_to(ROOT / "recipes")
    (tmp_path / "shared").symlink_to(SHARED)
    return repo


def lightning(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The ``lightning`` console script (or its module) in ``cwd``, offline, with an empty Hugging Face
    cache."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(cwd.parent / "hf-home"),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("HF_HUB_CACHE", None)
    script = Path(sys.executable).with_name("lightning")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "hierspeech2.training_cli"]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_tiny_recipe_fits_offline_from_a_clean_checkout(checkout, name) -> None:
    cache_dir, utterances, logger_name, steps, loss = RECIPES[name]
    args = ["fit", "-c", f"recipes/tiny/{name}.yaml", "--trainer.max_steps", str(steps)]
    if name == "hierspeech2":
        # Lightning's default checkpointing saves after validation: validate the one epoch (6 steps) run here
        args += ["--trainer.check_val_every_n_epoch", "1"]
    result = lightning(checkout, *args, "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]

    cache = FeatureCache(checkout / cache_dir)
    assert cache.finished and len(cache.records()) == utterances
    if name in ("ttv", "hierspeech2"):  # the tiny seeded MMS stand-in, not facebook/mms-300m
        assert cache.read_config()["semantic"]["name"].startswith("random-wav2vec2(hidden_size=32,")
        assert cache.load(cache.records()[0])["semantic"].shape[0] == 32

    run = checkout / "lightning_logs" / logger_name / "version_0"
    checkpoints = sorted((run / "checkpoints").glob("*.ckpt"))
    assert checkpoints, sorted(
        str(path.relative_to(checkout)) for path in checkout.rglob("*") if path.is_file()
    )
    assert (run / "config.yaml").is_file()
    assert torch.load(checkpoints[-1], map_location="cpu", weights_only=True)["global_step"] == steps
    events = EventAccumulator(str(run))
    events.Reload()
    losses = [event.value for event in events.Scalars(loss)]
    assert len(losses) == (steps // 2 if name in GAN_RECIPES else steps)
    assert all(math.isfinite(value) for value in losses), losses
    # everything the run made is under data/ and lightning_logs/; nothing was downloaded
    assert sorted(path.name for path in checkout.iterdir()) == ["data", "lightning_logs", "recipes"]
    assert not list((checkout.parent / "hf-home").rglob("*.safetensors"))


def test_a_missing_cache_without_corpus_dir_is_one_line_naming_preprocess(checkout, monkeypatch) -> None:
    from hierspeech2.training_cli import main

    monkeypatch.chdir(checkout)
    stderr = io.StringIO()
    args = ["fit", "-c", "recipes/tiny/speechsr24k.yaml", "--data.init_args.corpus_dir", "null"]
    with (
        pytest.raises(SystemExit) as exit_info,
        contextlib.redirect_stderr(stderr),
        mock.patch.object(sys, "argv", ["lightning"]),
    ):
        main(args)
    assert exit_info.value.code == 1
    assert "Traceback" not in stderr.getvalue()
    assert stderr.getvalue().splitlines()[-1] == (
        "lightning: error: data/tiny/sr24k holds no feature cache: make it with "
        "`hierspeech2 preprocess CORPUS "
        "--model speechsr --target-rate 24000 --out data/tiny/sr24k` (it resumes where it stopped), or set "
        "data.init_args.corpus_dir to build it before training"
    )
    assert [path.name for path in checkout.iterdir()] == ["recipes"]  # no data/, no lightning_logs/
