"""evaluate_jobs on real speech with the offline models: per-utterance CSV, summary, resume."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from hierspeech2.audio import load_audio, resample, save_audio
from hierspeech2.errors import SettingError
from hierspeech2.evaluation import (
    EvaluationJob,
    EvaluationOptions,
    evaluate_jobs,
    read_jobs,
    runner,
    summarize,
    write_jobs,
)

SHARED_AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "audio"
OFFLINE = EvaluationOptions(batch_size=2).offline()


@pytest.fixture(scope="module")
def job_list(tmp_path_factory) -> Path:
    if not SHARED_AUDIO.is_dir():
        pytest.skip(f"shared test utterances not found at {SHARED_AUDIO}")
    folder = tmp_path_factory.mktemp("jobs")
    clips = [load_audio(SHARED_AUDIO / f"reference_{i}.wav") for i in (1, 2, 3)]
    texts = [(SHARED_AUDIO / f"reference_{i}.txt").read_text().strip() for i in (1, 2, 3)]
    save_audio(folder / "one_a.wav", clips[0][..., :24_000], 16_000)
    save_audio(folder / "one_b.wav", clips[0][..., 24_000:], 16_000)
    save_audio(folder / "two_a.wav", clips[1][..., :24_000], 16_000)
    save_audio(folder / "three_16k.wav", clips[2], 16_000)
    save_audio(folder / "three_48k_from_16k.wav", resample(clips[2], 16_000, 48_000), 48_000)
    jobs = [
        EvaluationJob("same", folder / "one_a.wav", texts[0], prompt=folder / "one_b.wav"),
        EvaluationJob("other", folder / "two_a.wav", texts[1], prompt=folder / "one_b.wav"),
        EvaluationJob("missing", folder / "not_made_yet.wav", texts[1], prompt=folder / "one_b.wav"),
        # super-resolution stand-in: 16 kHz content at 48 kHz, scored against itself and its source
        EvaluationJob(
            "sr",
            folder / "three_48k_from_16k.wav",
            source=folder / "three_16k.wav",
            reference=folder / "three_48k_from_16k.wav",
        ),
    ]
    return write_jobs(jobs, folder / "jobs.tsv")


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def test_scores_every_metric_a_job_allows(job_list, tmp_path):
    jobs = read_jobs(job_list)
    output = tmp_path / "results.csv"
    summary = evaluate_jobs(jobs, output, OFFLINE)
    rows = _rows(output)
    assert list(rows) == ["same", "other", "missing", "sr"]
    assert "not_made_yet.wav" in rows["missing"]["error"] and rows["missing"]["wer"] == ""
    same, other, sr = rows["same"], rows["other"], rows["sr"]
    assert float(same["speaker_similarity"]) > float(other["speaker_similarity"]) + 0.05
    assert same["hypothesis"] and 0 <= float(same["wer"]) and int(same["reference_words"]) == 13
    assert sr["wer"] == "" and sr["speaker_similarity"] == ""  # no text, no prompt
    assert float(sr["lsd"]) == pytest.approx(0.0, abs=1e-6)
    assert float(sr["f0_rmse_cents"]) < 5 and float(sr["f0_pearson"]) > 0.99 and float(sr["vuv_f1"]) > 0.98
    assert all(1 < float(rows[key]["mos"]) < 5 for key in ("same", "other", "sr"))
    assert (summary.jobs, summary.failed) == (4, 1)
    words = [int(rows[key]["reference_words"]) for key in ("same", "other")]
    weighted = sum(float(rows[key]["wer"]) * n for key, n in zip(("same", "other"), words)) / sum(words)
    assert summary.corpus_wer == pytest.approx(weighted, rel=1e-4)
    assert summary.scores["speaker_similarity"].count == 2
    written = json.loads(output.with_suffix(".summary.json").read_text())
    assert written["jobs"] == 4 and written["scores"]["mos"]["count"] == 3


def test_resumes_where_it_stopped(job_list, tmp_path, monkeypatch):
    jobs = read_jobs(job_list)
    output = tmp_path / "results.csv"
    options = EvaluationOptions(metrics=("wer",), batch_size=2).offline()
    evaluate_jobs(jobs, output, options)
    first = _rows(output)
    # the missing audio appears; a second run scores it and nothing else
    save_audio(job_list.parent / "not_made_yet.wav", load_audio(job_list.parent / "two_a.wav"), 16_000)
    heard: list[int] = []
    transcribe = runner.transcribe
    monkeypatch.setattr(
        runner, "transcribe", lambda audio, *a, **k: heard.append(len(audio)) or transcribe(audio, *a, **k)
    )
    summary = evaluate_jobs(jobs, output, options)
    assert heard == [1]
    second = _rows(output)
    assert second["missing"]["error"] == "" and second["missing"]["hypothesis"]
    assert {key: second[key] for key in ("same", "other")} == {key: first[key] for key in ("same", "other")}
    assert (summary.jobs, summary.failed) == (4, 0)
    (job_list.parent / "not_made_yet.wav").unlink()
    with pytest.raises(ValueError, match="give another output"):
        evaluate_jobs(jobs, output, options.updated(metrics=("wer", "mos")))


def test_summary_by_hand(tmp_path):
    results = tmp_path / "results.csv"
    results.write_text("id,audio,mos,error\na,x.wav,1,\nb,y.wav,2,\nc,z.wav,3,\nd,w.wav,,boom\n")
    summary = summarize(results)
    mos = summary.scores["mos"]
    # mean 2, sample sd 1, t(0.975, 2 dof) = 4.3027
    assert (mos.mean, mos.count) == (2.0, 3) and mos.ci95 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert (summary.jobs, summary.failed, summary.corpus_wer) == (4, 1, None)


def test_options_are_checked():
    with pytest.raises(SettingError, match="unknown metric"):
        EvaluationOptions(metrics=("bleu",))
    with pytest.raises(SettingError, match="f0_method"):
        EvaluationOptions(f0_method="crepe")
    assert EvaluationOptions().offline().asr_model == "pocketsphinx"
