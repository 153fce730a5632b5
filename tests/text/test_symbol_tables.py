"""Symbol tables that belong to a model: files, extension, the model's config, refusal of unwritable text."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tiny_models import TINY_TTV

from hierspeech2.errors import MissingSymbolsError, SettingError, TextError
from hierspeech2.models import TextToVec
from hierspeech2.options import TextToSpeechOptions
from hierspeech2.text import SYMBOLS, extend_symbols, read_symbols, text_to_tokens, write_symbols
from hierspeech2.text.tables import resolve_symbols

TINY = TINY_TTV


def test_a_table_round_trips_through_json_exactly(tmp_path):
    # spaces, a combining mark and the released table's duplicate apostrophe survive
    table = extend_symbols(None, ["\u0303", "ʁ", "\u0303", "ɐ"])  # ʁ and ɐ are released symbols
    assert table == (*SYMBOLS, "\u0303")
    path = write_symbols(tmp_path, table)
    assert path == tmp_path / "symbols.json"
    assert read_symbols(path) == read_symbols(tmp_path) == table
    assert json.loads(path.read_text(encoding="utf-8")).count("'") == 2
    assert resolve_symbols(str(path)) == table and resolve_symbols(None) is None


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{}", "not a symbol table"),
        ('["_", "ab"]', "single characters"),
        ("[]", "non-empty"),
        ("[", "cannot read"),
    ],
)
def test_a_bad_table_file_is_refused(tmp_path, content, match):
    path = tmp_path / "symbols.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TextError, match=match):
        read_symbols(path)
    with pytest.raises(TextError, match="no symbol table"):
        read_symbols(tmp_path / "missing.json")


def test_the_model_carries_its_table_in_its_config(tmp_path):
    table = extend_symbols(None, ["\u0303"])
    write_symbols(tmp_path, table)
    model = TextToVec(**TINY, symbols=str(tmp_path / "symbols.json"))  # a path: the table is stored
    assert model.n_vocab == len(table) == model.text_encoder.emb.num_embeddings
    assert model.phoneme_classifier.out_channels == len(table)
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))
    assert config["symbols"] == list(table) and config["n_vocab"] == len(table)
    loaded = TextToVec.from_pretrained(tmp_path / "m")
    assert loaded.symbols == table
    assert torch.equal(loaded.text_encoder.emb.weight, model.text_encoder.emb.weight)
    released = TextToVec(**TINY)
    assert released.symbols is None and released.symbol_table == SYMBOLS and released.n_vocab == 178
    with pytest.raises(SettingError, match="n_vocab=178 but the symbol table has 179"):
        TextToVec(**TINY, n_vocab=178, symbols=table)


def test_unwritable_phonemes_are_refused_with_count_and_names():
    with pytest.raises(MissingSymbolsError, match=r"4 phonemes .*language='fr'.*U\+0303 \(4\)") as caught:
        text_to_tokens("Un bon vin blanc.", "fr")
    assert caught.value.missing == {"\u0303": 4}  # un, bon, vin, blanc
    # the model's own table writes them
    tokens = text_to_tokens("Un bon vin blanc.", "fr", symbols=extend_symbols(None, ["\u0303"]))
    assert (tokens == len(SYMBOLS)).sum() == 4


def test_language_is_a_per_call_option():
    assert TextToSpeechOptions().language == "en"
    assert TextToSpeechOptions().for_call({"language": "es"}).language == "es"
    with pytest.raises(SettingError, match="language must be a language code"):
        TextToSpeechOptions(language="")


def test_cli_refuses_an_unknown_language_before_loading_anything(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hierspeech2.cli", "tts", "Hola.", "--language", "klingon", "--prompt",
         str(tmp_path / "p.wav"), "-o", str(tmp_path / "o.wav")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--language: language 'klingon' is not supported by espeak-ng" in result.stderr
