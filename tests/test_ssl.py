import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from hierspeech2.errors import AudioError
from hierspeech2.ssl import SemanticEncoder


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
    truncated_model = Wav2Vec2Model(Wav2Vec2Config.from_dict({**full.config.to_dict(), "num_hidden_layers": layer}))
    missing, unexpected = truncated_model.load_state_dict(full.state_dict(), strict=False)
    assert not missing
    assert all(key.startswith("encoder.layers.") for key in unexpected)
    encoder = SemanticEncoder(truncated_model, layer=layer)

    wav = torch.randn(2, 16_000)
    padded = torch.nn.functional.pad(wav.unsqueeze(1), (40, 40), mode="reflect").squeeze(1)
    with torch.no_grad():
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
