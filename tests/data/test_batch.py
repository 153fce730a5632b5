import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning_utilities.core.apply_func import apply_to_collection

from hierspeech2.data.batch import BackboneBatch, SpeechSRBatch, TTVBatch, length_mask


def _ttv() -> TTVBatch:
    return TTVBatch(
        tokens=torch.tensor([[0, 5, 0, 7, 0], [0, 9, 0, 0, 0]]),
        token_lengths=torch.tensor([5, 3]),
        semantic=torch.randn(2, 1024, 3),
        f0=torch.tensor([[[0.0] * 8 + [99.0] * 4], [[0.0] * 12]]),
        mel=torch.randn(2, 80, 3),
        audio=torch.randn(2, 1, 960),
        semantic_lengths=torch.tensor([3, 2]),
    )


def test_length_mask():
    assert length_mask(torch.tensor([2, 0, 3]), 4).tolist() == [
        [[1, 1, 0, 0]],
        [[0, 0, 0, 0]],
        [[1, 1, 1, 0]],
    ]


def test_ttv_derived_fields():
    batch = _ttv()
    assert batch.phonemes.tolist() == [[5, 7], [9, 0]]
    assert batch.phoneme_lengths.tolist() == [2, 1]
    assert batch.token_mask.shape == (2, 1, 5) and batch.token_mask[1, 0].tolist() == [1, 1, 1, 0, 0]
    assert batch.frame_mask[1, 0].tolist() == [1, 1, 0]
    torch.testing.assert_close(batch.log_f0[0, 0, -1], torch.log(torch.tensor(100.0)))
    assert batch.log_f0[1].abs().sum() == 0
    assert batch.batch_size == 2


def test_to_changes_float_dtype_only_and_lightning_moves_batches():
    batch = _ttv()
    half = batch.to(torch.float16)
    assert half.semantic.dtype == torch.float16 and half.tokens.dtype == torch.int64
    assert half.semantic_lengths.dtype == torch.int64
    moved = move_data_to_device(batch, torch.device("cpu"))
    assert isinstance(moved, TTVBatch) and torch.equal(moved.semantic, batch.semantic)
    # what Lightning's "16-true"/"bf16-true" precision does to inputs
    converted = apply_to_collection(batch, torch.Tensor, lambda t: t.half() if t.is_floating_point() else t)
    assert isinstance(converted, TTVBatch) and converted.mel.dtype == torch.float16


def test_backbone_and_speechsr_helpers():
    backbone = BackboneBatch(
        audio=torch.zeros(2, 1, 640),
        linear=torch.zeros(2, 641, 2),
        mel=torch.zeros(2, 80, 2),
        semantic=torch.zeros(2, 1024, 2),
        f0=torch.full((2, 1, 8), 9.0),
        frame_lengths=torch.tensor([2, 1]),
    )
    assert backbone.perturbed_audio is None and backbone.to("cpu").perturbed_audio is None
    assert backbone.audio_lengths.tolist() == [640, 320]
    assert backbone.frame_mask[1, 0].tolist() == [1, 0]
    torch.testing.assert_close(backbone.log_f0, torch.full((2, 1, 8), 10.0).log())
    speechsr = SpeechSRBatch(
        torch.zeros(1, 1, 4), torch.zeros(1, 1, 12), torch.tensor([3]), torch.tensor([9])
    )
    assert speechsr.high_rate_mask[0, 0].tolist() == [1.0] * 9 + [0.0] * 3
