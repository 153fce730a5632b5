from __future__ import annotations

import copy

import pytest
import torch

from hierspeech2.errors import CheckpointError
from hierspeech2.models.backbone import HierSpeech2
from hierspeech2.nn.functional import length_mask

RELEASED_PARAMETERS = 97_022_304
TINY = {
    "spec_channels": 9,
    "semantic_channels": 16,
    "inter_channels": 8,
    "hidden_channels": 8,
    "filter_channels": 16,
    "resblock_kernel_sizes": (3,),
    "resblock_dilation_sizes": ((1, 3),),
    "upsample_rates": (4, 2, 2),
    "upsample_initial_channel": 32,
    "upsample_kernel_sizes": (8, 4, 4),
    "gin_channels": 8,
    "prosody_size": 4,
    "mel_channels": 6,
    "style_hidden_channels": 8,
    "posterior_layers": 2,
    "prior_layers": 1,
    "flow_layers": 1,
    "n_flows": 2,
    "audio_encoder_channels": (4, 4, 6, 8),
    "audio_downsample_rates": (4, 2, 2),
    "audio_downsample_kernel_sizes": (9, 4, 4),
}
TINY_HOP = 16


@pytest.fixture(scope="module")
def released(official_state_dict) -> HierSpeech2:
    return HierSpeech2.from_official(official_state_dict("backbone"))


