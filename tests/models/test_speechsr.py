"""SpeechSR: parity with the released generators, strict official loading, lengths, packaged weights."""

from __future__ import annotations

import pytest
import torch

from hierspeech2.checkpoint import load_official_file, native_to_official
from hierspeech2.errors import AudioError, CheckpointError
from hierspeech2.models import SpeechSR
from hierspeech2.models.speechsr import convert_official

VARIANTS = {"24k": ("speechsr24k_G_340000.pth", 1.5, 24000), "48k": ("speechsr48k_G_100000.pth", 3.0, 48000)}
PARITY_ATOL = 1e-5
# Output samples either side of a cropped window that see the crop (measured: < 70; generous).
WINDOW_MARGIN = 1000
TINY = {"channels": 4, "resblock_kernel_sizes": (3,), "resblock_dilations": ((1, 3),)}


@pytest.fixture(scope="module")
def released(shared_dir):
    """The released generators, loaded once per module."""
    folder = shared_dir / "checkpoints" / "official"
    return {name: SpeechSR.from_official(folder / file) for name, (file, _, _) in VARIANTS.items()}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", ["a", "b"])
def test_parity_on_a_prefix(released, parity_cases, variant, case):
    # The generator is local, so the first 0.5 s of input reproduces the recorded output away from
    # the cut, at a sixth of the cost (the full length runs under -m slow). Only prefixes: the
    # interpolation positions are float32 (j + 0.5) · scale, whose rounding depends on the absolute
    # index j, so a window starting later differs from the full run by up to ~1e-2.
    model = released[variant]
    wav = parity_cases[f"{case}.speechsr.audio"][..., :8000]
    reference = parity_cases[f"{case}.speechsr{variant}.out"]
    with torch.inference_mode():
        out = model(wav, sample_rate=16000)
    kept = out.shape[-1] - WINDOW_MARGIN
    assert (out[..., :kept] - reference[..., :kept]).abs().max().item() <= PARITY_ATOL


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", ["a", "b"])
def test_parity_full_length(released, parity_cases, variant, case):
    reference = parity_cases[f"{case}.speechsr{variant}.out"]
    with torch.inference_mode():
        out = released[variant](parity_cases[f"{case}.speechsr.audio"])
    assert out.shape == reference.shape
    assert (out - reference).abs().max().item() <= PARITY_ATOL


@pytest.mark.parametrize("variant", VARIANTS)
def test_released_variant_is_recognised(released, variant):
    _, ratio, rate = VARIANTS[variant]
    model = released[variant]
    assert (model.upsample_ratio, model.input_rate, model.output_rate) == (ratio, 16000, rate)
    assert not model.training


@pytest.mark.parametrize("variant", ["speechsr24k", "speechsr48k"])
def test_key_set_equals_manifest(manifest, variant):
    ratio = 1.5 if variant == "speechsr24k" else 3.0
    model = SpeechSR(upsample_ratio=ratio)
    expected = {e["key"]: tuple(e["shape"]) for e in manifest(variant)}
    assert {k: tuple(v.shape) for k, v in model.official_state_dict().items()} == expected
    buffers = {e["key"] for e in manifest(variant) if e["kind"] == "buffer"}
    assert buffers == {
        k for k, _ in native_to_official(dict(model.named_buffers()), SpeechSR.OFFICIAL_PREFIXES).items()
    }


def test_official_buffers_load_unchanged(official_state_dict):
    state = official_state_dict("speechsr48k")
    model = SpeechSR.from_official(state, config={"upsample_ratio": 3.0})
    exported = model.official_state_dict()
    assert exported.keys() == state.keys()
    assert all(torch.equal(exported[k], state[k]) for k in state)


def test_round_trip_is_bit_identical():
    torch.manual_seed(0)
    model = SpeechSR(upsample_ratio=1.5, **TINY)
    state = model.official_state_dict()
    again = SpeechSR.from_official(state, config={"upsample_ratio": 1.5, **TINY})
    assert all(torch.equal(again.official_state_dict()[k], v) for k, v in state.items())
    wav = torch.randn(1, 1, 101)
    model.eval()
    assert torch.equal(again(wav), model(wav))


def test_unknown_weights_need_an_explicit_ratio(official_state_dict):
    with pytest.raises(CheckpointError, match="upsample_ratio"):
        SpeechSR.from_official(official_state_dict("speechsr24k"))


