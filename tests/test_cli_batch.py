"""The ``hierspeech2`` command for real use, in subprocesses: long text, batches, folders, every error path.

Models: the tiny random ones of tests/tiny_models.py saved as native folders and passed with
--backbone/--ttv/--mms/--denoiser (nothing is downloaded); SpeechSR: the packaged weights.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tiny_models

RATE = 16_000


def cli(*args: str, wait: bool = True, env: dict[str, str] | None = None):
    """Run ``python -m hierspeech2.cli ARGS``; with ``wait=False`` return the running process."""
    env = {**(os.environ if env is None else env), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hierspeech2.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return finish(process) if wait else process


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory, shared_dir) -> Path:
    """Tiny native models, 1 s speech clips and a voice prompt in one folder."""
    from hierspeech2.audio import load_audio

    folder = tmp_path_factory.mktemp("cli")
    tiny_models.save_all(folder / "models")
    for i in range(1, 4):
        speech = load_audio(shared_dir / "audio" / f"reference_{i}.wav")
        sf.write(folder / f"clip{i}.wav", speech[8000:24000].numpy(), RATE)  # 1 s: YAAPT is slow
    sf.write(folder / "voice.flac", load_audio(shared_dir / "audio" / "reference_4.wav").numpy(), RATE)
    (folder / "broken.wav").write_bytes(b"RIFF but not really audio")
    return folder


def tiny(work: Path, *roles: str) -> list[str]:
    models = work / "models"
    return [arg for role in roles for arg in (f"--{role}", str(models / role))] + [
        "--device",
        "cpu",
        "--quiet",
    ]


def test_tts_speaks_a_text_file_and_a_batch_with_a_bad_row(work: Path) -> None:
    chapter = work / "chapter.txt"
    chapter.write_text(
        "It was late. “Dr. Jones?” she asked… No answer came; the house was silent.\n\nThe end."
    )
    single = cli(
        "tts",
        "--text-file",
        str(chapter),
        "--prompt",
        str(work / "voice.flac"),
        "-o",
        str(work / "chapter.ogg"),
        "--output-rate",
        "16000",
        "--seed",
        "1",
        "--batch-size",
        "2",
        *tiny(work, "backbone", "ttv", "denoiser"),
        wait=False,
    )
    (work / "jobs.tsv").write_text(
        "text\tprompt\toutput\n"
        "Hello there.\tvoice.flac\tout/hello.wav\n"
        "# a comment line\n"
        "Second line, same voice.\tvoice.flac\tout/second.flac\n"
        "No voice here.\tmissing.wav\tout/missing.wav\n"
        "only two columns\tvoice.flac\n"
    )
    batch = cli(
        "tts",
        "--batch",
        str(work / "jobs.tsv"),
        "--output-rate",
        "16000",
        "--denoise-ratio",
        "0.5",
        *tiny(work, "backbone", "ttv", "denoiser"),
        wait=False,
    )
    result = finish(single)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    audio, rate = sf.read(work / "chapter.ogg")
    assert rate == RATE and audio.shape[0] > RATE and 0.9 < np.abs(audio).max() < 1.1  # Vorbis is lossy
    result = finish(batch)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr  # one per failed row, then the summary
    assert "jobs.tsv line 5" in lines[0] and "missing.wav" in lines[0]
    assert "jobs.tsv line 6" in lines[1] and "expected 3" in lines[1]
    assert "2 of 4 items failed" in lines[2]
    assert sf.info(work / "out" / "hello.wav").samplerate == RATE
    assert sf.info(work / "out" / "second.flac").frames > 0
    assert not (work / "out" / "missing.wav").exists()


def test_vc_batch_with_a_bad_row_and_a_single_file(work: Path, capsys) -> None:
    (work / "pairs.tsv").write_text(
        "clip1.wav\tclip3.wav\tconverted/one.wav\n"
        "broken.wav\tclip3.wav\tconverted/broken.wav\n"
        f"{work / 'clip2.wav'}\tclip3.wav\tconverted/two.flac\n"
    )
    batch = cli(
        "vc",
        "--batch",
        str(work / "pairs.tsv"),
        "--output-rate",
        "16000",
        "--denoise-ratio",
        "0",
        *tiny(work, "backbone", "mms"),
        wait=False,
    )
    # meanwhile, one file in this process (the subprocess above is the command as users run it)
    from hierspeech2 import cli as command

    code = command.main(
        [
            "vc",
            str(work / "clip1.wav"),
            str(work / "clip2.wav"),
            "-o",
            str(work / "single.wav"),
            "--output-rate",
            "24000",
            "--seed",
            "0",
            *tiny(work, "backbone", "mms", "denoiser"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert sf.info(work / "single.wav").samplerate == 24_000
    result = finish(batch)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "pairs.tsv line 2" in lines[0] and "broken.wav" in lines[0]
    assert "1 of 3 items failed" in lines[1]
    for name in ("one.wav", "two.flac"):
        info = sf.info(work / "converted" / name)
        assert info.samplerate == RATE and info.frames == (RATE // 1280 + 1) * 1280  # 1 s, padded as official


def test_sr_converts_a_folder_and_reports_the_unreadable_file(work: Path) -> None:
    folder = work / "to_upsample"
    (folder / "nested").mkdir(parents=True)
    for name in ("a.wav", "nested/b.flac"):
        sf.write(folder / name, np.sin(np.arange(4000) / 5).astype(np.float32) * 0.3, RATE)
    (folder / "c.wav").write_bytes(b"not audio at all")
    result = cli(
        "sr",
        str(folder),
        "-o",
        str(work / "upsampled"),
        "--output-rate",
        "24000",
        "--format",
        "flac",
        "--device",
        "cpu",
        "--quiet",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "c.wav" in lines[0] and "1 of 3 items failed" in lines[1]
    assert sf.info(work / "upsampled" / "a.flac").frames == 6000
    assert sf.info(work / "upsampled" / "nested" / "b.flac").samplerate == 24_000


def test_every_user_mistake_is_one_line_and_the_right_exit_code(work: Path) -> None:
    voice, clip, out = str(work / "voice.flac"), str(work / "clip1.wav"), str(work / "x.wav")
    usage = {  # exit code 2: the command line cannot work
        "tts without text": ("tts", "--prompt", voice, "-o", out),
        "tts text and batch": ("tts", "Hi.", "--batch", "jobs.tsv"),
        "vc without target": ("vc", clip, "-o", out),
        "unknown dtype": ("sr", clip, "-o", out, "--dtype", "float64"),
        "batch size 0": ("sr", clip, "-o", out, "--batch-size", "0"),
        "denoise ratio 2": ("vc", clip, voice, "-o", out, "--denoise-ratio", "2"),
        "sr 16 kHz": ("sr", clip, "-o", out, "--output-rate", "16000"),
    }
    failures = {  # exit code 1: a file, a text or a name that does not work
        "missing prompt": (("tts", "Hi.", "--prompt", str(work / "nope.wav"), "-o", out), "nope.wav"),
        "empty text": (("tts", "   ", "--prompt", voice, "-o", out), "empty"),
        "missing text file": (
            ("tts", "--text-file", str(work / "no.txt"), "--prompt", voice, "-o", out),
            "no.txt",
        ),
        "missing source": (("vc", str(work / "gone.wav"), voice, "-o", out), "gone.wav"),
        "unreadable audio": (("sr", str(work / "broken.wav"), "-o", out), "broken.wav"),
        "unknown model": (
            ("tts", "Hi.", "--prompt", voice, "-o", out, "--model", "hierspeech9"),
            "hierspeech9",
        ),
        "bad extension": (("sr", clip, "-o", str(work / "x.mp9")), "x.mp9"),
        "no cuda": (("sr", clip, "-o", out, "--device", "cuda:7"), "cuda"),
        "missing batch": (("vc", "--batch", str(work / "none.tsv")), "none.tsv"),
    }
    running = {name: cli(*args, wait=False) for name, args in usage.items()}
    running |= {name: cli(*args, wait=False) for name, (args, _) in failures.items()}
    for name in usage:
        result = finish(running[name])
        assert result.returncode == 2, (name, result.stderr)
        assert "Traceback" not in result.stderr, name
    for name, (_, fragment) in failures.items():
        if name == "no cuda" and _cuda_available():
            continue
        one_line_error(finish(running[name]), 1, fragment)
    assert not (work / "x.wav").exists()


def test_vc_with_a_hub_mms_id_and_no_hub_fails_before_loading_anything(work: Path, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env |= {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "x.wav"
    result = cli("vc", str(work / "clip1.wav"), str(work / "voice.flac"), "-o", str(out),
                 "--mms", "facebook/mms-300m",
                 "--denoise-ratio", "0", *tiny(work, "backbone"), env=env)  # fmt: skip
    one_line_error(result, 1, "facebook/mms-300m", "hierspeech2 download mms-300m")
    assert list(tmp_path.iterdir()) == []


def test_help_of_every_audio_command_has_examples_and_the_common_options() -> None:
    running = {command: cli(command, "--help", wait=False) for command in ("sr", "vc", "tts")}
    for command, process in running.items():
        result = finish(process)
        assert result.returncode == 0 and "examples:" in result.stdout
        for option in ("--device", "--dtype", "--seed", "--output-rate", "--quiet", "--batch-size"):
            assert option in result.stdout, (command, option)
        if command != "sr":
            assert "--batch" in result.stdout and "--denoise-ratio" in result.stdout


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_vc_int8_stays_close_to_float32_and_refuses_other_dtypes(work: Path, capsys) -> None:
    from hierspeech2 import cli as command

    outputs = {}
    for name, extra in (("fp32", []), ("int8", ["--int8"])):
        path = work / f"vc_{name}.wav"
        arguments = ["vc", str(work / "clip1.wav"), str(work / "clip2.wav"), "-o", str(path)]
        arguments += ["--output-rate", "16000", "--seed", "3", "--denoise-ratio", "0", *extra]
        assert command.main([*arguments, *tiny(work, "backbone", "mms")]) == 0, capsys.readouterr().err
        outputs[name], _ = sf.read(path)
    assert outputs["int8"].shape == outputs["fp32"].shape
    difference = np.abs(outputs["int8"] - outputs["fp32"]).mean() / np.abs(outputs["fp32"]).mean()
    assert 0 < difference < 0.5  # quantised (MMS's Linear layers), yet the same conversion

    result = cli("vc", str(work / "clip1.wav"), str(work / "clip2.wav"), "-o", str(work / "x.wav"),
                 "--int8", "--dtype", "bfloat16", *tiny(work, "backbone", "mms"))  # fmt: skip
    one_line_error(result, 2, "--int8", "--dtype bfloat16")


def test_tts_in_half_precision_keeps_text_to_vec_in_float32(work: Path, capsys, monkeypatch) -> None:
    import torch

    from hierspeech2 import cli as command
    from hierspeech2 import pipelines

    seen = {}
    original = pipelines.TextToSpeech.__init__

    def spy(self, ttv, *args, **kwargs):
        seen["ttv"] = next(ttv.parameters()).dtype
        seen["backbone"] = next(kwargs["backbone"].parameters()).dtype
        original(self, ttv, *args, **kwargs)

    monkeypatch.setattr(pipelines.TextToSpeech, "__init__", spy)
    output = work / "half.wav"
    arguments = [
        "tts",
        "Hello.",
        "--prompt",
        str(work / "clip1.wav"),
        "-o",
        str(output),
        "--output-rate",
        "16000",
    ]
    arguments += ["--dtype", "float16", "--seed", "0", "--denoise-ratio", "0", *tiny(work, "backbone", "ttv")]
    assert command.main(arguments) == 0, capsys.readouterr().err
    assert seen == {"ttv": torch.float32, "backbone": torch.float16}
    audio, rate = sf.read(output)
    assert rate == RATE and np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_vc_and_tts_on_onnxruntime_match_torch(
    work: Path, capsys, tmp_path, monkeypatch, tiny_onnx_exports
) -> None:
    pytest.importorskip("onnxscript")
    from hierspeech2 import cli as command

    monkeypatch.setenv("HIERSPEECH2_CACHE", str(tmp_path / "cache"))
    # The session's exports of the same tiny weights (tests/test_onnx.py checks the export itself):
    # the CLI must find them in its cache by the weights it loaded, and export nothing again.
    for kind in ("backbone", "ttv"):
        exported = tiny_onnx_exports(kind)
        shutil.copytree(exported, tmp_path / "cache" / "onnx" / exported.name)
    outputs = {}
    for engine in ("torch", "onnxruntime"):
        path = work / f"vc_{engine}.wav"
        arguments = ["vc", str(work / "clip1.wav"), str(work / "clip2.wav"), "-o", str(path)]
        arguments += ["--output-rate", "16000", "--noise-scale", "0", "--denoise-ratio", "0"]
        arguments += ["--engine", engine, *tiny(work, "backbone", "mms")]
        assert command.main(arguments) == 0, capsys.readouterr().err
        outputs[engine], _ = sf.read(path)
    assert outputs["torch"].shape == outputs["onnxruntime"].shape
    assert np.abs(outputs["torch"] - outputs["onnxruntime"]).max() <= 2 / 32768 + 1e-4  # 16-bit WAVs
    assert len(list((tmp_path / "cache" / "onnx").glob("backbone-*"))) == 1  # exported once, cached
    for engine in ("torch", "onnxruntime"):  # the same seed: the same durations and prior draws
        path = work / f"tts_{engine}.wav"
        arguments = ["tts", "Two short words.", "--prompt", str(work / "clip2.wav"), "-o", str(path)]
        arguments += [
            "--output-rate",
            "16000",
            "--noise-scale",
            "0",
            "--denoise-ratio",
            "0",
            "--seed",
            "5",
        ]
        arguments += ["--engine", engine, *tiny(work, "backbone", "ttv")]
        assert command.main(arguments) == 0, capsys.readouterr().err
        outputs[engine], _ = sf.read(path)
    assert outputs["torch"].shape == outputs["onnxruntime"].shape
    assert np.abs(outputs["torch"] - outputs["onnxruntime"]).max() <= 2 / 32768 + 1e-4
    assert len(list((tmp_path / "cache" / "onnx").glob("ttv-*"))) == 1
    result = cli("vc", str(work / "clip1.wav"), str(work / "clip2.wav"), "-o", str(work / "x.wav"),
                 "--engine", "onnxruntime", "--int8", *tiny(work, "backbone", "mms"))  # fmt: skip
    one_line_error(result, 2, "--engine onnxruntime runs float32 on the CPU")
