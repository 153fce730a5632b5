from __future__ import annotations

import pytest
import torch
from tiny_models import TTV_UNIT

from hierspeech2.errors import CheckpointError
from hierspeech2.models.ttv import TextToVec

TINY = TTV_UNIT
DETERMINISTIC = {"noise_scale": 0.0, "noise_scale_w": 0.0, "length_scale": 1.0}


@pytest.fixture(scope="module")
def tiny() -> TextToVec:
    """A tiny model with every parameter random (so flows and splines are not the identity)."""
    torch.manual_seed(0)
    model = TextToVec(**TINY)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            scale = 0.05 if name.endswith("original0") else 0.2
            parameter.copy_(
                torch.randn(parameter.shape, generator=gen) * scale + (1.0 if "gamma" in name else 0.0)
            )
        # a positive log-duration offset gives several frames per token
        model.duration_predictor.flows[0].m[0] = 1.0
    return model.eval()


@pytest.fixture(scope="module")
def released(official_state_dict) -> TextToVec:
    return TextToVec.from_official(official_state_dict("ttv"))


@pytest.mark.parametrize("case", ["a", "b"])
def test_parity_with_official_inference(released, parity_cases, parity_settings, case) -> None:
    settings = parity_settings[f"{case}.ttv"]
    tokens, prompt_mel = parity_cases[f"{case}.ttv.tokens"], parity_cases[f"{case}.ttv.prompt_mel"]
    semantic, log_f0 = released.infer(
        tokens,
        torch.tensor([tokens.shape[1]]),
        prompt_mel,
        torch.full((prompt_mel.shape[0],), prompt_mel.shape[-1]),
        noise_scale=settings["noise_scale"],
        noise_scale_w=settings["noise_scale_w"],
        length_scale=settings["length_scale"],
        denoise_ratio=settings["denoise_ratio"],
    )
    expected_semantic, expected_pitch = parity_cases[f"{case}.ttv.w2v"], parity_cases[f"{case}.ttv.pitch"]
    assert semantic.shape == expected_semantic.shape  # the duration ceil decides the length
    assert log_f0.shape == expected_pitch.shape
    assert (semantic - expected_semantic).abs().max() <= 1e-3
    assert (log_f0 - expected_pitch).abs().max() <= 1e-4


def test_state_dict_matches_the_official_manifest(released, manifest) -> None:
    exported = released.official_state_dict()
    entries = manifest("ttv")
    assert len(entries) == 835
    assert set(exported) == {entry["key"] for entry in entries}
    for entry in entries:
        assert list(exported[entry["key"]].shape) == entry["shape"], entry["key"]


def test_strict_loading_lists_bad_keys(tiny) -> None:
    state = tiny.official_state_dict()
    missing = {k: v for k, v in state.items() if k != "dp.flows.0.m"}
    with pytest.raises(CheckpointError, match=r"missing key\(s\): (dp|duration_predictor)\.flows\.0\.m"):
        TextToVec.from_official(missing, config=TINY)
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): emb\.weight"):
        TextToVec.from_official({**state, "emb.weight": torch.zeros(1, 8)}, config=TINY)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        TextToVec.from_official({**state, "pp.cond.bias": torch.zeros(3)}, config=TINY)


def test_official_round_trip(tiny, tmp_path) -> None:
    state = tiny.official_state_dict()
    assert "enc_p.emb.weight" in state and "w2v_decoder.enc.in_layers.0.weight_g" in state
    path = tmp_path / "ttv.pth"
    torch.save(state, path)
    reloaded = TextToVec.from_official(path, config=TINY)
    for key, value in reloaded.official_state_dict().items():
        assert torch.equal(value, state[key]), key


def _batch(n_vocab: int, lengths: list[int], prompt_lengths: list[int], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, n_vocab, (len(lengths), max(lengths)), generator=gen)
    for row, length in enumerate(lengths):
        tokens[row, length:] = 0
    prompt = torch.randn(len(prompt_lengths), TINY["mel_channels"], max(prompt_lengths), generator=gen)
    for row, length in enumerate(prompt_lengths):
        prompt[row, :, length:] = 0
    return tokens, torch.tensor(lengths), prompt, torch.tensor(prompt_lengths)