@pytest.fixture
def filled(official_state_dict):
    return dict(official_state_dict("speechsr24k"))


def _load(state):
    return SpeechSR.from_official(state, config={"upsample_ratio": 1.5})


def test_missing_key_is_listed(filled):
    del filled["dec.resblocks.2.convs2.1.bias"]
    with pytest.raises(CheckpointError, match=r"missing.*dec\.resblocks\.2\.convs2\.1\.bias"):
        _load(filled)


def test_unexpected_key_is_listed(filled):
    filled["dec.ups.0.bias"] = torch.zeros(16)
    with pytest.raises(CheckpointError, match=r"unexpected.*dec\.ups\.0\.bias"):
        _load(filled)


def test_wrong_shape_is_listed(filled):
    filled["dec.conv_post.weight"] = torch.zeros(1, 32, 5)
    with pytest.raises(CheckpointError, match=r"dec\.conv_post\.weight \(checkpoint \(1, 32, 5\)"):
        _load(filled)


@pytest.mark.parametrize(
    ("ratio", "lengths"), [(1.5, {1: 1, 2: 3, 3: 4, 161: 241}), (3.0, {1: 3, 2: 6, 161: 483})]
)
def test_output_length_is_floor_of_ratio_times_input(ratio, lengths):
    torch.manual_seed(0)
    model = SpeechSR(upsample_ratio=ratio, **TINY).eval()
    for n, expected in lengths.items():
        out = model(torch.randn(2, 1, n))
        assert out.shape == (2, 1, expected) == (2, 1, model.output_length(n))
        assert torch.isfinite(out).all() and out.abs().max() < 1


def test_long_input_agrees_with_its_prefix():
    torch.manual_seed(0)
    model = SpeechSR(upsample_ratio=1.5, **TINY).eval()
    wav = torch.randn(1, 1, 160_000)  # 10 s
    with torch.inference_mode():
        long = model(wav)
        short = model(wav[..., :2000])
    assert long.shape == (1, 1, 240_000)
    assert torch.allclose(long[..., :2000], short[..., :2000], atol=1e-6)


def test_wrong_input_is_rejected_with_advice():
    model = SpeechSR(**TINY)
    with pytest.raises(AudioError, match="expects 16000 Hz audio, got 22050 Hz; resample"):
        model(torch.zeros(1, 1, 10), sample_rate=22050)
    with pytest.raises(AudioError, match=r"unsqueeze\(1\)"):
        model(torch.zeros(1, 10))
    with pytest.raises(AudioError, match="empty"):
        model(torch.zeros(1, 1, 0))
    with pytest.raises(ValueError, match="whole output rate"):
        SpeechSR(upsample_ratio=1.3333)


@pytest.mark.parametrize("variant", VARIANTS)
def test_packaged_weights_equal_official(shared_dir, variant):
    file, ratio, rate = VARIANTS[variant]
    official = load_official_file(shared_dir / "checkpoints" / "official" / file)
    packaged = SpeechSR.from_packaged(rate)
    assert packaged.upsample_ratio == ratio and not packaged.training
    exported = packaged.official_state_dict()
    assert exported.keys() == official.keys()
    assert all(torch.equal(exported[k], official[k]) for k in official)


def test_convert_official_writes_a_loadable_native_file(tmp_path, official_state_dict):
    source = tmp_path / "G.pth"
    torch.save({"model": official_state_dict("speechsr24k"), "iteration": 1}, source)
    target = convert_official(source, tmp_path / "sr.safetensors", config={"upsample_ratio": 1.5})
    model = SpeechSR.from_native(target)
    assert model.output_rate == 24000
    exported = model.official_state_dict()
    assert all(torch.equal(exported[k], v) for k, v in official_state_dict("speechsr24k").items())


def test_packaged_and_native_errors(tmp_path):
    with pytest.raises(ValueError, match="24000, 48000"):
        SpeechSR.from_packaged(44100)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(1)}, str(foreign))
    with pytest.raises(CheckpointError, match="from_official"):
        SpeechSR.from_native(foreign)


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    model = SpeechSR(upsample_ratio=1.5, **TINY)
    model.save_pretrained(tmp_path / "sr")
    again = SpeechSR.from_pretrained(tmp_path / "sr")
    assert again.config == model.config and again.output_rate == 24000
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())
