from __future__ import annotations

import pytest
import torch

from hierspeech2.audio import pad_to_multiple
from hierspeech2.errors import AudioError
from hierspeech2.pitch import F0_MAX_HZ, yaapt


@pytest.mark.parametrize("variant", ["inference", "training"])
@pytest.mark.parametrize("case", ["a", "b"])
def test_yaapt_matches_official(parity_cases, parity_settings, case, variant):
    settings = parity_settings[f"{case}.yaapt"]
    assert settings["pad_each_side"] == 160 and settings["frame_space_ms"] == 5.0
    wav = parity_cases[f"{case}.yaapt.audio"]  # [1, N], already padded to a multiple of 1280
    expected = parity_cases[f"{case}.yaapt.{variant}"]  # [1, 1, N / 80]
    f0 = yaapt(wav, variant=variant)
    assert f0.shape == expected.shape == (1, 1, wav.shape[-1] // 80)
    assert f0.dtype == torch.float32
    close = (f0 - expected).abs() <= 1e-3
    # YAAPT makes discrete choices: another numpy/scipy build may flip a frame or two.
    assert close.float().mean().item() >= 0.99
    assert (expected > 0).float().mean().item() > 0.3  # the case is speech, not a trivial match


def test_variant_f0_max():
    assert F0_MAX_HZ == {"inference": 1100.0, "training": 400.0}


def test_input_layouts_and_padding(parity_cases):
    wav = parity_cases["b.yaapt.audio"][:, :12800]  # [1, N]
    assert yaapt(wav, "training").count_nonzero() > 0
    reference = yaapt(wav, "training")
    assert torch.equal(yaapt(wav[0], "training"), reference)
    assert torch.equal(yaapt(wav[:, None], "training"), reference)
    assert torch.equal(yaapt(wav[0].double().numpy(), "training"), reference)
    # The official callers pad to a multiple of 1280 first; then there are exactly N / 80 frames.
    unpadded = parity_cases["b.mel.audio"]  # [1, 48000]
    assert yaapt(pad_to_multiple(unpadded, 1280), "training").shape == (1, 1, 48640 // 80)


def test_yaapt_batch_rows_are_independent(parity_cases):
    a = parity_cases["a.yaapt.audio"]
    silence = torch.zeros_like(a)
    with pytest.warns(UserWarning, match=r"no voiced frame in row\(s\) \[1\]"):
        f0 = yaapt(torch.cat([a, silence]), "training")
    assert f0.shape == (2, 1, 608)
    assert torch.equal(f0[:1], yaapt(a, "training"))
    assert f0[1].abs().sum().item() == 0.0


def test_silence_returns_zeros_with_warning():
    with pytest.warns(UserWarning, match="no voiced frame"):
        f0 = yaapt(torch.zeros(1, 2560))
    assert torch.equal(f0, torch.zeros(1, 1, 32))


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(100), "at least 320"),
        (torch.tensor([0.0, float("nan")] * 400), "NaN/Inf"),
        (torch.zeros(1280, dtype=torch.int16), "dtype"),
        (torch.zeros(2, 2, 1280), "shape"),
    ],
)
def test_bad_input(bad, match):
    with pytest.raises(AudioError, match=match):
        yaapt(bad)


def test_bad_variant():
    with pytest.raises(ValueError, match="variant"):
        yaapt(torch.zeros(1280), variant="fast")
