"""The ``hierspeech2`` command, run as a user would: through a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import soundfile as sf

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello_16k.wav"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hierspeech2.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_sr_writes_48k_audio(tmp_path) -> None:
    out = tmp_path / "hello_48k.wav"
    result = run_cli("sr", str(EXAMPLE), "-o", str(out))
    assert result.returncode == 0, result.stderr
    info = sf.info(out)
    frames_in = sf.info(EXAMPLE).frames
    assert info.samplerate == 48_000
    assert info.frames == 3 * frames_in
    audio, _ = sf.read(out)
    assert 0.99 < abs(audio).max() <= 1.0


def test_sr_24k_to_flac(tmp_path) -> None:
    out = tmp_path / "hello.flac"
    result = run_cli("sr", str(EXAMPLE), "-o", str(out), "--rate", "24000", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert sf.info(out).samplerate == 24_000


def test_missing_input_is_one_line_and_exit_1(tmp_path) -> None:
    result = run_cli("sr", str(tmp_path / "nope.wav"), "-o", str(tmp_path / "out.wav"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.wav" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out.wav").exists()


def test_unreadable_input_is_one_line_and_exit_1(tmp_path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio")
    result = run_cli("sr", str(bad), "-o", str(tmp_path / "out.wav"))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_bad_usage_exits_2() -> None:
    assert run_cli("sr").returncode == 2
    assert run_cli("sr", str(EXAMPLE), "-o", "x.wav", "--rate", "22050").returncode == 2
    assert run_cli("frobnicate").returncode == 2


def test_help_has_examples() -> None:
    result = run_cli("sr", "--help")
    assert result.returncode == 0 and "examples:" in result.stdout


def test_training_and_data_commands_are_wired() -> None:
    listing = run_cli("--help").stdout
    for command in ("preprocess", "fit", "validate", "test", "predict", "export"):
        assert command in listing
    assert "--model {backbone,ttv,speechsr}" in run_cli("preprocess", "--help").stdout
    assert "checkpoint" in run_cli("export", "--help").stdout
    fit_help = run_cli("fit", "--help")
    assert fit_help.returncode == 0 and "--config" in fit_help.stdout


def test_f0_choices_follow_the_pitch_module() -> None:
    from hierspeech2.cli import F0_METHOD_CHOICES
    from hierspeech2.pitch import F0_METHODS

    assert F0_METHOD_CHOICES == F0_METHODS


def test_bfloat16_on_a_cpu_without_native_support_warns(caplog) -> None:
    import argparse

    import torch

    from hierspeech2 import cli

    with caplog.at_level("WARNING", logger="hierspeech2"):
        runtime = cli._runtime(argparse.Namespace(device="cpu", dtype="bfloat16"))
    assert runtime.dtype == torch.bfloat16
    emulated = not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert ("no native bfloat16" in caplog.text) == emulated
    caplog.clear()
    with caplog.at_level("WARNING", logger="hierspeech2"):
        cli._runtime(argparse.Namespace(device="cpu", dtype="float32"))
    assert caplog.text == ""
