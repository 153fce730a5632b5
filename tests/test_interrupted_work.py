"""Interrupted work: training killed mid-epoch resumes; a full disk or read-only output fails cleanly.

Writing audio, streaming a pipeline's output, cache items and native exports all go through a
temporary file and a rename. A failing write (simulated: the machine runs as root, so a chmod'ed
folder would stay writable) must raise an :class:`~hierspeech2.errors.OutputError` naming the
path, remove its temporary file and leave an earlier good output byte for byte as it was.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import tiny_models
import torch
import yaml

import hierspeech2.audio
import hierspeech2.audio_stream
import hierspeech2.data.cache
from hierspeech2.audio import save_audio
from hierspeech2.data.cache import CacheRecord, FeatureCache, atomic_write_text
from hierspeech2.errors import HierSpeechError, OutputError
from hierspeech2.models import SpeechSR
from hierspeech2.pipelines import SuperResolution
from hierspeech2.tasks.base import EXPORT_KEY
from hierspeech2.tasks.export import export, main

ROOT = Path(__file__).resolve().parents[1]
FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
READ_ONLY = PermissionError(errno.EROFS, os.strerror(errno.EROFS))


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fails_after_partial_write(error: OSError, target_index: int = 0):
    """A stand-in writer: leaves a few bytes at its target (a half-written file), then raises ``error``."""

    def write(*args, **kwargs):
        Path(os.fspath(args[target_index])).write_bytes(b"partial")
        raise error

    return write


def assert_clean_failure(caught: pytest.ExceptionInfo, path: Path, words: str) -> None:
    assert isinstance(caught.value, HierSpeechError) and isinstance(caught.value, OSError)
    message = str(caught.value)
    assert str(path) in message and words in message


# ------------------------------------------------------------------- full disk / read-only output


@pytest.mark.parametrize(("error", "words"), [(FULL, "disk is full"), (READ_ONLY, "read-only")])
def test_save_audio_failure_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch, error, words) -> None:
    path = tmp_path / "out.wav"
    save_audio(path, torch.full((1600,), 0.25), 16_000)
    before = listing(tmp_path)
    monkeypatch.setattr(hierspeech2.audio.sf, "write", fails_after_partial_write(error))
    with pytest.raises(OutputError) as caught:
        save_audio(path, torch.zeros(3200), 16_000)
    assert_clean_failure(caught, path, words)
    assert listing(tmp_path) == before


def test_pipeline_process_file_on_full_disk_keeps_the_old_output(tmp_path, monkeypatch) -> None:
    pipeline = SuperResolution(tiny_models.speechsr(), batch_size=1)
    wav = torch.sin(torch.arange(8000) * 0.05) * 0.5
    path = tmp_path / "sr.wav"
    pipeline.process_file(wav, path, sample_rate=16_000)
    before = listing(tmp_path)
    assert list(before) == ["sr.wav"]

    class FullDiskSoundFile(sf.SoundFile):
        def write(self, data) -> None:
            raise FULL

    monkeypatch.setattr(hierspeech2.audio_stream.sf, "SoundFile", FullDiskSoundFile)
    with pytest.raises(OutputError) as caught:
        pipeline.process_file(wav * 0.5, path, sample_rate=16_000)
    assert_clean_failure(caught, path, "disk is full")
    assert listing(tmp_path) == before  # neither the scratch (.f32) nor the partial (.tmp) file stays


def test_pipeline_output_into_read_only_folder_is_a_clear_error(tmp_path, monkeypatch) -> None:
    pipeline = SuperResolution(tiny_models.speechsr())

    def read_only_open(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(hierspeech2.audio_stream, "open", read_only_open, raising=False)
    with pytest.raises(OutputError) as caught:
        pipeline.process_file(torch.zeros(3200), tmp_path / "x.wav", sample_rate=16_000)
    assert_clean_failure(caught, tmp_path / "x.wav", "read-only")
    assert listing(tmp_path) == {}


def _record(cache: FeatureCache) -> CacheRecord:
    return CacheRecord(
        id="u1", file=cache.item_path("s1", "u1").relative_to(cache.root).as_posix(), speaker="s1",
        language="en", text="hi", source="/data/u1.wav", sample_rate=16_000, num_samples=320,
        num_frames=1, num_tokens=0, voiced_frames=0,
    )  # fmt: skip


@pytest.mark.parametrize(("error", "words"), [(FULL, "disk is full"), (READ_ONLY, "read-only")])
def test_cache_item_write_failure_keeps_the_old_item(tmp_path, monkeypatch, error, words) -> None:
    cache = FeatureCache(tmp_path / "cache")
    record = _record(cache)
    path = cache.write_item(record, {"audio": torch.ones(320)})
    before = listing(cache.root)
    monkeypatch.setattr(hierspeech2.data.cache, "save_file", fails_after_partial_write(error, 1))
    with pytest.raises(OutputError) as caught:
        cache.write_item(record, {"audio": torch.zeros(320)})
    assert_clean_failure(caught, path, words)
    assert listing(cache.root) == before


def test_atomic_text_write_on_full_disk_keeps_the_old_text(tmp_path, monkeypatch) -> None:
    path = tmp_path / "manifest.jsonl"
    atomic_write_text(path, "old\n")

    def full_fsync(fd):
        raise FULL

    monkeypatch.setattr(hierspeech2.data.cache.os, "fsync", full_fsync)
    with pytest.raises(OutputError) as caught:
        atomic_write_text(path, "new and longer\n")
    assert_clean_failure(caught, path, "disk is full")
    assert listing(tmp_path) == {"manifest.jsonl": b"old\n"}


def _training_checkpoint(tmp_path: Path, model: SpeechSR) -> Path:
    record = {"model_class": "SpeechSR", "model_config": model._hub_mixin_config, "state_prefix": "model."}
    path = tmp_path / "last.ckpt"
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, EXPORT_KEY: record}, path)
    return path


def test_export_on_full_disk_keeps_the_previous_export(tmp_path, monkeypatch) -> None:
    import safetensors.torch

    out = tmp_path / "exported"
    checkpoint = _training_checkpoint(tmp_path, tiny_models.speechsr(seed=5))
    export(checkpoint, out)
    before = listing(out)
    assert {"config.json", "model.safetensors"} <= set(before)
    checkpoint = _training_checkpoint(tmp_path, tiny_models.speechsr(seed=6))
    monkeypatch.setattr(safetensors.torch, "save_file", fails_after_partial_write(FULL, 1))
    with pytest.raises(OutputError) as caught:
        export(checkpoint, out)
    assert_clean_failure(caught, out, "disk is full")
    assert listing(out) == before  # no staging folder, old weights and config intact
    # the command prints the message instead of a traceback
    with pytest.raises(SystemExit) as exit_info:
        main([str(checkpoint), str(out)])
    assert exit_info.value.code == 1


def test_export_into_read_only_folder_is_a_clear_error(tmp_path, monkeypatch) -> None:
    import tempfile

    def read_only_mkdtemp(*args, **kwargs):
        raise READ_ONLY

    checkpoint = _training_checkpoint(tmp_path, tiny_models.speechsr())
    monkeypatch.setattr(tempfile, "mkdtemp", read_only_mkdtemp)
    with pytest.raises(OutputError) as caught:
        export(checkpoint, tmp_path / "exported")
    assert_clean_failure(caught, tmp_path / "exported", "read-only")
    assert listing(tmp_path / "exported") == {}


def test_export_still_round_trips_and_keeps_an_existing_model_card(tmp_path) -> None:
    model = tiny_models.speechsr(seed=7)
    model.save_pretrained(tmp_path)
    (tmp_path / "README.md").write_text("my card\n")
    tiny_models.speechsr(seed=8).save_pretrained(tmp_path)
    loaded = SpeechSR.from_pretrained(tmp_path)
    assert torch.equal(
        loaded.state_dict()["generator.conv_pre.bias"],
        tiny_models.speechsr(seed=8).state_dict()["generator.conv_pre.bias"],
    )
    assert (tmp_path / "README.md").read_text() == "my card\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]


# ------------------------------------------------------------------- training killed mid-epoch

MAX_STEPS = 30
CHECKPOINT_EVERY = 5


def _kill_resume_recipe(tmp_path: Path) -> Path:
    """recipes/tiny/ttv.yaml on synthetic batches (no corpus to preprocess), one long epoch, checkpoints
    every 5 steps."""
    recipe = yaml.safe_load((ROOT / "recipes" / "tiny" / "ttv.yaml").read_text())
    model = recipe["model"]["init_args"]["model"]["init_args"]
    model.update(n_vocab=20, mel_channels=12, semantic_channels=24)
    recipe["data"] = {
        "class_path": "hierspeech2.tasks.synthetic.SyntheticTTVDataModule",
        "init_args": {"batch_size": 2, "train_size": 400, "val_size": 2, "n_vocab": 20,
                      "semantic_channels": 24, "mel_channels": 12},
    }  # fmt: skip
    trainer = recipe["trainer"]
    trainer.update(
        max_steps=MAX_STEPS, check_val_every_n_epoch=100, enable_progress_bar=False,
        default_root_dir=str(tmp_path / "run"), logger=False,
    )  # fmt: skip
    trainer["callbacks"] = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(tmp_path / "checkpoints"), "save_last": True, "save_top_k": -1,
                          "every_n_train_steps": CHECKPOINT_EVERY},
        }
    ]  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _fit(recipe: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "hierspeech2.training_cli", "fit", "-c", str(recipe), *extra]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_training_killed_mid_epoch_resumes_from_last_checkpoint(tmp_path) -> None:
    recipe = _kill_resume_recipe(tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    process = _fit(recipe)
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.exists(), (
        process.communicate(timeout=30)[0][-3000:] if process.poll() is not None else "no checkpoint"
    )
    process.send_signal(signal.SIGKILL)  # no chance to clean up or save anything more
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert CHECKPOINT_EVERY <= killed_at < MAX_STEPS, "the run finished before it was killed"

    resumed_at = time.time_ns()
    resumed = _fit(recipe, "--ckpt_path", "last")
    output = resumed.communicate(timeout=240)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert f"Restoring states from the checkpoint path at {last}" in output
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == MAX_STEPS
    assert final["epoch"] == 0  # still the first epoch: it was resumed mid-epoch, not restarted
    steps = sorted(int(p.stem.split("step=")[1]) for p in last.parent.glob("epoch=*-step=*.ckpt"))
    assert steps == list(range(CHECKPOINT_EVERY, MAX_STEPS + 1, CHECKPOINT_EVERY))
    # the resumed run continued the step counter: the checkpoints up to the kill are the first run's
    rewritten = {
        step for step in steps if (last.parent / f"epoch=0-step={step}.ckpt").stat().st_mtime_ns > resumed_at
    }
    assert rewritten == {step for step in steps if step > killed_at}
