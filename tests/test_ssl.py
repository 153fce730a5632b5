import time

import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from hierspeech2.errors import AudioError
from hierspeech2.nn.inference import reference_arithmetic
from hierspeech2.nn.quantization import Int8Conv1d, int8_inference, int8_supported
from hierspeech2.registry import DownloadError
from hierspeech2.ssl import RandomSemanticEncoder, SemanticEncoder


def tiny_config(stable: bool = True) -> Wav2Vec2Config:
    # the MMS-300m architecture (stable layer norm, conv feature extractor with hop 320), shrunk
    return Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=10,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=stable,
        feat_extract_norm="layer" if stable else "group",
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
    )


def randomise_layer_norms(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.weight.data = 1 + torch.randn(module.weight.shape, generator=generator)
            module.bias.data = torch.randn(module.bias.shape, generator=generator)


@pytest.mark.parametrize("stable", [True, False])
def test_truncated_encoder_equals_full_model_hidden_state(stable: bool) -> None:
    torch.manual_seed(0)
    full = Wav2Vec2Model(tiny_config(stable)).eval()
    randomise_layer_norms(full)
    layer = 7
    truncated_model = Wav2Vec2Model(
        Wav2Vec2Config.from_dict({**full.config.to_dict(), "num_hidden_layers": layer})
    )
    missing, unexpected = truncated_model.load_state_dict(full.state_dict(), strict=False)
    assert not missing
    assert all(key.startswith("encoder.layers.") for key in unexpected)
    encoder = SemanticEncoder(truncated_model, layer=layer)

    wav = torch.randn(2, 16_000)
    padded = torch.nn.functional.pad(wav.unsqueeze(1), (40, 40), mode="reflect").squeeze(1)
    # the reference arithmetic, as transformers computes it (the fast front end: the test below)
    with torch.no_grad(), reference_arithmetic():
        expected = full(padded, output_hidden_states=True).hidden_states[layer].transpose(1, 2)
        got = encoder(wav)
        final_normed = full(padded).last_hidden_state
    assert got.shape == (2, 32, 16_000 // 320)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0), (got - expected).abs().max()
    # the check has teeth: the final LayerNorm changes the features
    assert not torch.allclose(got.transpose(1, 2)[..., :1], final_normed[..., :1], atol=1e-3)


@pytest.mark.parametrize("samples", [320, 1280, 48_000, 48_640, 12_345])
def test_frame_count_is_samples_over_hop(samples: int) -> None:
    encoder = SemanticEncoder.from_config(tiny_config(), layer=3)
    with torch.inference_mode():
        assert encoder(torch.randn(1, samples)).shape[-1] == samples // 320


def test_accepts_unbatched_and_channel_inputs() -> None:
    encoder = SemanticEncoder.from_config(tiny_config(), layer=2)
    wav = torch.randn(3200)
    with torch.inference_mode():
        assert torch.equal(encoder(wav), encoder(wav.view(1, 1, -1)))


def test_rejects_bad_shapes_and_layers() -> None:
    encoder = SemanticEncoder.from_config(tiny_config(), layer=2)
    with pytest.raises(AudioError, match="too short"):
        encoder(torch.randn(1, 30))
    with pytest.raises(AudioError, match=r"\[B, N\]"):
        encoder(torch.randn(2, 2, 100))
    with pytest.raises(ValueError, match="layer must be"):
        SemanticEncoder(Wav2Vec2Model(tiny_config()), layer=11)


# ------------------------------------------------------------------ the tiny recipes' random encoder


def test_random_encoder_is_the_same_for_a_seed_and_leaves_the_global_random_state() -> None:
    state = torch.random.get_rng_state()
    first, again, other = (
        RandomSemanticEncoder(seed=0),
        RandomSemanticEncoder(seed=0),
        RandomSemanticEncoder(seed=1),
    )
    assert torch.equal(torch.random.get_rng_state(), state)
    weights = first.state_dict()
    assert weights.keys() == again.state_dict().keys()
    assert all(torch.equal(value, again.state_dict()[key]) for key, value in weights.items())
    assert not torch.equal(weights["model.encoder.layers.1.attention.q_proj.weight"],
                           other.state_dict()["model.encoder.layers.1.attention.q_proj.weight"])  # fmt: skip
    wav = torch.randn(2, 6_400, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        features = first(wav)
        assert features.shape == (2, 32, 20) and torch.isfinite(features).all()
        assert torch.equal(features, again(wav))
        assert not torch.allclose(features, other(wav))
    assert first.hidden_size == 32 and first.layer == 2 and len(first.model.encoder.layers) == 2
    assert first.name != other.name and "seed=0" in first.name and "hidden_size=32" in first.name


def test_random_encoder_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        RandomSemanticEncoder(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="positive integers"):
        RandomSemanticEncoder(num_layers=0)


# ------------------------------------------------------------------ no Hub: one line, in seconds


def test_from_pretrained_offline_fails_in_one_line_naming_the_download(loopback_hub, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(DownloadError) as error:
        SemanticEncoder.from_pretrained("facebook/mms-300m")
    assert time.perf_counter() - start < 2.0
    message = str(error.value)
    assert "\n" not in message
    assert "facebook/mms-300m" in message and "HF_HUB_OFFLINE" in message
    assert "`hierspeech2 download mms-300m`" in message
    assert loopback_hub.requests == []  # offline means no request at all


def test_from_pretrained_with_the_hub_unreachable_fails_in_seconds(loopback_hub) -> None:
    # regression: huggingface_hub retried with back-off for ~30 s, then transformers raised a raw OSError
    loopback_hub.stop()  # connection refused from now on
    start = time.perf_counter()
    with pytest.raises(
        DownloadError,
        match=r"cannot reach http://127\.0\.0\.1:\d+ \(.+\) to download facebook/mms-300m.*"
        r", or pass a local transformers folder$",
    ):
        SemanticEncoder.from_pretrained("facebook/mms-300m")
    assert time.perf_counter() - start < 3.0


def test_from_pretrained_downloads_from_a_reachable_hub(loopback_hub, tmp_path) -> None:
    encoder = RandomSemanticEncoder(seed=3)
    encoder.model.save_pretrained(tmp_path / "tiny")
    loopback_hub.add_folder("someone/tiny-mms", tmp_path / "tiny")
    loaded = SemanticEncoder.from_pretrained("someone/tiny-mms", layer=2)
    wav = torch.randn(1, 3_200, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(loaded(wav), encoder(wav))
    with pytest.raises(DownloadError, match="someone/missing@main:config.json: repository not found"):
        SemanticEncoder.from_pretrained("someone/missing")


@pytest.mark.parametrize("chunk_frames", [1, 5, 37, 38])
def test_time_major_front_end_in_chunks_equals_the_transformers_one(chunk_frames: int) -> None:
    """Chunks read exactly the samples their frames need: any chunk size gives the one-pass result."""
    from hierspeech2.ssl import time_major_conv_features

    torch.manual_seed(0)
    model = Wav2Vec2Model(tiny_config()).eval()
    randomise_layer_norms(model)
    model.double()
    wav = torch.randn(2, 12_345, dtype=torch.float64)
    with torch.no_grad():
        expected = model.feature_extractor(wav).transpose(1, 2)
        got = time_major_conv_features(model.feature_extractor, wav, chunk_frames=chunk_frames)
    assert got.shape == expected.shape == (2, 38, 16)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("conv_bias", [True, False])
def test_time_major_front_end_equals_the_transformers_one(conv_bias: bool) -> None:
    from hierspeech2.ssl import time_major_conv_features

    torch.manual_seed(0)
    config = Wav2Vec2Config.from_dict({**tiny_config().to_dict(), "conv_bias": conv_bias})
    model = Wav2Vec2Model(config).eval()
    randomise_layer_norms(model)
    wav = torch.randn(2, 12_345)
    # the same function reordered: equal to float64 rounding, and to float32 rounding in float32
    with torch.no_grad():
        model.double()
        expected = model.feature_extractor(wav.double()).transpose(1, 2)
        got = time_major_conv_features(model.feature_extractor, wav.double())
        assert got.shape == expected.shape == (2, 38, 16)
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
        model.float()
        expected = model.feature_extractor(wav).transpose(1, 2)
        got = time_major_conv_features(model.feature_extractor, wav)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # the encoder takes it when no gradient flows, and the reference otherwise
    encoder = SemanticEncoder(model, layer=3)
    with torch.no_grad():
        fast = encoder(wav)
        with reference_arithmetic():
            reference = encoder(wav)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=0)
    assert not torch.equal(fast, reference)  # they are different computations
    source = wav.clone().requires_grad_(True)
    encoder(source).sum().backward()
    assert source.grad is not None and bool(source.grad.abs().sum() > 0)


def test_encoder_runs_under_bf16_autocast_as_the_reference_does() -> None:
    # bf16-mixed training encodes frozen MMS under autocast: the time-major front end (out= matmuls
    # in the weights' dtype) must stand aside there, leaving autocast's own choice of dtypes.
    torch.manual_seed(0)
    encoder = SemanticEncoder(Wav2Vec2Model(tiny_config()).eval(), layer=3)
    wav = torch.randn(2, 6_400)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = encoder(wav)
        with reference_arithmetic():
            expected = encoder(wav)
    assert got.dtype == expected.dtype
    assert torch.equal(got, expected)


@pytest.mark.skipif(not int8_supported(), reason="this PyTorch build lacks oneDNN int8 kernels")
def test_int8_encoder_with_quantised_front_end_convolutions_runs_and_stays_close() -> None:
    # quantize_int8 keeps the encoder's front end in float32 (int8_float_parts), but one can still
    # quantise it on its own: the time-major front end reads float weights, so it must stand aside.
    encoder = RandomSemanticEncoder(hidden_size=32, num_layers=2, conv_channels=256, seed=3).eval()
    wav = torch.randn(2, 16_000, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = encoder(wav)
        int8_inference(encoder)
        assert not any(isinstance(module, Int8Conv1d) for module in encoder.modules())
        int8_inference(encoder.model.feature_extractor)
        assert any(isinstance(module, Int8Conv1d) for module in encoder.modules())
        got = encoder(wav)
    assert got.shape == reference.shape == (2, 32, 50)
    relative = ((got - reference).norm() / reference.norm()).item()
    assert 1e-4 < relative < 0.1, relative  # changed by int8, within a few layers' int8 error
