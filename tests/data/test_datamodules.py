import pytest
import torch
from stub_features import energy_f0

from hierspeech2.data.batch import BackboneBatch, SpeechSRBatch, TTVBatch
from hierspeech2.data.cache import FeatureCache
from hierspeech2.data.datamodules import (
    BackboneDataModule,
    LoaderOptions,
    SpeechSRDataModule,
    TTVDataModule,
    split_records,
)
from hierspeech2.data.features import SemanticFeatures, from_pcm16
from hierspeech2.errors import DataNotFoundError
from hierspeech2.ssl import RandomSemanticEncoder

OPTIONS = {"num_workers": 0, "pin_memory": False}
LOADER = LoaderOptions(**OPTIONS)


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
    module = TTVDataModule(str(ttv_cache), LoaderOptions(batch_size=4, val_speakers=["1004"], **OPTIONS))
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
    module = BackboneDataModule(str(ttv_cache), LoaderOptions(batch_size=5, **OPTIONS))
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
    module = SpeechSRDataModule(
        str(speechsr_cache), LoaderOptions(batch_size=4, val_size=4, **OPTIONS), target_rate=24_000
    )
    batches = list(module.train_dataloader())
    assert len(batches) == 3 and isinstance(batches[0], SpeechSRBatch)
    assert batches[0].high_rate.shape == (4, 1, 9_600) and batches[0].low_rate.shape == (4, 1, 6_400)
    with pytest.raises(ValueError, match="--target-rate 48000"):
        SpeechSRDataModule(str(speechsr_cache), LOADER, target_rate=48_000).setup("fit")


def test_unfinished_cache_says_how_to_finish(tmp_path):
    with pytest.raises(FileNotFoundError, match="hierspeech2 preprocess"):
        TTVDataModule(str(tmp_path), LOADER).setup("fit")


# ------------------------------------------------------------------ prepare_data: the cache from corpus_dir


def test_prepare_data_builds_the_cache_from_corpus_dir_once(tmp_path, corpora_dir, speechsr_cache):
    data_dir = tmp_path / "data" / "sr24k"
    module = SpeechSRDataModule(
        str(data_dir), LoaderOptions(batch_size=4, val_size=4, **OPTIONS),
        corpus_dir=str(corpora_dir / "mini-libritts"), target_rate=24_000,
    )  # fmt: skip
    module.prepare_data()
    built, reference = FeatureCache(data_dir), FeatureCache(speechsr_cache)
    assert built.records() == reference.records()  # the same cache `hierspeech2 preprocess` makes
    assert torch.equal(
        built.load(built.records()[3])["audio"], reference.load(reference.records()[3])["audio"]
    )
    assert sorted(path.name for path in data_dir.parent.iterdir()) == ["sr24k"]  # no temporary folder left
    stamp = built.manifest_path.stat().st_mtime_ns
    module.prepare_data()  # a finished cache is used as it is
    assert built.manifest_path.stat().st_mtime_ns == stamp
    batch = next(iter(module.train_dataloader()))
    assert isinstance(batch, SpeechSRBatch) and batch.high_rate.shape == (4, 1, 9_600)


def test_prepare_data_uses_the_configured_semantic_encoder_and_f0(tmp_path, corpora_dir):
    data_dir = tmp_path / "ttv"
    encoder = RandomSemanticEncoder(hidden_size=16, num_layers=1, seed=5)
    module = TTVDataModule(
        str(data_dir), LoaderOptions(batch_size=4, val_size=4, **OPTIONS),
        corpus_dir=str(corpora_dir / "mini-libritts"), semantic_encoder=encoder,
        f0_extractor="stub_features:energy_f0",
    )  # fmt: skip
    module.prepare_data()
    cache = FeatureCache(data_dir)
    config = cache.read_config()
    assert config["semantic"] == {"name": encoder.name, "layer": 1}
    assert config["f0"] == "stub_features:energy_f0" and config["model"] == "ttv"
    record = cache.records()[0]
    item = cache.load(record)
    fresh = SemanticFeatures(RandomSemanticEncoder(hidden_size=16, num_layers=1, seed=5))
    assert item["semantic"].shape == (16, record.num_frames)
    assert torch.equal(item["semantic"], fresh(item["audio"].numpy()))
    torch.testing.assert_close(item["f0"], energy_f0(from_pcm16(item["audio"])).reshape(-1))
    batch = next(iter(module.train_dataloader()))
    assert isinstance(batch, TTVBatch) and batch.semantic.shape[1] == 16


def test_a_missing_cache_without_corpus_dir_is_one_line_naming_the_preprocess_command(tmp_path):
    data_dir = tmp_path / "sr48k"
    module = SpeechSRDataModule(str(data_dir), LOADER, target_rate=48_000)
    expected = (
        f"{data_dir} holds no feature cache: make it with `hierspeech2 preprocess CORPUS --model speechsr "
        f"--target-rate 48000 --out {data_dir}` (it resumes where it stopped), "
        "or set data.init_args.corpus_dir "
        "to build it before training"
    )
    for hook in (module.prepare_data, lambda: module.setup("fit")):
        with pytest.raises(DataNotFoundError) as error:
            hook()
        assert str(error.value) == expected
    data_dir.mkdir()
    (data_dir / "cache.json").write_text("{}")  # an interrupted `hierspeech2 preprocess`
    ttv = TTVDataModule(str(data_dir), LOADER, semantic_encoder="my/mms", f0_extractor="swift")
    with pytest.raises(DataNotFoundError) as error:
        ttv.prepare_data()
    assert str(error.value).startswith(
        f"{data_dir} is an unfinished feature cache: make it with `hierspeech2 preprocess CORPUS --model ttv "
        f"--out {data_dir} --semantic-model my/mms --f0 swift`"
    )


def test_prepare_data_never_touches_an_unfinished_cache_or_a_missing_corpus(tmp_path, corpora_dir):
    data_dir = tmp_path / "cache"
    data_dir.mkdir()
    (data_dir / "cache.json").write_text("{}")
    corpus = str(corpora_dir / "mini-libritts")
    module = SpeechSRDataModule(str(data_dir), LOADER, corpus_dir=corpus, target_rate=24_000)
    with pytest.raises(DataNotFoundError, match="holds an unfinished feature cache: finish it with"):
        module.prepare_data()
    assert [path.name for path in data_dir.iterdir()] == ["cache.json"]
    missing = SpeechSRDataModule(
        str(tmp_path / "new"), LOADER, corpus_dir="no/such/corpus", target_rate=24_000
    )
    with pytest.raises(
        DataNotFoundError, match=r"corpus_dir no/such/corpus not found \(relative paths start"
    ):
        missing.prepare_data()
    assert not (tmp_path / "new").exists()
