import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from stub_features import energy_f0

from hierspeech2.data.cache import TEMP_MARKER, FeatureCache
from hierspeech2.data.corpora import Utterance, read_corpus
from hierspeech2.data.features import SemanticFeatures, from_pcm16
from hierspeech2.data.preprocess import _CacheLock, build_cache, preprocess
from hierspeech2.errors import DataNotFoundError
from hierspeech2.text import text_to_tokens

ROOT = Path(__file__).resolve().parents[2]


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every item file and the manifest, by relative path."""
    files = sorted((root / "items").rglob("*.safetensors")) + [root / "manifest.jsonl", root / "skipped.tsv"]
    return {str(path.relative_to(root)): path.read_bytes() for path in files}


def test_ttv_cache_holds_aligned_features(ttv_cache):
    cache = FeatureCache(ttv_cache)
    records = cache.records()
    assert len(records) == 16
    assert cache.read_config()["model"] == "ttv"
    assert cache.read_config()["semantic"] == {"name": "tiny-random-mms", "layer": 2}
    for record in records[:4]:
        item = cache.load(record)
        frames = record.num_frames
        assert item["audio"].dtype == torch.int16 and item["audio"].shape == (320 * frames,)
        assert item["audio"].shape[0] % 1280 == 0 and record.num_samples < item["audio"].shape[0]
        assert item["semantic"].dtype == torch.float16 and item["semantic"].shape == (32, frames)
        expected_f0 = energy_f0(from_pcm16(item["audio"])).reshape(-1)
        torch.testing.assert_close(item["f0"], expected_f0)
        assert record.voiced_frames == int((expected_f0 > 0).sum()) > 0
        tokens = text_to_tokens(record.text, "en-us")
        assert torch.equal(item["tokens"], tokens) and record.num_tokens == tokens.shape[0]
    # padding: the stored audio beyond the original samples is silent
    item = cache.load(records[0])
    assert not item["audio"][records[0].num_samples :].any()


def test_manifest_corpus_gets_language_aware_tokens(tmp_path, corpora_dir, tiny_semantic):
    corpus = [u for u in read_corpus(corpora_dir / "mini-mms" / "manifest.tsv") if u.language in ("de", "es")]
    report = preprocess(
        corpus, tmp_path, "ttv", semantic=tiny_semantic, f0_extractor=energy_f0, progress=False
    )
    assert (report.cached, report.skipped) == (2, 0)
    cache = FeatureCache(tmp_path)
    for record in cache.records():
        assert torch.equal(cache.load(record)["tokens"], text_to_tokens(record.text, record.language))
    german = next(r for r in cache.records() if r.language == "de")
    assert german.num_frames == cache.load(german)["semantic"].shape[-1] == (37980 // 1280 + 1) * 4


def test_backbone_cache_from_librilight_pieces(backbone_cache):
    cache = FeatureCache(backbone_cache)
    records = cache.records()
    assert len(records) == 8  # four chapters of 6.9-9.6 s, cut at 5 s
    assert all("#" in r.id and r.text is None and r.num_tokens == 0 for r in records)
    item = cache.load(records[0])
    assert set(item) == {"audio", "semantic", "f0"}
    assert records[0].num_samples == 5 * 16000


def test_speechsr_cache_keeps_target_rate_audio(speechsr_cache):
    cache = FeatureCache(speechsr_cache)
    record = cache.records()[0]
    item = cache.load(record)
    assert set(item) == {"audio"} and record.sample_rate == 24000
    assert item["audio"].shape == (record.num_samples,)  # unpadded, 24 kHz
    assert cache.read_config()["sample_rate"] == 24000


def test_rerun_on_a_finished_cache_is_a_no_op(ttv_cache, corpora_dir, tiny_semantic):
    before = {p: p.stat().st_mtime_ns for p in (ttv_cache / "items").rglob("*.safetensors")}
    corpus = read_corpus(corpora_dir / "mini-libritts")
    report = preprocess(
        corpus, ttv_cache, "ttv", semantic=tiny_semantic, f0_extractor=energy_f0, progress=False
    )
    assert (report.processed, report.skipped_now, report.cached) == (0, 0, 16)
    assert {p: p.stat().st_mtime_ns for p in (ttv_cache / "items").rglob("*.safetensors")} == before


def test_unusable_files_are_reported_and_skipped(tmp_path, corpora_dir, tiny_semantic):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + np.random.default_rng(0).bytes(4000))
    good = read_corpus(corpora_dir / "mini-mms" / "manifest.tsv")[0]
    corpus = [
        good,
        Utterance("broken", str(corrupt), "hello", "s", "en-us", None),
        Utterance("missing", str(tmp_path / "nope.wav"), "hello", "s", "en-us", None),
        Utterance("silent-text", good.path, "", "s", "en-us", 2.0),
    ]
    out = tmp_path / "cache"
    report = preprocess(corpus, out, "ttv", semantic=tiny_semantic, f0_extractor=energy_f0, progress=False)
    assert (report.cached, report.skipped, report.processed) == (1, 3, 1)
    lines = (out / "skipped.tsv").read_text().splitlines()
    assert lines[0] == "id\tpath\treason"
    reasons = {line.split("\t")[0]: line.split("\t")[2] for line in lines[1:]}
    assert reasons["broken"].startswith("unreadable audio: cannot read")
    assert reasons["missing"].startswith("unreadable audio: audio file not found")
    assert reasons["silent-text"].startswith("no transcript")
    # skipped files are not retried, unless asked
    again = preprocess(corpus, out, "ttv", semantic=tiny_semantic, f0_extractor=energy_f0, progress=False)
    assert (again.processed, again.skipped_now) == (0, 0)
    retried = preprocess(
        corpus, out, "ttv", semantic=tiny_semantic, f0_extractor=energy_f0, progress=False, retry_skipped=True
    )
    assert (retried.processed, retried.skipped_now, retried.skipped) == (0, 3, 3)


def test_other_settings_and_concurrent_runs_are_refused(ttv_cache, corpora_dir, tiny_semantic):
    corpus = read_corpus(corpora_dir / "mini-libritts")[:1]
    with pytest.raises(ValueError, match="made with other settings.*f0"):
        preprocess(corpus, ttv_cache, "ttv", semantic=tiny_semantic, f0_extractor="yaapt", progress=False)
    with _CacheLock(ttv_cache), pytest.raises(RuntimeError, match="another preprocess run"):
        preprocess(corpus, ttv_cache, "ttv", semantic=tiny_semantic, f0_extractor=energy_f0, progress=False)


def test_worker_processes_give_the_same_cache(tmp_path, corpora_dir, tiny_semantic):
    corpus = read_corpus(corpora_dir / "mini-mms" / "manifest.tsv")[:4]
    options = {"semantic": tiny_semantic, "f0_extractor": energy_f0, "progress": False}
    preprocess(corpus, tmp_path / "serial", "backbone", num_workers=0, **options)
    report = preprocess(
        corpus, tmp_path / "parallel", "backbone", num_workers=2, mp_context="fork", **options
    )
    assert report.processed == 4
    assert _snapshot(tmp_path / "parallel") == _snapshot(tmp_path / "serial")


def test_default_f0_extractor_is_official_yaapt(tmp_path, corpora_dir, tiny_semantic):
    from hierspeech2.pitch import yaapt

    utterance = read_corpus(corpora_dir / "mini-mms" / "manifest.tsv")[0]  # 2.4 s
    preprocess([utterance], tmp_path, "backbone", semantic=tiny_semantic, progress=False)
    cache = FeatureCache(tmp_path)
    assert cache.read_config()["f0"] == "yaapt"
    item = cache.load(cache.records()[0])
    expected = yaapt(from_pcm16(item["audio"]), variant="training").reshape(-1)
    torch.testing.assert_close(item["f0"], expected)
    assert (item["f0"] > 0).sum() > 50


def _cli(out: Path, corpus: Path, encoder: Path, delay: float = 0.0) -> subprocess.Popen:
    """The preprocess CLI on LibriTTS dev-clean (4 utterances) in a subprocess."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests" / "data")])}
    env["STUB_F0_DELAY"] = str(delay)
    command = [
        sys.executable, "-m", "hierspeech2.data.preprocess", str(corpus), "--out", str(out), "--model", "ttv",
        "--num-workers", "0", "--semantic-model", str(encoder), "--semantic-layer", "2",
        "--f0", "stub_features:energy_f0", "--no-progress", "--subsets", "dev-clean",
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _kill_points(seed: int = 20261125) -> list[tuple[int, float]]:
    """Three kill points fixed by ``seed``: after 1, 2 or 3 cached items, plus 0–0.9 s into the next."""
    rng = random.Random(seed)
    return [(items, round(rng.uniform(0.0, 0.9), 2)) for items in (1, 2, 3)]


@pytest.mark.parametrize(("items", "offset"), _kill_points(), ids=lambda value: str(value))
def test_killed_run_resumes_to_the_same_cache(
    tmp_path, corpora_dir, tiny_encoder_dir, ttv_cache, items, offset
):
    out = tmp_path / "cache"
    corpus = corpora_dir / "mini-libritts"
    process = _cli(out, corpus, tiny_encoder_dir, delay=1.0)
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*.safetensors"))) < items:
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, f"the run never wrote {items} item(s)"
        time.sleep(0.02)
    time.sleep(offset)
    process.send_signal(signal.SIGKILL)  # during the next item's (slowed-down, 1 s) F0 or its write
    process.wait()
    done = len(list(out.rglob("*.safetensors")))
    assert items <= done < 4 and not (out / "manifest.jsonl").exists()

    # resume here, with the same settings as the command line (encoder loaded from the same folder)
    semantic = SemanticFeatures(name_or_path=str(tiny_encoder_dir), layer=2)
    utterances = read_corpus(corpus, subsets=["dev-clean"])
    report = preprocess(
        utterances, out, "ttv", semantic=semantic, f0_extractor="stub_features:energy_f0", progress=False
    )
    assert (report.cached, report.skipped, report.processed) == (4, 0, 4 - done)
    assert not list(out.rglob("*.tmp-*"))
    # byte for byte what the uninterrupted in-process run (same tiny encoder) wrote for these utterances
    reference = _snapshot(ttv_cache)
    resumed_files = _snapshot(out)
    manifest = resumed_files.pop("manifest.jsonl").decode().splitlines()
    assert manifest == [
        line for line in reference["manifest.jsonl"].decode().splitlines() if '"speaker": "1004"' in line
    ]
    assert resumed_files.pop("skipped.tsv") == b"id\tpath\treason\n"
    assert len(resumed_files) == 4
    assert all(reference[name] == content for name, content in resumed_files.items())


# ------------------------------------------------------------------ no semantic encoder: nothing written


def test_a_missing_semantic_encoder_fails_before_anything_is_written(tmp_path, loopback_hub, corpora_dir):
    # regression: the encoder loaded on the first utterance, after cache.json was written
    from huggingface_hub import constants

    from hierspeech2.registry import DownloadError

    out = tmp_path / "cache"
    corpus = read_corpus(corpora_dir / "mini-mms" / "manifest.tsv")[:2]
    semantic = SemanticFeatures(name_or_path="facebook/mms-300m")
    loopback_hub.stop()  # no network
    with pytest.raises(DownloadError, match="cannot reach"):
        preprocess(corpus, out, "backbone", semantic=semantic, f0_extractor=energy_f0, progress=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        with pytest.raises(DownloadError, match="HF_HUB_OFFLINE is set"):
            preprocess(corpus, out, "ttv", semantic=semantic, f0_extractor=energy_f0, progress=False)
    assert not out.exists()


def _hierspeech2(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    """The ``hierspeech2`` command in a subprocess, with an empty Hugging Face cache under ``home``."""
    environment = {**os.environ, "HF_HOME": str(home), "OMP_NUM_THREADS": "1", **env}
    environment.pop("HF_HUB_CACHE", None)
    return subprocess.run(
        [sys.executable, "-m", "hierspeech2.cli", *args],
        env=environment, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_preprocess_command_offline_says_what_to_download_in_one_line(tmp_path, corpora_dir):
    out = tmp_path / "cache"
    result = _hierspeech2(
        "preprocess", str(corpora_dir / "mini-libritts"), "--model", "ttv", "--out", str(out),
        "--no-progress",
        home=tmp_path / "hf", HF_HUB_OFFLINE="1",
    )  # fmt: skip
    assert result.returncode == 1
    expected = (
        f"hierspeech2 preprocess: error: facebook/mms-300m is not in the Hugging Face cache "
        f"({tmp_path / 'hf' / 'hub'}) and HF_HUB_OFFLINE is set, so it cannot be downloaded: run "
        "`hierspeech2 download mms-300m` with network first (or unset HF_HUB_OFFLINE), or pass a local "
        "transformers folder"
    )
    assert result.stderr.strip().splitlines() == [expected]
    assert not out.exists()


def test_preprocess_command_prints_its_summary_once(tmp_path, corpora_dir):
    # regression: the summary was logged by preprocess() and printed again by the command
    out = tmp_path / "sr"
    result = _hierspeech2(
        "preprocess", str(corpora_dir / "mini-libritts"), "--model", "speechsr", "--target-rate", "24000",
        "--subsets", "dev-clean", "--out", str(out), "--num-workers", "0", "--no-progress",
        home=tmp_path / "hf",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summaries = [line for line in result.stderr.splitlines() if line.startswith(f"{out}:")]
    assert len(summaries) == 1, result.stderr
    assert summaries[0].startswith(
        f"{out}: 4 utterances cached, 0 skipped (see {out / 'skipped.tsv'}); this run: 4 new"
    )


# ------------------------------------------------------------------ build_cache: a finished cache or nothing


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _interrupting_f0(calls: list[int]):
    def extract(wav: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the run
        return energy_f0(wav)

    return extract


def test_build_cache_renames_a_complete_cache_into_place(tmp_path, corpora_dir, speechsr_cache):
    leftover = tmp_path / f".sr{TEMP_MARKER}{socket.gethostname()}-{_dead_pid()}"  # a killed build's folder
    (leftover / "items").mkdir(parents=True)
    out = tmp_path / "sr"
    corpus = read_corpus(corpora_dir / "mini-libritts")
    report = build_cache(corpus, out, "speechsr", target_rate=24_000, progress=False)
    assert report.cache_dir == out and report.cached == 16
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sr"]  # the dead build's folder went too
    assert FeatureCache(out).finished and not (out / ".lock").exists()
    assert _snapshot(out) == _snapshot(speechsr_cache)  # what preprocess() writes in place
    with pytest.raises(FileExistsError, match="not empty"):
        build_cache(corpus, out, "speechsr", target_rate=24_000, progress=False)


def test_build_cache_interrupted_leaves_nothing(tmp_path, corpora_dir, tiny_semantic):
    calls: list[int] = []
    corpus = read_corpus(corpora_dir / "mini-mms" / "manifest.tsv")
    with pytest.raises(KeyboardInterrupt):
        build_cache(
            corpus, tmp_path / "new" / "cache", "backbone",
            semantic=tiny_semantic, f0_extractor=_interrupting_f0(calls), progress=False,
        )  # fmt: skip
    assert len(calls) == 3  # two items were written before the interruption
    assert list(tmp_path.iterdir()) == []  # neither the cache, its temporary folder, nor new/


def test_build_cache_with_no_usable_utterance_says_why_and_leaves_nothing(tmp_path):
    corpus = [Utterance("broken", str(tmp_path / "nope.wav"), None, "s", "en-us", None)]
    with pytest.raises(DataNotFoundError, match=r"no utterance of the 1 given .*broken: unreadable audio"):
        build_cache(corpus, tmp_path / "cache", "speechsr", target_rate=24_000, progress=False)
    assert list(tmp_path.iterdir()) == []
