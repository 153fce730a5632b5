"""Job lists for the test sets the field reports on, built from a local copy of each corpus.

Builders read a corpus already on disk (nothing is downloaded) and return
:class:`~hierspeech2.evaluation.jobs.EvaluationJob` rows with ``audio`` empty, for TTS or VC to
fill; write one with :func:`~hierspeech2.evaluation.jobs.write_jobs`. Each is deterministic for a
``seed``, sorts its jobs by id, raises :class:`FileNotFoundError` when the corpus is not where it
should be and :class:`ValueError` when it yields no job.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import soundfile

from hierspeech2.evaluation.jobs import EvaluationJob

__all__ = ["librispeech_pc_cross_sentence", "libritts_test_clean", "vctk_conversion"]

T = TypeVar("T")

LIBRITTS_LAYOUT = "<subset>/<speaker>/<chapter>/<speaker>_<chapter>_<n>_<m>.wav with .normalized.txt"
LIBRISPEECH_LAYOUT = "<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac and .trans.txt"
VCTK_LAYOUT = (
    "wav48_silence_trimmed/<speaker>/<speaker>_<nnn>_mic1.flac or wav48/<speaker>/<speaker>_<nnn>.wav"
)
MAX_TARGETS = 4  # target speakers per VC source unless told


def libritts_test_clean(
    root: str | os.PathLike[str],
    *,
    min_seconds: float = 4.0,
    max_seconds: float = 10.0,
    per_speaker: int | None = None,
    seed: int = 0,
    subset: str = "test-clean",
) -> list[EvaluationJob]:
    """Zero-shot TTS on LibriTTS test-clean, the protocol HierSpeech++ (Lee et al., 2023) reports.

    Every utterance lasting ``min_seconds`` to ``max_seconds`` is a target: its normalized
    transcript is the text, its recording the reference, and another utterance of the same speaker
    in that range, drawn with ``random.Random(seed)``, the prompt. Speakers with a single such
    utterance are skipped.

    Args:
        root: a LibriTTS folder holding ``subset``, the ``subset`` folder itself, or a folder
            holding ``LibriTTS/<subset>``.
        min_seconds: shortest target and prompt, in seconds.
        max_seconds: longest target and prompt, in seconds.
        per_speaker: at most this many targets per speaker (drawn at random); all when None.
        seed: seed of the prompt and target draws.
        subset: the LibriTTS subset to read (``dev-clean`` gives a validation list).

    Returns:
        One job per target, sorted by id (the utterance stem).
    """
    folder = _find_subset(root, subset, "LibriTTS", LIBRITTS_LAYOUT)
    wavs = [wav for wav in folder.glob("*/*/*.wav") if _transcript_of(wav).is_file()]
    by_speaker = _group(_within(wavs, min_seconds, max_seconds), lambda wav: wav.name.split("_")[0])
    pairs = _pick_prompts(by_speaker, random.Random(seed), per_speaker)
    jobs = [
        EvaluationJob(
            id=target.stem, text=_read_text(_transcript_of(target)), prompt=prompt, reference=target
        )
        for target, prompt in pairs
    ]
    return _checked(jobs, f"LibriTTS {subset} at {folder} ({min_seconds}-{max_seconds} s)")


def librispeech_pc_cross_sentence(
    root: str | os.PathLike[str],
    *,
    pairs: str | os.PathLike[str] | None = None,
    min_seconds: float = 4.0,
    max_seconds: float = 10.0,
    seed: int = 0,
) -> list[EvaluationJob]:
    """Cross-sentence zero-shot TTS on LibriSpeech-PC test-clean, as F5-TTS (Chen et al., 2024) reports it.

    With ``pairs``, F5-TTS's ``librispeech_pc_test_clean_cross_sentence.lst`` (tab-separated
    prompt id, duration, text, target id, duration, text), exactly its pairs and its punctuated,
    cased target texts are used; ``min_seconds``, ``max_seconds`` and ``seed`` are then unused.
    Without it, every target of ``min_seconds`` to ``max_seconds`` is paired with another
    utterance of the same speaker in that range, and its text comes from ``trans.txt``.

    Args:
        root: a LibriSpeech folder holding ``test-clean``, ``test-clean`` itself, or a folder
            holding ``LibriSpeech/test-clean``.
        pairs: F5-TTS's list file, or None to draw pairs.
        min_seconds: shortest target and prompt, in seconds, when drawing.
        max_seconds: longest target and prompt, in seconds, when drawing.
        seed: seed of the prompt draw.

    Returns:
        One job per target (id = LibriSpeech utterance id), sorted by id.
    """
    folder = _find_subset(root, "test-clean", "LibriSpeech", LIBRISPEECH_LAYOUT)
    if pairs is not None:
        lines = Path(pairs).read_text(encoding="utf-8").splitlines()
        return _checked([_listed_pair(folder, line) for line in lines if line.strip()], f"pair list {pairs}")
    texts: dict[Path, str] = {}
    for trans in folder.glob("*/*/*.trans.txt"):
        for line in trans.read_text(encoding="utf-8").splitlines():
            key, _, text = line.strip().partition(" ")
            if key:
                texts[trans.parent / f"{key}.flac"] = text.strip()
    flacs = [flac for flac in texts if flac.is_file()]
    by_speaker = _group(_within(flacs, min_seconds, max_seconds), lambda flac: flac.name.split("-")[0])
    jobs = [
        EvaluationJob(id=target.stem, text=texts[target], prompt=prompt, reference=target)
        for target, prompt in _pick_prompts(by_speaker, random.Random(seed))
    ]
    return _checked(jobs, f"LibriSpeech test-clean at {folder} ({min_seconds}-{max_seconds} s)")


def vctk_conversion(
    root: str | os.PathLike[str],
    *,
    sources_per_speaker: int = 2,
    targets: int | None = None,
    seed: int = 0,
    speakers: Iterable[str] | None = None,
) -> list[EvaluationJob]:
    """Voice conversion on VCTK: source utterances converted to other speakers' voices.

    The zero-shot VC protocol of HierSpeech++ and its baselines (DiffVC, DDDM-VC): each speaker
    gives ``sources_per_speaker`` source utterances, each converted to ``targets`` other speakers,
    whose voice is given by one of their utterances (the prompt). Reads VCTK 0.92
    (``wav48_silence_trimmed``, ``mic1`` only) or the older ``wav48`` layout.

    Args:
        root: the VCTK folder (holding ``wav48_silence_trimmed`` or ``wav48``, and ``txt``).
        sources_per_speaker: source utterances drawn per speaker.
        targets: target speakers per source; all other speakers, at most 4, when None.
        seed: seed of the source, target and prompt draws.
        speakers: the speakers to use (sources and targets); all when None.

    Returns:
        Jobs with id ``<source utterance>-to-<target speaker>``, ``source``, ``prompt`` and the
        source's transcript as ``text`` (None when VCTK has none, as for p315), sorted by id.
    """
    root = Path(root)
    if (root / "wav48_silence_trimmed").is_dir():
        audio, suffix = list((root / "wav48_silence_trimmed").glob("*/*_mic1.flac")), "_mic1"
    elif (root / "wav48").is_dir():
        audio, suffix = list((root / "wav48").glob("*/*.wav")), ""
    else:
        raise FileNotFoundError(f"no VCTK corpus at {root}: expected {VCTK_LAYOUT}")
    if sources_per_speaker < 1 or (targets is not None and targets < 1):
        raise ValueError(f"sources_per_speaker ({sources_per_speaker}) and targets ({targets}) must be >= 1")
    chosen = None if speakers is None else set(speakers)
    by_speaker = _group(
        [path for path in audio if chosen is None or path.parent.name in chosen],
        lambda path: path.parent.name,
    )
    names = sorted(by_speaker)
    count = min(MAX_TARGETS, len(names) - 1) if targets is None else targets
    rng = random.Random(seed)
    jobs = []
    for speaker in names:
        others = [name for name in names if name != speaker]
        for source in _sample(by_speaker[speaker], sources_per_speaker, rng):
            utterance = source.stem.removesuffix(suffix)
            text = _read_text(root / "txt" / speaker / f"{utterance}.txt")
            for target in _sample(others, count, rng):
                prompt = rng.choice(by_speaker[target])
                jobs.append(
                    EvaluationJob(id=f"{utterance}-to-{target}", text=text, prompt=prompt, source=source)
                )
    return _checked(jobs, f"VCTK at {root} (speakers {names})")


def _find_subset(root: str | os.PathLike[str], subset: str, corpus: str, layout: str) -> Path:
    """``root/subset``, ``root`` when it is named ``subset``, or ``root/corpus/subset``."""
    root = Path(root)
    for folder in (root / subset, root, root / corpus / subset):
        if folder.name == subset and folder.is_dir():
            return folder
    expected = layout.replace("<subset>", subset)
    raise FileNotFoundError(
        f"no {corpus} {subset} under {root}: expected {expected} there or under {corpus}/"
    )


def _within(paths: Iterable[Path], min_seconds: float, max_seconds: float) -> list[Path]:
    """The audio files lasting ``min_seconds`` to ``max_seconds`` (read from headers, not decoded)."""
    return [path for path in paths if min_seconds <= soundfile.info(str(path)).duration <= max_seconds]


def _group(items: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    """``items`` by ``key``, each group sorted."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return {name: sorted(group) for name, group in sorted(groups.items())}


