"""Test-set job lists on the shared mini LibriTTS and on tiny LibriSpeech and VCTK corpora made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from hierspeech2.evaluation.jobs import read_jobs, write_jobs
from hierspeech2.evaluation.testsets import (
    librispeech_pc_cross_sentence,
    libritts_test_clean,
    vctk_conversion,
)

MINI_LIBRITTS = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mini-libritts").resolve()
RATE = 16_000
# train-clean-100 utterances of 4-6 s: 1001 has one (5.44 s), so it is skipped; 1002 two, 1003 four.
IN_WINDOW = [
    "1002_5001_000000_000000",
    "1002_5002_000001_000000",
    "1003_5001_000000_000000",
    "1003_5001_000001_000000",
    "1003_5002_000000_000000",
    "1003_5002_000001_000000",
]


@pytest.fixture
def libritts() -> Path:
    if not (MINI_LIBRITTS / "LibriTTS" / "train-clean-100").is_dir():
        pytest.skip(f"the shared mini LibriTTS corpus is not at {MINI_LIBRITTS}")
    return MINI_LIBRITTS


def _write_audio(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(len(path.name)).normal(0.0, 0.05, int(seconds * RATE))
    soundfile.write(path, noise.astype(np.float32), RATE)
    return path


def _speaker(path: Path | None) -> str:
    assert path is not None
    return path.parent.parent.name


def test_libritts_pairs_same_speaker_prompts_within_the_window(libritts: Path):
    jobs = libritts_test_clean(libritts, min_seconds=4.0, max_seconds=6.0, subset="train-clean-100")
    assert [job.id for job in jobs] == IN_WINDOW
    for job in jobs:
        assert job.audio is None and job.source is None
        assert job.reference is not None and job.prompt is not None
        assert job.reference.stem == job.id and job.prompt != job.reference
        assert _speaker(job.prompt) == _speaker(job.reference) == job.id.split("_")[0]
        for path in (job.reference, job.prompt):
            assert 4.0 <= soundfile.info(str(path)).duration <= 6.0
    by_id = {job.id: job for job in jobs}
    assert by_id["1002_5002_000001_000000"].text == (
        "Every morning the old man walked down to the harbour to watch the boats."
    )
    # 1002 has exactly two utterances in the window: each is the other's prompt
    assert by_id["1002_5001_000000_000000"].prompt == by_id["1002_5002_000001_000000"].reference


def test_libritts_accepts_each_root_and_caps_per_speaker(libritts: Path):
    roots = [libritts, libritts / "LibriTTS", libritts / "LibriTTS" / "train-clean-100"]
    lists = [
        libritts_test_clean(root, min_seconds=4.0, max_seconds=6.0, subset="train-clean-100")
        for root in roots
    ]
    assert lists[0] == lists[1] == lists[2]
    capped = libritts_test_clean(
        libritts, min_seconds=4.0, max_seconds=6.0, per_speaker=1, subset="train-clean-100"
    )
    assert [job.id[:4] for job in capped] == ["1002", "1003"]
    assert {job.id for job in capped} <= set(IN_WINDOW)


def test_libritts_is_deterministic_by_seed(libritts: Path):
    def prompts(seed: int) -> tuple[Path | None, ...]:
        jobs = libritts_test_clean(
            libritts, min_seconds=4.0, max_seconds=6.0, seed=seed, subset="train-clean-100"
        )
        return tuple(job.prompt for job in jobs)

    assert prompts(0) == prompts(0)
    assert len({prompts(seed) for seed in range(20)}) > 1  # 1003's targets each have three candidates


def test_libritts_errors_and_round_trip(libritts: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="test-clean/<speaker>"):
        libritts_test_clean(libritts)  # the mini corpus has no test-clean
    with pytest.raises(ValueError, match="no evaluation job"):
        libritts_test_clean(libritts, subset="dev-clean")  # its utterances all last under 4 s
    jobs = libritts_test_clean(libritts, min_seconds=3.0, max_seconds=4.0, subset="dev-clean")
    assert [job.id for job in jobs] == [
        "1004_5001_000000_000000",
        "1004_5001_000001_000000",
        "1004_5002_000000_000000",
        "1004_5002_000001_000000",
    ]
    path = write_jobs(jobs, tmp_path / "lists" / "dev-clean.tsv")
    assert read_jobs(path) == jobs
    assert path.read_text(encoding="utf-8").splitlines()[0] == "id\ttext\tprompt\treference"


@pytest.fixture
def librispeech(tmp_path: Path) -> Path:
    seconds = {
        "11-100-0000": 5.0,
        "11-100-0001": 6.0,
        "11-100-0002": 2.0,  # too short
        "11-100-0003": 12.0,  # too long
        "22-200-0000": 4.5,  # a lone speaker
        "33-300-0000": 5.0,
        "33-300-0001": 5.5,
        "33-300-0002": 7.0,
    }
    folder = tmp_path / "LibriSpeech" / "test-clean"
    for key, duration in seconds.items():
        speaker, chapter, _ = key.split("-")
        _write_audio(folder / speaker / chapter / f"{key}.flac", duration)
        with open(
            folder / speaker / chapter / f"{speaker}-{chapter}.trans.txt", "a", encoding="utf-8"
        ) as trans:
            trans.write(f"{key} TEXT OF {key}\n")
    return tmp_path


def test_librispeech_draws_same_speaker_pairs(librispeech: Path):
    jobs = librispeech_pc_cross_sentence(librispeech / "LibriSpeech")
    assert [job.id for job in jobs] == [
        "11-100-0000",
        "11-100-0001",
        "33-300-0000",
        "33-300-0001",
        "33-300-0002",
    ]
    for job in jobs:
        assert job.text == f"TEXT OF {job.id}"
        assert job.reference is not None and job.prompt is not None
        assert job.reference.name == f"{job.id}.flac" and job.prompt != job.reference
        assert job.prompt.name.split("-")[0] == job.id.split("-")[0]
        assert job.prompt.stem not in {"11-100-0002", "11-100-0003"}  # prompts obey the window too
    assert jobs == librispeech_pc_cross_sentence(librispeech)  # a parent of LibriSpeech/ works as well
    assert jobs == librispeech_pc_cross_sentence(librispeech / "LibriSpeech" / "test-clean", seed=0)


def test_librispeech_reproduces_a_pair_list(librispeech: Path, tmp_path: Path):
    pairs = tmp_path / "librispeech_pc_test_clean_cross_sentence.lst"
    pairs.write_text(
        "33-300-0002\t7.0\tPrompt text.\t11-100-0003\t12.0\tHello, World: it's 12 s long!\n"
        "11-100-0002\t2.0\tShort prompt.\t33-300-0000\t5.0\tSecond, cased target.\n",
        encoding="utf-8",
    )
    folder = librispeech / "LibriSpeech" / "test-clean"
    jobs = librispeech_pc_cross_sentence(librispeech, pairs=pairs)
    assert [(job.id, job.text, job.prompt, job.reference) for job in jobs] == [
        (
            "11-100-0003",
            "Hello, World: it's 12 s long!",
            folder / "33/300/33-300-0002.flac",
            folder / "11/100/11-100-0003.flac",
        ),
        (
            "33-300-0000",
            "Second, cased target.",
            folder / "11/100/11-100-0002.flac",
            folder / "33/300/33-300-0000.flac",
        ),
    ]
    pairs.write_text("44-400-0000\t5.0\tx\t11-100-0000\t5.0\ty\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="44-400-0000.flac"):
        librispeech_pc_cross_sentence(librispeech, pairs=pairs)


def test_librispeech_errors(librispeech: Path, tmp_path: Path):
    with pytest.raises(
        FileNotFoundError, match=r"LibriSpeech test-clean under .*<speaker>-<chapter>-<utt>\.flac"
    ):
        librispeech_pc_cross_sentence(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no evaluation job"):
        librispeech_pc_cross_sentence(librispeech, min_seconds=20.0, max_seconds=30.0)


@pytest.fixture
def vctk(tmp_path: Path) -> Path:
    root = tmp_path / "VCTK-Corpus-0.92"
    for speaker in ("p225", "p226", "p227", "p315"):
        for number in ("001", "002", "003"):
            for mic in ("mic1", "mic2"):
                _write_audio(root / "wav48_silence_trimmed" / speaker / f"{speaker}_{number}_{mic}.flac", 0.2)
            if speaker != "p315":  # as in VCTK, p315 has no transcripts
                (root / "txt" / speaker).mkdir(parents=True, exist_ok=True)
                (root / "txt" / speaker / f"{speaker}_{number}.txt").write_text(f"Sentence {number}.\n")
    return root


def test_vctk_converts_to_other_speakers(vctk: Path):
    jobs = vctk_conversion(vctk)
    assert len(jobs) == 4 * 2 * 3  # 4 speakers, 2 sources each, 3 other speakers (under the cap of 4)
    assert [job.id for job in jobs] == sorted(job.id for job in jobs)
    for job in jobs:
        utterance, target = job.id.split("-to-")
        assert job.source is not None and job.prompt is not None and job.reference is None
        assert job.source.name == f"{utterance}_mic1.flac" and job.prompt.name.endswith("_mic1.flac")
        assert job.prompt.parent.name == target != job.source.parent.name
        assert job.text == (None if utterance.startswith("p315") else f"Sentence {utterance[-3:]}.")
    sources = {job.source for job in jobs}
    assert len(sources) == 8 and all(sum(job.source == source for job in jobs) == 3 for source in sources)
    assert vctk_conversion(vctk) == jobs
    assert len({tuple(vctk_conversion(vctk, seed=seed)) for seed in range(5)}) > 1


def test_vctk_speakers_targets_and_old_layout(vctk: Path, tmp_path: Path):
    pair = vctk_conversion(vctk, speakers=["p225", "p226"], sources_per_speaker=3)
    assert [job.id for job in pair] == [
        *(f"p225_{number}-to-p226" for number in ("001", "002", "003")),
        *(f"p226_{number}-to-p225" for number in ("001", "002", "003")),
    ]
    assert len(vctk_conversion(vctk, targets=1, sources_per_speaker=1)) == 4
    old = tmp_path / "VCTK-Corpus"
    for speaker in ("p225", "p226"):
        _write_audio(old / "wav48" / speaker / f"{speaker}_001.wav", 0.2)
    (old / "txt" / "p225").mkdir(parents=True)
    (old / "txt" / "p225" / "p225_001.txt").write_text("Please call Stella.\n")
    jobs = vctk_conversion(old)
    assert [(job.id, job.text, job.prompt) for job in jobs] == [
        ("p225_001-to-p226", "Please call Stella.", old / "wav48/p226/p226_001.wav"),
        ("p226_001-to-p225", None, old / "wav48/p225/p225_001.wav"),
    ]


def test_vctk_errors(vctk: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="wav48_silence_trimmed/<speaker>"):
        vctk_conversion(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no evaluation job"):
        vctk_conversion(vctk, speakers=["p225"])  # no other speaker to convert to
    with pytest.raises(ValueError, match="must be >= 1"):
        vctk_conversion(vctk, sources_per_speaker=0)
