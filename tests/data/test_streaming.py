import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hierspeech2.data.batch import BackboneBatch
from hierspeech2.data.cache import FeatureCache
from hierspeech2.data.corpora import read_corpus, split_long_utterances
from hierspeech2.data.datamodules import BackboneDataModule, LoaderOptions
from hierspeech2.data.streaming import (
    StreamingItemWriter,
    is_streaming_dataset,
    open_streaming_dataset,
    write_streaming_dataset,
)

litdata = pytest.importorskip("litdata")
# litdata hands out tensors over its read-only chunk buffers; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:The given buffer is not writable")
ROOT = Path(__file__).resolve().parents[2]


def test_two_node_ranks_write_one_dataset(
    tmp_path, corpora_dir, tiny_encoder_dir, backbone_cache, monkeypatch
):
    """Multi-node preprocessing on one machine: rank 1 in a subprocess, rank 0 here, one output folder."""
    out = tmp_path / "streaming"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests" / "data")])}
    env.update(DATA_OPTIMIZER_NUM_NODES="2", DATA_OPTIMIZER_NODE_RANK="1")
    command = [
        sys.executable, "-m", "hierspeech2.data.preprocess", str(corpora_dir / "mini-librilight"),
        "--out", str(out), "--model", "backbone", "--format", "litdata", "--max-seconds", "5",
        "--num-workers", "1", "--semantic-model", str(tiny_encoder_dir), "--semantic-layer", "2",
        "--f0", "stub_features:energy_f0",
    ]  # fmt: skip
    node1 = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    monkeypatch.setenv("DATA_OPTIMIZER_NUM_NODES", "2")
    monkeypatch.setenv("DATA_OPTIMIZER_NODE_RANK", "0")
    utterances = split_long_utterances(read_corpus(corpora_dir / "mini-librilight"), max_seconds=5.0)
    writer = StreamingItemWriter(
        "backbone",
        semantic_model=str(tiny_encoder_dir),
        semantic_layer=2,
        f0_extractor="stub_features:energy_f0",
    )
    write_streaming_dataset(utterances, out, writer, num_workers=1)
    log = node1.communicate(timeout=300)[0].decode()
    assert node1.returncode == 0, log

    index = json.loads((out / "index.json").read_text())
    assert sorted(chunk["filename"] for chunk in index["chunks"]) == ["chunk-0-0.bin", "chunk-1-0.bin"]
    assert not (out / ".nodes").exists()
    assert is_streaming_dataset(out)

    dataset = open_streaming_dataset(out, shuffle=False)
    items = [dataset[i] for i in range(len(dataset))]
    assert sorted(item["id"] for item in items) == sorted(u.id for u in utterances)  # each piece once
    # the same features as the local cache made from the same pieces
    cache = FeatureCache(backbone_cache)
    record = next(r for r in cache.records() if r.id == items[0]["id"])
    cached = cache.load(record)
    assert np.array_equal(items[0]["audio"], cached["audio"].numpy())
    # litdata's workers run one torch thread: the float16 features agree to rounding, not bit for bit
    torch.testing.assert_close(items[0]["semantic"], cached["semantic"], atol=2e-3, rtol=0)
    assert np.array_equal(items[0]["f0"], cached["f0"].numpy())

    module = BackboneDataModule(
        str(out), LoaderOptions(batch_size=2, num_workers=0, pin_memory=False), segment_samples=32_000
    )
    batches = list(module.train_dataloader())
    assert len(batches) == 4 and all(isinstance(b, BackboneBatch) for b in batches)
    assert batches[0].audio.shape == (2, 1, 32_000) and batches[0].semantic.shape == (2, 32, 100)


def test_writer_applies_the_filters_before_encoding(corpora_dir, tiny_encoder_dir):
    from hierspeech2.data.datasets import UtteranceFilter

    utterance = read_corpus(corpora_dir / "mini-libritts")[0]  # 176 frames
    options = {
        "semantic_model": str(tiny_encoder_dir),
        "semantic_layer": 2,
        "f0_extractor": "stub_features:energy_f0",
    }
    item = StreamingItemWriter("ttv", **options)(utterance.to_dict())
    assert item["semantic"].shape == (32, 176) and item["tokens"].dtype == np.int64
    assert item["text"] == utterance.text and item["audio"].dtype == np.int16
    assert StreamingItemWriter("ttv", keep=UtteranceFilter(max_frames=100), **options)(utterance) is None