def _sample(items: Sequence[T], count: int | None, rng: random.Random) -> list[T]:
    """At most ``count`` of ``items`` drawn by ``rng``, in their order; all when ``count`` is None."""
    if count is None or count >= len(items):
        return list(items)
    picked = set(rng.sample(range(len(items)), count))
    return [item for index, item in enumerate(items) if index in picked]


def _pick_prompts(
    by_speaker: Mapping[str, Sequence[T]], rng: random.Random, per_speaker: int | None = None
) -> list[tuple[T, T]]:
    """(target, prompt) pairs: each target gets another item of its speaker; lone speakers are skipped."""
    pairs = []
    for group in by_speaker.values():
        if len(group) < 2:
            continue
        for target in _sample(group, per_speaker, rng):
            pairs.append((target, rng.choice([item for item in group if item != target])))
    return pairs


def _listed_pair(folder: Path, line: str) -> EvaluationJob:
    """The job of one line of F5-TTS's pair list."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != 6:
        raise ValueError(
            f"expected 6 tab-separated fields (prompt id, dur, text, target id, dur, text): {line!r}"
        )
    prompt, target = (_librispeech_flac(folder, key) for key in (fields[0], fields[3]))
    return EvaluationJob(id=fields[3], text=fields[5].strip(), prompt=prompt, reference=target)


def _librispeech_flac(folder: Path, key: str) -> Path:
    speaker, chapter, _ = key.split("-")
    path = folder / speaker / chapter / f"{key}.flac"
    if not path.is_file():
        raise FileNotFoundError(f"{path} (named in the pair list) is missing")
    return path


def _transcript_of(wav: Path) -> Path:
    return wav.with_suffix(".normalized.txt")


def _read_text(path: Path) -> str | None:
    """The stripped transcript at ``path``, with whitespace runs made single spaces; None if absent."""
    return " ".join(path.read_text(encoding="utf-8").split()) if path.is_file() else None


def _checked(jobs: list[EvaluationJob], what: str) -> list[EvaluationJob]:
    if not jobs:
        raise ValueError(f"{what} yields no evaluation job")
    return sorted(jobs, key=lambda job: job.id)
