import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from hierspeech2.checkpoint import (
    OfficialCheckpointMixin,
    check_state_dict,
    load_official_file,
    native_to_official,
    official_to_native,
)
from hierspeech2.errors import CheckpointError


class Toy(OfficialCheckpointMixin, nn.Module):
    OFFICIAL_PREFIXES = (("enc_p.", "prior_encoder."), ("dec.", "generator."))

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.prior_encoder = nn.Conv1d(channels, channels, 1)
        self.generator = nn.Sequential(weight_norm(nn.Conv1d(channels, channels, 3)))
        self.register_buffer("filter", torch.arange(4.0))

    @classmethod
    def config_from_official(cls, state):
        return {"channels": state["enc_p.weight"].shape[0]}


def official_toy_state(channels: int = 3) -> dict:
    return {
        "enc_p.weight": torch.randn(channels, channels, 1),
        "enc_p.bias": torch.randn(channels),
        "dec.0.weight_g": torch.rand(channels, 1, 1) + 0.5,
        "dec.0.weight_v": torch.randn(channels, channels, 3),
        "dec.0.bias": torch.randn(channels),
        "filter": torch.arange(4.0),
    }


def test_key_mapping_round_trips_and_renames_weight_norm() -> None:
    official = official_toy_state()
    native = official_to_native(official, Toy.OFFICIAL_PREFIXES)
    assert set(native) == {
        "prior_encoder.weight", "prior_encoder.bias", "generator.0.parametrizations.weight.original0",
        "generator.0.parametrizations.weight.original1", "generator.0.bias", "filter",
    }
    back = native_to_official(native, Toy.OFFICIAL_PREFIXES)
    assert back.keys() == official.keys()
    assert all(back[k] is official[k] for k in official)


def test_from_official_loads_detects_config_and_round_trips(tmp_path) -> None:
    official = official_toy_state(channels=5)
    path = tmp_path / "toy.pth"
    torch.save({"model": official, "iteration": 3}, path)
    model = Toy.from_official(path)
    assert not model.training
    assert model.prior_encoder.weight.shape[0] == 5
    exported = model.official_state_dict()
    assert exported.keys() == official.keys()
    assert all(torch.equal(exported[k], official[k]) for k in official)
    x = torch.randn(1, 5, 7)
    legacy = official["dec.0.weight_g"] * official["dec.0.weight_v"] / official["dec.0.weight_v"].norm(dim=(1, 2), keepdim=True)
    expected = nn.functional.conv1d(x, legacy, official["dec.0.bias"])
    assert torch.allclose(model.generator(x), expected, atol=1e-6)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("enc_p.bias"), r"1 missing key\(s\): enc_p.bias"),
        (lambda s: s.update({"dec.9.weight": torch.zeros(1)}), r"1 unexpected key\(s\): dec.9.weight"),
        (lambda s: s.update({"enc_p.bias": torch.zeros(4)}), r"shape mismatch.*enc_p.bias \(checkpoint \(4,\), model \(3,\)\)"),
    ],
)
def test_strict_loading_lists_bad_keys(edit, message) -> None:
    state = official_toy_state()
    edit(state)
    with pytest.raises(CheckpointError, match=message):
        Toy.from_official(state, config={"channels": 3})


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_refuses_pickles_that_would_run_code(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _Exploit(str(marker))}, f)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_official_file(path)
    assert not marker.exists()


def test_unreadable_and_empty_checkpoints(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_official_file(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_official_file(tmp_path / "junk.pth")
    torch.save({}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no state dict"):
        load_official_file(tmp_path / "empty.pth")


def test_check_state_dict_accepts_exact_match() -> None:
    model = Toy()
    check_state_dict(model, model.state_dict())