def _random_official_state(model: HierSpeech2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights that make every path matter (the default init leaves flows as identities)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.official_state_dict().items():
        noise = torch.randn(value.shape, generator=generator)
        leaf = key.rsplit(".", 1)[-1]
        if key.endswith("filter"):  # fixed anti-aliasing buffers
            state[key] = value
        elif leaf == "weight_g":
            state[key] = 0.6 * (1 + 0.1 * noise.abs())
        elif leaf == "gamma":
            state[key] = 1 + 0.1 * noise
        elif value.dim() >= 2:
            state[key] = noise / value[0].numel() ** 0.5
        else:
            state[key] = 0.1 * noise
    return state


@pytest.fixture(scope="module")
def tiny() -> HierSpeech2:
    torch.manual_seed(0)
    return HierSpeech2.from_official(_random_official_state(HierSpeech2(**TINY)), config=TINY)


@pytest.mark.parametrize("case", ["a", "b"])
def test_voice_conversion_matches_official(released, parity_cases, parity_settings, case: str) -> None:
    settings = parity_settings[f"{case}.vc"]
    semantic = parity_cases[f"{case}.vc.w2v"]
    prompt_mel = parity_cases[f"{case}.vc.trg_mel"]
    expected = parity_cases[f"{case}.vc.out"]
    out = released.voice_conversion(
        semantic,
        torch.tensor([semantic.shape[-1]]),
        prompt_mel,
        torch.full((prompt_mel.shape[0],), prompt_mel.shape[-1]),
        parity_cases[f"{case}.vc.f0"],
        noise_scale=settings["noise_scale"],
        denoise_ratio=settings["denoise_ratio"],
    )
    assert out.shape == expected.shape == (1, 1, 320 * semantic.shape[-1])
    assert (out - expected).abs().max().item() <= 1e-4


def test_released_keys_shapes_and_size_match_manifest(released, manifest, official_state_dict) -> None:
    entries = manifest("backbone")
    exported = released.official_state_dict()
    assert len(exported) == len(entries) == 2222
    assert {k: tuple(v.shape) for k, v in exported.items()} == {e["key"]: tuple(e["shape"]) for e in entries}
    params = {e["key"] for e in entries if e["kind"] == "param"}
    assert sum(v.numel() for k, v in exported.items() if k in params) == RELEASED_PARAMETERS
    assert sum(p.numel() for p in released.parameters()) == RELEASED_PARAMETERS
    # loading and exporting again gives back the checkpoint bit for bit
    source = official_state_dict("backbone")
    assert all(torch.equal(exported[k], source[k]) for k in source)


def test_native_names_are_descriptive(released) -> None:
    native = released.state_dict()
    assert "perturbed_prior_encoder.pre_source.weight" in native
    assert "generator.downs.conv.0.parametrizations.weight.original1" in native
    assert "null_style.weight" in native and "style_encoder.fc.weight" in native
    assert not any(k.startswith(("enc_p", "emb_g.", "dec.", "sn.", "flow_l.")) for k in native)


def test_strict_loading_lists_bad_keys(tiny) -> None:
    state = tiny.official_state_dict()
    missing = {k: v for k, v in state.items() if k != "dec.proj.weight"}
    with pytest.raises(CheckpointError, match=r"missing key.*dec\.proj\.weight"):
        HierSpeech2.from_official(missing, config=TINY)
    with pytest.raises(CheckpointError, match=r"unexpected key.*dec\.extra"):
        HierSpeech2.from_official({**state, "dec.extra": torch.zeros(1)}, config=TINY)
    reshaped = {**state, "sn.cond.bias": torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"shape mismatch.*sn\.cond\.bias"):
        HierSpeech2.from_official(reshaped, config=TINY)


def test_official_round_trip_is_bit_identical(tiny) -> None:
    state = tiny.official_state_dict()
    assert "dec.conv_pre.weight_g" in state and "enc_p_l.proj.weight" in state and "emb.weight" in state
    again = HierSpeech2.from_official(state, config=TINY)
    native, native_again = tiny.state_dict(), again.state_dict()
    assert native.keys() == native_again.keys()
    assert all(torch.equal(native[k], native_again[k]) for k in native)


def test_native_save_and_load_round_trip(tiny, tmp_path) -> None:
    tiny.save_pretrained(tmp_path / "backbone")
    again = HierSpeech2.from_pretrained(tmp_path / "backbone")
    assert again.hop_length == TINY_HOP and not again.training
    native = tiny.state_dict()
    assert all(torch.equal(again.state_dict()[k], v) for k, v in native.items())


def test_cfg_is_read_off_the_checkpoint(tiny) -> None:
    state = {k: v for k, v in tiny.official_state_dict().items() if k != "emb.weight"}
    assert HierSpeech2.config_from_official(state) == {"cfg": False}
    model = HierSpeech2.from_official(state, config={**TINY, "cfg": False})
    with pytest.raises(ValueError, match="cfg=False"):
        model.null_style_vector()
    null = tiny.null_style_vector()
    assert null.shape == (1, 8, 1)
    torch.testing.assert_close(null[0, :, 0], tiny.null_style.weight[0] * 8**0.5)


def _inputs(batch: int, frames: int, prompt_frames: int = 11, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    semantic = torch.randn(batch, 16, frames, generator=generator)
    log_f0 = torch.rand(batch, 1, 4 * frames, generator=generator) * 5
    prompt = torch.randn(2 * batch, 6, prompt_frames, generator=generator)
    return semantic, log_f0, prompt


def test_tiny_shapes_of_every_part(tiny) -> None:
    frames = 7
    semantic, log_f0, prompt = _inputs(2, frames)
    lengths = torch.tensor([frames, 5])
    wav = tiny.voice_conversion(semantic, lengths, prompt, torch.full((4,), 11), log_f0, noise_scale=0.5)
    assert wav.shape == (2, 1, TINY_HOP * frames) and torch.all(wav.abs() <= 1)

    style = tiny.encode_style(prompt, torch.full((4,), 11), batch_size=2)
    mask = length_mask(lengths, frames)
    spec, audio = torch.randn(2, 9, frames), torch.randn(2, 1, TINY_HOP * frames)
    post_mean, post_log_std = tiny.posterior_encoder(spec, audio, mask, style)
    assert post_mean.shape == post_log_std.shape == (2, 8, frames)
    assert torch.all(post_mean[1, :, 5:] == 0)
    prior_mean, _ = tiny.prior_encoder(semantic, log_f0, mask, style)
    assert prior_mean.shape == (2, 8, frames)
    assert tiny.posterior_flow(post_mean, mask, style).shape == (2, 8, frames)
    assert tiny.prosody_decoder(post_mean, mask, style).shape == (2, 4, frames)
    wav, log_f0_pred = tiny.synthesize(post_mean, style)
    assert wav.shape == (2, 1, TINY_HOP * frames) and log_f0_pred.shape == (2, 1, 4 * frames)


def test_batch_equals_single_items(tiny) -> None:
    semantic, log_f0, prompt = _inputs(2, 9, prompt_frames=12, seed=3)
    prompt_lengths = torch.tensor([12, 12, 8, 8])
    batch = tiny.voice_conversion(
        semantic, torch.tensor([9, 9]), prompt, prompt_lengths, log_f0, noise_scale=0.0
    )
    for i in range(2):
        alone = tiny.voice_conversion(
            semantic[i : i + 1],
            torch.tensor([9]),
            prompt[2 * i : 2 * i + 2, :, : int(prompt_lengths[2 * i])],
            prompt_lengths[2 * i : 2 * i + 2],
            log_f0[i : i + 1],
            noise_scale=0.0,
        )
        torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(batch[0], batch[1], atol=1e-3)


def test_denoise_ratio_mixes_the_two_prompt_rows(tiny) -> None:
    semantic, log_f0, prompt = _inputs(1, 6, seed=5)
    lengths, prompt_lengths = torch.tensor([6]), torch.tensor([11, 11])
    convert = tiny.voice_conversion
    original = convert(semantic, lengths, prompt[:1], prompt_lengths[:1], log_f0, noise_scale=0.0)
    denoised = convert(semantic, lengths, prompt[1:], prompt_lengths[:1], log_f0, noise_scale=0.0)
    assert not torch.allclose(original, denoised, atol=1e-4)
    torch.testing.assert_close(
        convert(semantic, lengths, prompt, prompt_lengths, log_f0, noise_scale=0.0), original
    )
    mixed = convert(semantic, lengths, prompt, prompt_lengths, log_f0, noise_scale=0.0, denoise_ratio=1.0)
    torch.testing.assert_close(mixed, denoised)
    style = tiny.encode_style(prompt, prompt_lengths, 1, denoise_ratio=0.25)
    rows = tiny.encode_style(prompt, prompt_lengths, 2)
    torch.testing.assert_close(style, 0.75 * rows[:1] + 0.25 * rows[1:])


def test_noise_scale_draws_around_the_prior_mean(tiny) -> None:
    semantic, log_f0, prompt = _inputs(1, 6, seed=7)
    args = (semantic, torch.tensor([6]), prompt, torch.tensor([11, 11]), log_f0)
    mean = tiny.voice_conversion(*args, noise_scale=0.0)
    torch.manual_seed(0)
    noisy = tiny.voice_conversion(*args, noise_scale=0.667)
    assert not torch.allclose(mean, noisy)


def test_runs_in_float64(tiny) -> None:
    semantic, log_f0, prompt = _inputs(1, 5, seed=9)
    args = (torch.tensor([5]), prompt, torch.tensor([11, 11]))
    single = tiny.voice_conversion(semantic, args[0], args[1], args[2], log_f0, noise_scale=0.0)
    model64 = copy.deepcopy(tiny).double()
    double = model64.voice_conversion(
        semantic.double(), args[0], args[1].double(), args[2], log_f0.double(), noise_scale=0.0
    )
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), single, atol=1e-4, rtol=1e-3)


def test_bad_inputs_and_configs_are_explained(tiny) -> None:
    semantic, log_f0, prompt = _inputs(1, 6)
    with pytest.raises(ValueError, match="log_f0 must be"):
        tiny.voice_conversion(semantic, torch.tensor([6]), prompt, torch.tensor([11, 11]), log_f0[..., :-1])
    with pytest.raises(ValueError, match="prompt_mel must hold"):
        tiny.voice_conversion(
            semantic, torch.tensor([6]), prompt.repeat(2, 1, 1), torch.full((4,), 11), log_f0
        )
    with pytest.raises(ValueError, match="first upsample rate"):
        HierSpeech2(**{**TINY, "upsample_rates": (2, 4, 2), "upsample_kernel_sizes": (4, 8, 4)})
    with pytest.raises(ValueError, match="audio_downsample_rates"):
        HierSpeech2(**{**TINY, "audio_downsample_rates": (4, 2, 4)})
