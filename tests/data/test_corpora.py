import json

import pytest

from hierspeech2.data.corpora import (
    detect_corpus_kind,
    espeak_voice,
    read_corpus,
    read_librilight,
    read_libritts,
    read_manifest,
    split_long_utterances,
)


def test_libritts_reads_every_subset_with_transcripts(corpora_dir):
    utterances = read_libritts(corpora_dir / "mini-libritts")
    assert len(utterances) == 16
    assert {u.speaker for u in utterances} == {"1001", "1002", "1003", "1004"}
    first = next(u for u in utterances if u.id == "1001_5001_000000_000000")
    assert first.text == "The quick brown fox jumps over the lazy dog."
    assert first.language == "en-us"
    assert first.duration == pytest.approx(3.449625)
    assert first.path.endswith("train-clean-100/1001/5001/1001_5001_000000_000000.wav")


def test_libritts_subsets_select_folders(corpora_dir):
    dev = read_libritts(corpora_dir / "mini-libritts" / "LibriTTS", subsets=["dev-clean"])
    assert len(dev) == 4 and {u.speaker for u in dev} == {"1004"}
    with pytest.raises(FileNotFoundError, match="train-other-500"):
        read_libritts(corpora_dir / "mini-libritts", subsets=["train-other-500"])


def test_librilight_has_no_text_and_unique_ids(corpora_dir):
    utterances = read_librilight(corpora_dir / "mini-librilight")
    assert len(utterances) == 4
    assert all(u.text is None for u in utterances)
    assert utterances[0].id == "2001/book_2001_librivox_64kb_mp3/01_chapter_2001_64kb"
    assert sorted(round(u.duration, 2) for u in utterances) == [6.86, 7.48, 8.89, 9.62]
    # a subset folder itself works too
    assert len(read_librilight(corpora_dir / "mini-librilight" / "small")) == 4


def test_manifest_maps_languages_and_resolves_paths(corpora_dir):
    utterances = read_manifest(corpora_dir / "mini-mms" / "manifest.tsv")
    assert [u.language for u in utterances] == ["en-us", "en-us", "es", "de", "ko", "ko"]
    assert utterances[0].id == "audio/en_000"
    assert utterances[2].text == "Buenos días, ¿cómo estás hoy?"
    assert utterances[3].speaker == "spk_de_1"
    assert all(u.duration and u.duration > 2.0 for u in utterances)


def test_jsonl_manifest_with_ids_and_unreadable_audio(tmp_path, corpora_dir):
    wav = corpora_dir / "mini-mms" / "audio" / "de_003.wav"
    rows = [
        {"id": "a", "path": str(wav), "text": "Hallo", "speaker": "s1", "language": "de"},
        {"id": "b", "path": "missing.wav", "text": "", "speaker": "s2", "language": "EN"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    a, b = read_manifest(manifest)
    assert (a.id, a.language, a.duration is not None) == ("a", "de", True)
    assert (b.text, b.language, b.duration, b.path) == (None, "en-us", None, str(tmp_path / "missing.wav"))
    manifest.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n")
    with pytest.raises(ValueError, match="duplicate utterance id 'a'"):
        read_manifest(manifest)


def test_detect_kind(corpora_dir, tmp_path):
    assert detect_corpus_kind(corpora_dir / "mini-libritts") == "libritts"
    assert detect_corpus_kind(corpora_dir / "mini-librilight") == "librilight"
    assert detect_corpus_kind(corpora_dir / "mini-mms" / "manifest.tsv") == "manifest"
    assert [u.id for u in read_corpus(corpora_dir / "mini-mms" / "manifest.tsv")][:2] == [
        "audio/de_003",
        "audio/en_000",
    ]
    # a folder holding manifest.tsv stands for it (a recipe's corpus_dir names folders)
    assert detect_corpus_kind(corpora_dir / "mini-mms") == "manifest"
    assert read_corpus(corpora_dir / "mini-mms") == read_corpus(corpora_dir / "mini-mms" / "manifest.tsv")
    with pytest.raises(ValueError, match="cannot tell the layout"):
        detect_corpus_kind(tmp_path)


def test_espeak_voice():
    assert espeak_voice("en") == "en-us"
    assert espeak_voice("pt_BR") == "pt-br"
    assert espeak_voice(None) == "en-us"
    assert espeak_voice("ko") == "ko"
    assert espeak_voice("fr") == "fr-fr"  # refused as "not supported" before the text front end knew codes
    assert espeak_voice("fr-FR") == "fr-fr"
    assert espeak_voice("kor") == "ko"
    # a code espeak-ng has no voice for stays as written: backbone and SpeechSR corpora need no text
    assert espeak_voice("XYZ_ab") == "xyz-ab"


def test_split_long_utterances_cuts_untranscribed_files_only(corpora_dir):
    long = read_librilight(corpora_dir / "mini-librilight")
    pieces = split_long_utterances(long, max_seconds=4.0)
    first = [p for p in pieces if p.id.startswith(long[0].id)]  # 8.89 s -> 4 + 4 + 0.89 (dropped, < 1 s)
    assert [(p.id[-2:], p.start, p.end) for p in first] == [("#0", 0.0, 4.0), ("#1", 4.0, 8.0)]
    assert sum(p.duration for p in pieces) == pytest.approx(
        sum(u.duration for u in long) - 0.89, abs=0.01
    )  # only the 0.89 s tail is dropped
    transcribed = read_libritts(corpora_dir / "mini-libritts")
    assert split_long_utterances(transcribed, max_seconds=1.0) == transcribed
