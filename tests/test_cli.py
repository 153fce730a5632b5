"""The ``hierspeech2`` command, run as a user would: through a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello_16k.wav"
FAMILIES = "backbone, ttv, speechsr, mms, denoiser, tts, vc"
# The Hub's absence is decided by one HEAD request without retries; before, huggingface_hub's
# backed-off retries took about 30 s. The bound leaves room for a loaded machine.
OFFLINE_FAILURE_MAX_S = 10.0


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hierspeech2.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def one_line(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def clip(tmp_path: Path, seconds: float = 1.0) -> Path:
    """The first ``seconds`` of the example, as a 16 kHz WAV in ``tmp_path``."""
    audio, rate = sf.read(EXAMPLE, dtype="float32")
    path = tmp_path / "clip.wav"
    sf.write(path, audio[: int(seconds * rate)], rate)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")}


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


def test_restated_names_follow_their_torch_importing_sources() -> None:
    # options.F0_METHOD_NAMES and cli.models.FAMILIES are restated so that `--help` imports neither
    # torch nor the registry; the originals must stay the same.
    from hierspeech2.cli.models import FAMILIES as MODEL_FAMILIES_LISTED
    from hierspeech2.options import F0_METHOD_NAMES
    from hierspeech2.pitch import F0_METHODS
    from hierspeech2.registry import MODEL_FAMILIES, PIPELINES

    assert F0_METHOD_NAMES == F0_METHODS
    assert MODEL_FAMILIES_LISTED == (*MODEL_FAMILIES, *PIPELINES)


def test_defaults_come_from_the_pipeline_options() -> None:
    from hierspeech2.cli import build_parser
    from hierspeech2.options import TextToSpeechOptions, VoiceConversionOptions

    vc = build_parser("vc").parse_args(["vc"])
    assert (vc.noise_scale, vc.f0) == tuple(
        map(VoiceConversionOptions.default, ("noise_scale", "f0_extractor"))
    )
    tts = build_parser("tts").parse_args(["tts"])
    fields = ("noise_scale_ttv", "noise_scale_vc", "noise_scale_w", "length_scale", "max_piece_chars")
    assert (
        tts.noise_scale_ttv,
        tts.noise_scale,
        tts.noise_scale_w,
        tts.length_scale,
        tts.max_chars,
    ) == tuple(map(TextToSpeechOptions.default, fields))


def test_help_imports_no_torch() -> None:
    script = (
        "import sys\n"
        "from hierspeech2.cli import main\n"
        "for command in ('', 'sr', 'vc', 'tts', 'evaluate', 'testset', 'models', 'download', 'convert'):\n"
        "    try:\n"
        "        main([command, '--help'] if command else ['--help'])\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, (command, exit.code)\n"
        "    assert 'torch' not in sys.modules, f'{command} --help imported torch'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_bfloat16_on_a_cpu_without_native_support_warns(caplog) -> None:
    import argparse

    import torch

    from hierspeech2.cli.common import resolve_runtime

    with caplog.at_level("WARNING", logger="hierspeech2"):
        runtime = resolve_runtime(argparse.Namespace(device="cpu", dtype="bfloat16"))
    assert runtime.dtype == torch.bfloat16
    emulated = not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert ("no native bfloat16" in caplog.text) == emulated
    caplog.clear()
    with caplog.at_level("WARNING", logger="hierspeech2"):
        resolve_runtime(argparse.Namespace(device="cpu", dtype="float32"))
    assert caplog.text == ""


# ------------------------------------------------------------------------------ no Hub, no network


@pytest.mark.parametrize("how", ["offline", "unreachable"])
@pytest.mark.parametrize(
    ("command", "parts"),
    [
        ("tts", "ttv-lt960, hierspeech2-v1.1 and denoiser"),
        ("vc", "hierspeech2-v2, mms-300m and denoiser"),
    ],
)
def test_synthesis_without_the_hub_fails_in_seconds_in_one_line(command, parts, how, tmp_path) -> None:
    prompt = clip(tmp_path)
    out = tmp_path / "x.wav"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HIERSPEECH2_"))}
    env["HF_HOME"] = str(tmp_path / "hf-home")
    if how == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # a closed loopback port: refused at once
    args = ["tts", "Hello", "--prompt", str(prompt)] if command == "tts" else ["vc", str(prompt), str(prompt)]
    before = files_under(tmp_path)
    start = time.perf_counter()
    result = run_cli(*args, "-o", str(out), env=env)
    elapsed = time.perf_counter() - start
    line = one_line(result, 1)
    assert elapsed < OFFLINE_FAILURE_MAX_S, elapsed
    assert line.startswith(f"hierspeech2 {command}: error: ")
    assert parts in line and f"`hierspeech2 download hierspeech2-{command}`" in line
    assert ("HF_HUB_OFFLINE=1 forbids downloading them" in line) == (how == "offline")
    assert ("cannot reach http://127.0.0.1:" in line and "Connection refused" in line) == (
        how == "unreachable"
    )
    assert files_under(tmp_path) == before  # no output, no cache folder, no partial file


# ---------------------------------------------------------------------------- sr models and outputs


def test_sr_official_checkpoint_runs_at_its_own_rate(tmp_path, shared_dir) -> None:
    checkpoint = shared_dir / "checkpoints" / "official" / "speechsr24k_G_340000.pth"
    source = clip(tmp_path)
    out = tmp_path / "out.wav"
    result = run_cli("sr", str(source), "-o", str(out), "--checkpoint", str(checkpoint), "--quiet")
    assert result.returncode == 0, result.stderr
    assert sf.info(out).samplerate == 24_000 and sf.info(out).frames == 24_000

    result = run_cli("sr", str(source), "-o", str(tmp_path / "x.wav"), "--checkpoint", str(checkpoint),
                     "--output-rate", "48000")  # fmt: skip
    line = one_line(result, 1)
    assert "is a 24000 Hz SpeechSR, but --output-rate 48000 was asked" in line
    assert not (tmp_path / "x.wav").exists()


def test_sr_writes_mp3_that_reads_back_like_the_wav(tmp_path) -> None:
    source = clip(tmp_path)
    wav, mp3 = tmp_path / "out.wav", tmp_path / "out.mp3"
    for out in (wav, mp3):
        result = run_cli("sr", str(source), "-o", str(out), "--rate", "24000", "--threads", "1", "--quiet")
        assert result.returncode == 0, result.stderr
    info = sf.info(mp3)
    assert (info.format, info.samplerate, info.frames) == ("MP3", 24_000, 24_000)
    reference, _ = sf.read(wav, dtype="float32")
    decoded, _ = sf.read(mp3, dtype="float32")
    assert decoded.shape == reference.shape  # gapless: no encoder delay or padding
    error = decoded - reference
    assert 10 * np.log10(np.mean(reference**2) / np.mean(error**2)) > 15.0  # lossy, but aligned and close


def test_unknown_output_extension_lists_the_formats(tmp_path) -> None:
    line = one_line(run_cli("sr", str(EXAMPLE), "-o", str(tmp_path / "x.xyz")), 1)
    assert "x.xyz" in line and ".wav, .flac, .ogg or .mp3" in line


def test_folder_input_needs_an_output_folder(tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    clip(folder)
    line = one_line(run_cli("sr", str(folder), "-o", str(tmp_path / "single.wav")), 2)
    assert "single.wav" in line and "folder" in line
    assert not (tmp_path / "single.wav").exists()


def test_export_of_a_file_that_is_no_checkpoint_is_one_clear_line(tmp_path) -> None:
    line = one_line(run_cli("export", str(EXAMPLE), str(tmp_path / "out")), 1)
    assert "hello_16k.wav is not a Lightning checkpoint" in line and "pop from empty list" not in line
    assert not (tmp_path / "out").exists()


def test_models_refuses_an_unknown_family() -> None:
    line = one_line(run_cli("models", "--family", "nope"), 2)
    assert "--family nope" in line and FAMILIES in line
    listing = run_cli("models", "--family", "speechsr")
    assert listing.returncode == 0
    assert [row.split()[0] for row in listing.stdout.splitlines()[1:]] == ["speechsr-24k", "speechsr-48k"]


# ---------------------------------------------------------------------------------------- threads


def test_threads_applies_to_the_run_and_is_validated(monkeypatch, capsys) -> None:
    import torch

    from hierspeech2 import cli

    seen = []
    add, _ = cli.COMMANDS["models"]
    monkeypatch.setitem(cli.COMMANDS, "models", (add, lambda args: seen.append(torch.get_num_threads())))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert cli.main(["models", "--threads", "1"]) == 0
        assert cli.main(["models"]) == 0  # default: torch's own setting
        assert seen == [1, 2]
        assert torch.get_num_threads() == 2  # restored: main may run in-process
    finally:
        torch.set_num_threads(before)
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["models", "--threads", bad])
        assert exit_info.value.code == 2
        assert (
            f"--threads: expected a whole number of threads, at least 1, got '{bad}'"
            in capsys.readouterr().err
        )


def test_every_command_has_threads() -> None:
    for command in (
        "sr",
        "vc",
        "tts",
        "evaluate",
        "testset",
        "models",
        "download",
        "convert",
        "preprocess",
        "export",
    ):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "--threads" in result.stdout, command


def test_lightning_threads_option(monkeypatch, tmp_path) -> None:
    import torch

    from hierspeech2.training_cli import HierSpeechCLI

    monkeypatch.chdir(tmp_path)
    boring = "lightning.pytorch.demos.boring_classes"
    args = [
        "--model",
        f"{boring}.BoringModel",
        "--data",
        f"{boring}.BoringDataModule",
        "--trainer.logger",
        "false",
    ]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        HierSpeechCLI(args=[*args, "--threads", "1"], run=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exit_info:
        HierSpeechCLI(args=[*args, "--threads", "0"], run=False)
    assert exit_info.value.code == 2


def test_huggingface_hub_messages_print_once() -> None:
    # huggingface_hub has a log handler of its own; the CLI's root handler printed its retries a second time
    script = (
        "import logging, sys\n"
        "import huggingface_hub.file_download\n"
        "from hierspeech2 import cli\n"
        "add, _ = cli.COMMANDS['models']\n"
        "log = logging.getLogger('huggingface_hub.utils._http')\n"
        "cli.COMMANDS['models'] = (add, lambda args: log.warning('Retrying in 1s [Retry 1/5].'))\n"
        "sys.exit(cli.main(['models']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Retrying in 1s") == 1