def test_tiny_shapes(tiny) -> None:
    tokens, token_lengths, prompt, prompt_lengths = _batch(TINY["n_vocab"], [9, 5], [30, 30, 22, 22])
    semantic, log_f0, lengths = tiny.infer_with_lengths(tokens, token_lengths, prompt, prompt_lengths)
    frames = int(lengths.max())
    assert semantic.shape == (2, TINY["semantic_channels"], frames)
    assert log_f0.shape == (2, 1, 4 * frames)
    assert lengths.dtype == torch.long and bool((lengths >= token_lengths).all())
    short = int(lengths.argmin())
    assert semantic[short, :, lengths[short] :].abs().max() == 0
    assert log_f0[short, :, 4 * lengths[short] :].abs().max() == 0
    assert torch.isfinite(log_f0).all() and semantic.abs().max() > 0


def test_batch_matches_single_items(tiny) -> None:
    tokens, token_lengths, prompt, prompt_lengths = _batch(TINY["n_vocab"], [11, 6], [30, 30, 19, 19])
    semantic, log_f0, lengths = tiny.infer_with_lengths(
        tokens, token_lengths, prompt, prompt_lengths, **DETERMINISTIC
    )
    assert lengths[0] != lengths[1]  # the rows really are padded
    for row in range(2):
        n, m = int(token_lengths[row]), int(prompt_lengths[2 * row])
        single_semantic, single_log_f0 = tiny.infer(
            tokens[row : row + 1, :n],
            token_lengths[row : row + 1],
            prompt[2 * row : 2 * row + 2, :, :m],
            prompt_lengths[2 * row : 2 * row + 2],
            **DETERMINISTIC,
        )
        frames = int(lengths[row])
        assert single_semantic.shape[-1] == frames
        torch.testing.assert_close(semantic[row : row + 1, :, :frames], single_semantic, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            log_f0[row : row + 1, :, : 4 * frames], single_log_f0, atol=1e-5, rtol=1e-5
        )


def test_prompt_rows_and_denoise_ratio(tiny) -> None:
    tokens, token_lengths, prompt, prompt_lengths = _batch(TINY["n_vocab"], [7], [25, 25])
    original, denoised = prompt[:1], prompt[1:]
    one_row = tiny.infer(tokens, token_lengths, original, prompt_lengths[:1], **DETERMINISTIC)
    duplicated = tiny.infer(tokens, token_lengths, original.repeat(2, 1, 1), prompt_lengths, **DETERMINISTIC)
    torch.testing.assert_close(one_row, duplicated)
    fully_denoised = tiny.infer(
        tokens, token_lengths, prompt, prompt_lengths, denoise_ratio=1.0, **DETERMINISTIC
    )
    denoised_only = tiny.infer(tokens, token_lengths, denoised, prompt_lengths[1:], **DETERMINISTIC)
    torch.testing.assert_close(fully_denoised, denoised_only)
    unmixed = tiny.infer(tokens, token_lengths, prompt, prompt_lengths, **DETERMINISTIC)
    torch.testing.assert_close(unmixed, one_row)
    assert fully_denoised[1].shape != unmixed[1].shape or not torch.allclose(fully_denoised[1], unmixed[1])


def test_rejects_mismatched_prompt_rows(tiny) -> None:
    tokens, token_lengths, prompt, prompt_lengths = _batch(TINY["n_vocab"], [7, 7], [25, 25, 25])
    with pytest.raises(ValueError, match="2 rows per prompt"):
        tiny.infer(tokens, token_lengths, prompt, prompt_lengths)
    with pytest.raises(ValueError, match="prompt_mel_lengths"):
        tiny.infer(tokens, token_lengths, prompt[:2], prompt_lengths)
