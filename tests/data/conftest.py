"""Feature caches of the shared mini corpora, made once per session with the fast stand-in extractors."""

from __future__ import annotations

from pathlib import Path

import pytest
from stub_features import energy_f0, tiny_encoder

from hierspeech2.data.corpora import read_corpus, split_long_utterances
from hierspeech2.data.features import SemanticFeatures
from hierspeech2.data.preprocess import preprocess

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared mini corpora not found at {DATA} (clone the project next to ../shared)")
    return DATA


@pytest.fixture(scope="session")
def tiny_semantic() -> SemanticFeatures:
    return SemanticFeatures(tiny_encoder(), name_or_path="tiny-random-mms", layer=2)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """The tiny encoder saved as a transformers folder, for subprocesses (``--semantic-model DIR``)."""
    path = tmp_path_factory.mktemp("tiny-mms")
    tiny_encoder().model.save_pretrained(path)
    return path


def _cache(tmp_path_factory, name, corpus, model, semantic, **kwargs) -> Path:
    out = tmp_path_factory.mktemp(name)
    report = preprocess(
        corpus, out, model, semantic=semantic, f0_extractor=energy_f0, progress=False, **kwargs
    )
    assert report.cached > 0
    return out


@pytest.fixture(scope="session")
def ttv_cache(tmp_path_factory, corpora_dir, tiny_semantic) -> Path:
    corpus = read_corpus(corpora_dir / "mini-libritts")
    return _cache(tmp_path_factory, "ttv-cache", corpus, "ttv", tiny_semantic)


@pytest.fixture(scope="session")
def backbone_cache(tmp_path_factory, corpora_dir, tiny_semantic) -> Path:
    corpus = split_long_utterances(read_corpus(corpora_dir / "mini-librilight"), max_seconds=5.0)
    return _cache(tmp_path_factory, "backbone-cache", corpus, "backbone", tiny_semantic)


@pytest.fixture(scope="session")
def speechsr_cache(tmp_path_factory, corpora_dir) -> Path:
    corpus = read_corpus(corpora_dir / "mini-libritts")
    return _cache(tmp_path_factory, "speechsr-cache", corpus, "speechsr", None, target_rate=24_000)
