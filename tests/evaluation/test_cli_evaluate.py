"""``hierspeech2 testset`` and ``evaluate`` in-process and offline (packaged SpeechSR, tiny models)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import soundfile as sf

from hierspeech2.cli import build_parser, main
from hierspeech2.evaluation import EvaluationJob, read_jobs, write_jobs
from hierspeech2.options import EvaluationOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tiny_models

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@pytest.fixture(scope="module")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared reference material not found at {SHARED}")
    return SHARED


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def test_testset_writes_a_libritts_job_list(shared, tmp_path):
    output = tmp_path / "lt" / "jobs.tsv"
    corpus = shared / "data" / "mini-libritts"
    window = ["--subset", "train-clean-100", "--min-seconds", "4", "--max-seconds", "6"]
    assert main(["testset", "libritts-test-clean", str(corpus), "-o", str(output), "--quiet", *window]) == 0
    jobs = read_jobs(output)
    assert len(jobs) == 6 and all(job.text and job.prompt.exists() and job.reference.exists() for job in jobs)
    assert all(job.prompt != job.reference for job in jobs)
    assert (
        main(["testset", "vctk", str(corpus), "-o", str(tmp_path / "v.tsv"), "--quiet"]) == 1
    )  # no VCTK here


def test_evaluate_runs_super_resolution_then_scores_it(shared, tmp_path, capsys):
    jobs = [
        EvaluationJob(f"clip{i}", source=shared / "audio" / f"reference_{i}.wav", reference=None)
        for i in (1, 2)
    ]
    job_list = write_jobs(jobs, tmp_path / "jobs.tsv")
    output = tmp_path / "results.csv"
    command = [
        "evaluate",
        str(job_list),
        "--run",
        "sr",
        "-o",
        str(output),
        "--offline",
        "--metrics",
        "f0,mos",
    ]
    assert main(command) == 0
    made = tmp_path / "results_audio" / "clip1.wav"
    assert sf.info(made).samplerate == 48_000
    rows = _rows(output)
    # SpeechSR keeps the 16 kHz band: its output has the source's F0 track
    assert all(float(rows[key]["f0_pearson"]) > 0.95 and float(rows[key]["vuv_f1"]) > 0.9 for key in rows)
    printed = capsys.readouterr().out
    assert "2 jobs, 0 failed" in printed and "f0_pearson" in printed and "mos" in printed
    summary = json.loads(output.with_suffix(".summary.json").read_text())
    assert summary["scores"]["mos"]["count"] == 2
    stamp = made.stat().st_mtime_ns
    assert main(command) == 0  # resumed: nothing made or scored again
    assert made.stat().st_mtime_ns == stamp and len(_rows(output)) == 2


def test_evaluate_runs_tts_with_local_models(shared, tmp_path):
    models = tiny_models.save_all(tmp_path / "models")
    voice = shared / "audio" / "reference_4.wav"
    jobs = [
        EvaluationJob("hello", text="Hello there.", prompt=voice),
        EvaluationJob("bye", text="Bye now.", prompt=voice),
    ]
    job_list = write_jobs(jobs, tmp_path / "jobs.tsv")
    run_args = " ".join(f"--{role} {models[role]}" for role in ("backbone", "ttv", "denoiser"))
    output = tmp_path / "results.csv"
    status = main(
        [
            "evaluate", str(job_list), "--run", "tts", "--run-args",
            f"{run_args} --output-rate 16000 --seed 0", "-o", str(output), "--offline",
            "--metrics", "wer,sim", "--quiet",
        ]
    )  # fmt: skip
    assert status == 0
    rows = _rows(output)
    assert set(rows) == {"hello", "bye"} and all(row["error"] == "" for row in rows.values())
    assert all(-1 <= float(row["speaker_similarity"]) <= 1 and row["wer"] for row in rows.values())
    assert sf.info(tmp_path / "results_audio" / "hello.wav").samplerate == 16_000


def test_evaluate_usage_errors(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none.tsv"), "-o", str(tmp_path / "r.csv")]) == 2
    assert "job list not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["evaluate", "jobs.tsv", "-o", "r.csv", "--metrics", "bleu"])
    assert exit.value.code == 2
    args = build_parser("evaluate").parse_args(["evaluate", "jobs.tsv", "-o", "r.csv"])
    assert (args.batch_size, args.f0, args.normalization) == tuple(
        map(EvaluationOptions.default, ("batch_size", "f0_method", "normalization"))
    )
