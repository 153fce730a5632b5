import pytest
import torch

from hierspeech2.data.batch import BackboneBatch, SpeechSRBatch, TTVBatch
from hierspeech2.data.cache import FeatureCache
from hierspeech2.data.datamodules import BackboneDataModule, SpeechSRDataModule, TTVDataModule, split_records

OPTIONS = {"num_workers": 0, "pin_memory": False}


def test_split_by_speaker_list_and_count(ttv_cache, tmp_path):
    records = FeatureCache(ttv_cache).records()
    train, val = split_records(records, val_speakers=["1004"])
    assert {r.speaker for r in val} == {"1004"} and len(train) == 12
    id_list = tmp_path / "val.txt"
    id_list.write_text("1001_5001_000000_000000\n\n1002_5001_000001_000000\n")
    train, val = split_records(records, val_list=id_list, val_size=2)
    assert len(val) == 4 and {"1001_5001_000000_000000", "1002_5001_000001_000000"} <= {r.id for r in val}
    assert split_records(records, val_size=2)[1] == split_records(records, val_size=2)[1]  # stable
    id_list.write_text("nope\n")
    with pytest.raises(ValueError, match="not in the cache"):
        split_records(records, val_list=id_list)


def test_ttv_datamodule_batches(ttv_cache):
    module = TTVDataModule(str(ttv_cache), batch_size=4, val_speakers=["1004"], **OPTIONS)
    train = list(module.train_dataloader())
    assert len(train) == 3 and all(isinstance(b, TTVBatch) for b in train)  # 12 utterances, drop_last
    batch = train[0]
    frames = batch.semantic_lengths
    assert batch.semantic.shape[-1] == int(frames.max()) and batch.mel.shape[1:] == (80, int(frames.max()))
    assert torch.equal(batch.frame_mask.sum(dim=(1, 2)).long(), frames)
    assert torch.equal(batch.token_mask.sum(dim=(1, 2)).long(), batch.token_lengths)
    assert (batch.tokens * (1 - batch.token_mask[:, 0].long())).sum() == 0
    assert (batch.token_lengths <= frames).all()
    val = list(module.val_dataloader())
    assert len(val) == 4 and all(b.batch_size == 1 for b in val)


def test_backbone_datamodule_on_a_ttv_cache(ttv_cache):
    module = BackboneDataModule(str(ttv_cache), batch_size=5, **OPTIONS)
    batch = next(iter(module.train_dataloader()))
    assert isinstance(batch, BackboneBatch)
    assert batch.audio.shape == (5, 1, 61_440) or int(batch.frame_lengths.max()) < 192
    t = int(batch.frame_lengths.max())
    assert (
        batch.linear.shape == (5, 641, t)
        and batch.semantic.shape == (5, 32, t)
        and batch.f0.shape == (5, 1, 4 * t)
    )
    assert module.val_dataloader() == []


def test_speechsr_datamodule(speechsr_cache):
    module = SpeechSRDataModule(str(speechsr_cache), batch_size=4, target_rate=24_000, val_size=4, **OPTIONS)
    batches = list(module.train_dataloader())
    assert len(batches) == 3 and isinstance(batches[0], SpeechSRBatch)
    assert batches[0].high_rate.shape == (4, 1, 9_600) and batches[0].low_rate.shape == (4, 1, 6_400)
    with pytest.raises(ValueError, match="--target-rate 48000"):
        SpeechSRDataModule(str(speechsr_cache), target_rate=48_000, **OPTIONS).setup("fit")


def test_unfinished_cache_says_how_to_finish(tmp_path):
    with pytest.raises(FileNotFoundError, match="hierspeech2 preprocess"):
        TTVDataModule(str(tmp_path), **OPTIONS).setup("fit")
