"""hierspeech2.construction.without_random_init and the checkpoint loads that use it."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from hierspeech2.checkpoint import check_state_dict
from hierspeech2.construction import RANDOM_INITIALISERS, without_random_init
from hierspeech2.errors import CheckpointError
from hierspeech2.models import SpeechSR


def _seeded_linear(seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(64, 32)


def test_modules_built_inside_draw_no_random_numbers_and_init_is_restored_after() -> None:
    originals = {name: getattr(nn.init, name) for name in RANDOM_INITIALISERS}
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    with without_random_init():
        nn.Linear(300, 200)
        nn.Conv1d(16, 16, 5)
        nn.Embedding(10, 4)
        assert torch.equal(torch.rand(3), expected_next)  # the builds consumed nothing
        with without_random_init():  # nested
            nn.Linear(3, 3)
        assert nn.init.uniform_ is not originals["uniform_"]
    assert {name: getattr(nn.init, name) for name in RANDOM_INITIALISERS} == originals
    torch.manual_seed(0)
    nn.Linear(300, 200)
    assert not torch.equal(torch.rand(3), expected_next)  # outside, the draws happen again


def test_other_threads_still_draw_their_initial_weights() -> None:
    reference = _seeded_linear(1)
    built: list[nn.Linear] = []
    with without_random_init():
        thread = threading.Thread(target=lambda: built.append(_seeded_linear(1)))
        thread.start()
        thread.join()
    assert torch.equal(built[0].weight, reference.weight)
    assert torch.equal(built[0].bias, reference.bias)


def test_from_official_draws_nothing_and_gives_the_checkpoint_weights() -> None:
    source = SpeechSR(upsample_ratio=3)
    state = source.official_state_dict()
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    loaded = SpeechSR.from_official(state, config={"upsample_ratio": 3})
    assert torch.equal(torch.rand(3), expected_next)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())
    wav = torch.randn(1, 1, 1600)
    with torch.inference_mode():
        assert torch.equal(loaded(wav), source.eval()(wav))


def test_native_load_draws_nothing(tmp_path) -> None:
    source = SpeechSR(upsample_ratio=3)
    source.save_pretrained(tmp_path / "sr")
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    loaded = SpeechSR.from_pretrained(tmp_path / "sr")
    assert torch.equal(torch.rand(3), expected_next)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(bad: float) -> None:
    model = nn.Linear(4, 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["weight"][1, 2] = bad
    with pytest.raises(CheckpointError, match=r"1 unusable tensor\(s\): weight \(contains NaN/Inf\)"):
        check_state_dict(model, state)


def test_huge_finite_weights_whose_sum_overflows_are_accepted() -> None:
    model = nn.Linear(4, 3).double()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["weight"].fill_(1e308)  # the float64 sum overflows to Inf; every element is finite
    check_state_dict(model, state)
