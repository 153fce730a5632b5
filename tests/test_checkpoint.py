import hashlib
import json
import pickle
import stat
from pathlib import Path

import pytest
import tiny_models
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from hierspeech2 import load_model
from hierspeech2.checkpoint import (
    NATIVE_CLASS_KEY,
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
        "prior_encoder.weight",
        "prior_encoder.bias",
        "generator.0.parametrizations.weight.original0",
        "generator.0.parametrizations.weight.original1",
        "generator.0.bias",
        "filter",
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
    legacy = (
        official["dec.0.weight_g"]
        * official["dec.0.weight_v"]
        / official["dec.0.weight_v"].norm(dim=(1, 2), keepdim=True)
    )
    expected = nn.functional.conv1d(x, legacy, official["dec.0.bias"])
    assert torch.allclose(model.generator(x), expected, atol=1e-6)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("enc_p.bias"), r"1 missing key\(s\): enc_p.bias"),
        (lambda s: s.update({"dec.9.weight": torch.zeros(1)}), r"1 unexpected key\(s\): dec.9.weight"),
        (
            lambda s: s.update({"enc_p.bias": torch.zeros(4)}),
            r"shape mismatch.*enc_p.bias \(checkpoint \(4,\), model \(3,\)\)",
        ),
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


# ------------------------------------------------------------------ native folders: modes, model card


def assert_modes_follow_umask(folder: Path, umask: int) -> None:
    """Every file 0666 & ~umask and every folder 0777 & ~umask, as `open` and `mkdir` would make them."""
    paths = [folder, *folder.rglob("*")]
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in paths}
    expected = {path.name: (0o777 if path.is_dir() else 0o666) & ~umask for path in paths}
    assert modes == expected
    assert {"config.json", "model.safetensors", "README.md"} <= modes.keys()


def test_save_pretrained_files_follow_the_umask(tmp_path, umask) -> None:
    tiny_models.speechsr().save_pretrained(tmp_path / "sr")
    assert_modes_follow_umask(tmp_path / "sr", umask)
    # a second save replaces the files (new staging, new safetensors file) with the same modes
    tiny_models.speechsr(seed=9).save_pretrained(tmp_path / "sr")
    assert_modes_follow_umask(tmp_path / "sr", umask)


def test_convert_files_follow_the_umask_and_the_card_names_the_official_file(tmp_path, umask) -> None:
    from hierspeech2.cli import main

    model = tiny_models.speechsr()
    official = tmp_path / "speechsr48k_G_tiny.pth"
    torch.save({"model": model.official_state_dict(), "iteration": 100}, official)
    config = json.dumps({"upsample_ratio": 3.0, **tiny_models.TINY_SPEECHSR})
    argv = [
        "convert",
        str(official),
        str(tmp_path / "out"),
        "--family",
        "speechsr",
        "--config",
        config,
        "--quiet",
    ]
    assert main(argv) == 0
    assert_modes_follow_umask(tmp_path / "out", umask)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "`speechsr48k_G_tiny.pth`" in card
    assert hashlib.sha256(official.read_bytes()).hexdigest() in card
    assert "hierspeech2 convert" in card
    loaded = load_model(tmp_path / "out")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def card_of(folder: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


@pytest.mark.parametrize(
    "build, family, cli",
    [
        (
            tiny_models.backbone,
            "HierSpeech2 backbone",
            "hierspeech2 vc source.wav voice.wav -o converted.wav --backbone ",
        ),
        (
            tiny_models.ttv,
            "TextToVec",
            'hierspeech2 tts "Hello there." --prompt voice.wav -o hello.wav --ttv ',
        ),
        (tiny_models.speechsr, "SpeechSR", "hierspeech2 sr speech_16k.wav -o speech_48k.wav --model "),
        (tiny_models.denoiser, "MP-SENet", "--denoiser "),
    ],
)
def test_model_card_describes_family_configuration_source_and_loading(tmp_path, build, family, cli) -> None:
    model = build()
    cls = type(model).__name__
    model.save_pretrained(tmp_path / "model")
    card = card_of(tmp_path / "model")
    assert card.data.license == "mit"
    assert card.data.library_name == "hierspeech2"
    assert {"hierspeech2", "speech"} <= set(card.data.tags)
    assert "More Information Needed" not in card.content
    text = card.text
    assert f"# {family}" in text
    parameters = sum(p.numel() for p in model.parameters())
    assert f"**Parameters:** {parameters:,}" in text
    assert "**Licence:** MIT" in text
    assert "Saved from Python with `save_pretrained`" in text
    location = str(tmp_path / "model")
    assert f'load_model("{location}")' in text
    assert f'{cls}.from_pretrained("{location}")' in text
    assert f"from hierspeech2.models import {cls}" in text
    assert cli + location in text
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    for key, value in config.items():
        if key != NATIVE_CLASS_KEY:
            assert f"| `{key}` | `{json.dumps(value)}` |" in text
    loaded = load_model(tmp_path / "model")
    assert type(loaded) is type(model)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_model_card_of_speechsr_names_its_rates_and_a_relative_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    tiny_models.speechsr(ratio=1.5).save_pretrained("speechsr-24k")  # also a registry name
    text = card_of(tmp_path / "speechsr-24k").text
    assert "16 kHz → 24 kHz" in text
    assert 'load_model("./speechsr-24k")' in text  # "./": a bare name would load the registry's model


def test_generated_card_is_refreshed_and_a_hand_written_one_kept(tmp_path) -> None:
    model = tiny_models.speechsr()
    model.save_pretrained(tmp_path, model_card_kwargs={"source": "Trained on a Tuesday."})
    assert "Trained on a Tuesday." in card_of(tmp_path).text
    model.save_pretrained(tmp_path)
    text = card_of(tmp_path).text
    assert "Trained on a Tuesday." not in text and "Saved from Python" in text
    (tmp_path / "README.md").write_text("my card\n")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my card\n"


def test_push_to_hub_card_loads_from_the_hub_uri(tmp_path, monkeypatch) -> None:
    from huggingface_hub import HfApi

    uploaded = {}

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        uploaded.update(repo_id=repo_id, card=(Path(folder_path) / "README.md").read_text())
        return "commit-url"

    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kwargs: type("Repo", (), {"repo_id": repo_id})
    )
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    assert tiny_models.speechsr().push_to_hub("someone/tiny-sr") == "commit-url"
    assert uploaded["repo_id"] == "someone/tiny-sr"
    assert 'load_model("hf://someone/tiny-sr")' in uploaded["card"]
    assert 'SpeechSR.from_pretrained("someone/tiny-sr")' in uploaded["card"]
