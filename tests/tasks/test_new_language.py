"""A text-to-vec model for a new language, end to end on the shared multilingual manifest.

preprocess (the table extended by the corpus's phonemes) → fine-tune from a "released" model with
the 178-symbol table (its rows kept bit-identical) → Lightning checkpoint → ``hierspeech2 export``
→ ``load_model`` → TTS in the new language, while the base model refuses the same text.

The shared manifest holds en, es, de and ko, whose phonemes the released table already writes; one
French row is added (nasal vowels need the combining tilde U+0303, which the table lacks) so that the
table has to grow. The semantic encoder is a tiny random MMS stand-in (MMS-300m is not reachable).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import lightning.pytorch as pl
import pytest
import tiny_models
import torch
from tiny_training import energy_f0, tiny_semantic_encoder

from hierspeech2 import load_model
from hierspeech2.data import LoaderOptions, TTVDataModule
from hierspeech2.data.corpora import read_corpus
from hierspeech2.data.features import SemanticFeatures
from hierspeech2.data.preprocess import preprocess
from hierspeech2.errors import MissingSymbolsError, SettingError
from hierspeech2.models import HierSpeech2, TextToVec
from hierspeech2.models.ttv import SYMBOL_ROW_WEIGHTS
from hierspeech2.pipelines import TextToSpeech
from hierspeech2.tasks import TTVTask
from hierspeech2.tasks.base import TTV_OPTIMIZER
from hierspeech2.tasks.export import export
from hierspeech2.text import SYMBOLS, read_symbols, text_to_phonemes

SHARED_MMS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mini-mms"
FRENCH = "Un enfant très gentil mange du pain blanc."
TILDE = "\u0303"
SEMANTIC_CHANNELS = 32  # the tiny MMS stand-in's width
TTV_CONFIG = {**tiny_models.TINY_TTV, "semantic_channels": SEMANTIC_CHANNELS}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The shared manifest (absolute paths) plus one French row spoken over an English file."""
    if not (SHARED_MMS / "manifest.tsv").is_file():
        pytest.skip(f"shared multilingual manifest not found at {SHARED_MMS}")
    folder = tmp_path_factory.mktemp("corpus")
    with open(SHARED_MMS / "manifest.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert {row["language"] for row in rows} == {"en", "es", "de", "ko"}
    rows.append({**rows[1], "text": FRENCH, "speaker": "spk_fr_1", "language": "fr"})
    for number, row in enumerate(rows):
        row["id"] = f"{row['language']}_{number:03d}"
        row["path"] = str(SHARED_MMS / row["path"])
    manifest = folder / "manifest.tsv"
    with open(manifest, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _preprocess(corpus: Path, out: Path, **options):
    semantic = SemanticFeatures(tiny_semantic_encoder(), name_or_path="tiny-random-mms", layer=1)
    utterances = read_corpus(corpus)
    return preprocess(
        utterances, out, "ttv", semantic=semantic, f0_extractor=energy_f0, progress=False, **options
    )


def test_preprocess_reports_missing_phonemes_once_and_extends_the_table(corpus, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        plain = _preprocess(corpus, tmp_path / "plain")
    reports = [r for r in caplog.records if "not in the 178-symbol table" in r.getMessage()]
    assert len(reports) == 1, [r.getMessage() for r in caplog.records]
    message = reports[0].getMessage()
    assert "1 of 7 transcripts" in message and "U+0303" in message and "--extend-symbols" in message
    assert "enfant → ɑ̃fˈɑ̃" in message  # an example word with its phonemes
    assert plain.symbols == SYMBOLS and read_symbols(tmp_path / "plain") == SYMBOLS
    assert plain.missing_symbols == {TILDE: text_to_phonemes(FRENCH, "fr").count(TILDE)}
    assert not any("dropped symbols" in r.getMessage() for r in caplog.records)  # no per-utterance warning

    extended = _preprocess(corpus, tmp_path / "extended", extend_symbols=True)
    assert extended.symbols == (*SYMBOLS, TILDE)
    assert read_symbols(tmp_path / "extended") == extended.symbols
    # the French tokens now carry the tilde's id; the plain cache dropped it
    tilde_id = len(SYMBOLS)
    data = TTVDataModule(str(tmp_path / "extended"), loader=LoaderOptions(batch_size=1, val_size=0))
    assert data.symbol_table == extended.symbols
    from hierspeech2.data.cache import FeatureCache

    for name, expect in (("extended", True), ("plain", False)):
        cache = FeatureCache(tmp_path / name)
        (french,) = [record for record in cache.records() if record.language == "fr-fr"]
        tokens = cache.load(french)["tokens"]
        assert bool((tokens == tilde_id).any()) is expect, name


def _base_model(folder: Path) -> Path:
    """A stand-in for ``ttv-lt960``: a model with the released 178-symbol table, saved natively."""
    torch.manual_seed(0)
    TextToVec(**TTV_CONFIG).save_pretrained(folder)
    return folder


def test_fine_tune_grows_the_table_trains_exports_and_speaks_the_new_language(corpus, tmp_path):
    report = _preprocess(corpus, tmp_path / "cache", extend_symbols=True)
    base_dir = _base_model(tmp_path / "base")
    base = load_model(base_dir)
    assert base.symbols is None and base.n_vocab == len(SYMBOLS)

    model = TextToVec(**TTV_CONFIG, symbols=str(tmp_path / "cache" / "symbols.json"))
    task = TTVTask(
        model,
        optimizer=dataclasses.replace(TTV_OPTIMIZER, learning_rate=1e-3),
        pitch_window=8,
        init_from=str(base_dir),
    )
    for key in SYMBOL_ROW_WEIGHTS:
        grown, released = task.model.state_dict()[key], base.state_dict()[key]
        assert grown.shape[0] == len(report.symbols) == released.shape[0] + 1
        assert torch.equal(grown[: len(SYMBOLS)], released), key  # released rows bit-identical
        new = grown[len(SYMBOLS) :].flatten()
        assert torch.isfinite(new).all() and 0 < new.std() < 3 * released.std()
    for key, value in base.state_dict().items():
        if key not in SYMBOL_ROW_WEIGHTS:
            assert torch.equal(task.model.state_dict()[key], value), key

    data = TTVDataModule(
        str(tmp_path / "cache"), loader=LoaderOptions(batch_size=2, val_size=0, num_workers=0), min_frames=8
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    initial = task.model.text_encoder.emb.weight.detach().clone()
    trainer.fit(task, datamodule=data)
    assert trainer.global_step == 3
    assert not torch.equal(task.model.text_encoder.emb.weight, initial)  # it trained

    exported = export(tmp_path / "ckpt" / "last.ckpt", tmp_path / "ttv-fr")
    ttv = load_model(exported)
    assert ttv.symbols == report.symbols
    assert torch.equal(ttv.text_encoder.emb.weight, task.model.text_encoder.emb.weight)

    backbone = tiny_models.randomise(HierSpeech2(**{**tiny_models.TINY_BACKBONE, "semantic_channels": 32}), 0)
    prompt = read_corpus(corpus)[0].path
    tts = TextToSpeech(ttv, backbone, output_rate=16_000)
    audio, rate = tts(FRENCH, prompt, language="fr", seed=0)
    assert rate == 16_000 and audio.numel() > 16_000 * 0.3 and torch.isfinite(audio).all()

    # the base model's table cannot write French nasal vowels: refused, with the count and the symbol
    refusing = TextToSpeech(base, backbone, output_rate=16_000)
    with pytest.raises(MissingSymbolsError, match=r"U\+0303") as caught:
        refusing(FRENCH, prompt, language="fr", seed=0)
    assert caught.value.missing == {TILDE: text_to_phonemes(FRENCH, "fr").count(TILDE)}


def test_training_refuses_a_cache_of_another_table(corpus, tmp_path):
    _preprocess(corpus, tmp_path / "cache", extend_symbols=True)
    task = TTVTask(TextToVec(**TTV_CONFIG), pitch_window=8)  # the released table: one symbol short
    data = TTVDataModule(
        str(tmp_path / "cache"), loader=LoaderOptions(batch_size=2, val_size=0), min_frames=8
    )
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False)
    with pytest.raises(SettingError, match="--model.init_args.model.init_args.symbols .*symbols.json"):
        trainer.fit(task, datamodule=data)


def test_init_from_a_table_that_does_not_extend_the_source_is_refused(tmp_path):
    from hierspeech2.errors import CheckpointError

    base_dir = _base_model(tmp_path / "base")
    reordered = (SYMBOLS[0], SYMBOLS[2], SYMBOLS[1], *SYMBOLS[3:], TILDE)
    with pytest.raises(CheckpointError, match="does not extend the source's 178-symbol table .*row 1"):
        TTVTask(TextToVec(**TTV_CONFIG, symbols=reordered), init_from=str(base_dir))
