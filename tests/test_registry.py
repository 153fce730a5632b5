"""Registry and Hub: checkpoints.yaml, load_model through a loopback Hub, the native format, the CLI.

Every download goes through ``huggingface_hub`` itself against ``tests/hub_server.py`` on
127.0.0.1 (fixture ``loopback_hub``), with a fresh ``HF_HOME`` per test; nothing touches the internet.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import constants

from hierspeech2 import cli
from hierspeech2.checkpoint import NATIVE_CLASS_KEY, load_official_file
from hierspeech2.errors import CheckpointError, HierSpeechError
from hierspeech2.models import SpeechSR
from hierspeech2.registry import (
    FORMATS,
    MODEL_FAMILIES,
    PIPELINES,
    REPO_TYPES,
    ChecksumError,
    DownloadError,
    Registry,
    RegistryError,
    RegistryFile,
    default_registry,
    download,
    ensure_available,
    is_cached,
    list_models,
    load_model,
    missing_from_cache,
    official_family,
    sha256_of,
)

ROOT = Path(__file__).resolve().parents[1]
SPACE = "HierSpeech/HierSpeech_TTS"
SR48_FILE = "speechsr48k/G_100000.pth"
SR48_SHA = "62c70874ac4efeb4dc9c8aa9dc0a611a951e1c36292abeb4c406d7fb91e0eefc"
SPACE_CACHE = "spaces--HierSpeech--HierSpeech_TTS"
PARITY_ATOL = 1e-5
PARITY_INPUT = 2000  # input samples of the parity prefix: the generator is local, so a prefix suffices
PARITY_MARGIN = 1000  # output samples next to the cut that see it (measured < 70)
TINY_SPEECHSR = {"channels": 4, "resblock_kernel_sizes": (3,), "resblock_dilations": ((1, 3),)}
EXPECTED_NAMES = {
    "hierspeech2-v1.1", "hierspeech2-v1", "hierspeech2-v2", "ttv-lt960", "speechsr-24k", "speechsr-48k",
    "mms-300m", "denoiser", "hierspeech2-tts", "hierspeech2-vc",
}  # fmt: skip


@pytest.fixture(scope="module")
def sr48_path(shared_dir) -> Path:
    return shared_dir / "checkpoints" / "official" / "speechsr48k_G_100000.pth"


@pytest.fixture
def space(loopback_hub, sr48_path):
    """The loopback Hub hosting the real SpeechSR-48k checkpoint where the Space has it."""
    loopback_hub.add_file(SPACE, SR48_FILE, sr48_path, repo_type="space")
    return loopback_hub


@pytest.fixture
def no_sleep(monkeypatch):
    """huggingface_hub waits up to ~25 s between retries; these tests need the outcome, not the wait."""
    monkeypatch.setattr(time, "sleep", lambda seconds: None)


def cache_files(pattern: str = "*") -> list[Path]:
    return [p for p in Path(constants.HF_HUB_CACHE).rglob(pattern) if p.is_file() or p.is_symlink()]


def parity_error(model: SpeechSR, parity_cases: dict) -> float:
    wav = parity_cases["a.speechsr.audio"][..., :PARITY_INPUT]
    with torch.inference_mode():
        out = model(wav, sample_rate=16000)
    kept = out.shape[-1] - PARITY_MARGIN
    return (out[..., :kept] - parity_cases["a.speechsr48k.out"][..., :kept]).abs().max().item()


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- the registry file


def test_packaged_registry_lists_every_release_with_the_reference_hashes(shared_dir):
    registry = default_registry()
    assert set(registry.names()) == EXPECTED_NAMES
    assert list_models() == registry.names()
    assert list_models(family="speechsr") == ["speechsr-24k", "speechsr-48k"]
    # the table of Space paths, sizes and hashes in ../shared/README.md is the reference
    readme = (shared_dir / "README.md").read_text()
    table = {
        m[0]: (int(m[1]), m[2]) for m in re.findall(r"\| `([^`]+)` \| (\d+) \| `([0-9a-f]{64})` \|", readme)
    }
    assert len(table) == 5
    by_file = {e.source.filename: e for e in registry if e.source is not None}
    for filename, (size, sha256) in table.items():
        entry = by_file[filename]
        assert (entry.size, entry.sha256, entry.source.repo_id, entry.source.repo_type) == (
            size,
            sha256,
            SPACE,
            "space",
        )
    for variant in ("24k", "48k"):
        (official,) = (shared_dir / "checkpoints" / "official").glob(f"speechsr{variant}_*.pth")
        entry = registry[f"speechsr-{variant}"]
        assert (entry.sha256, entry.size) == (sha256_of(official), official.stat().st_size)
    mms = registry["mms-300m"]
    assert (mms.format, mms.source.repo_id, dict(mms.config)) == (
        "transformers",
        "facebook/mms-300m",
        {"layer": 7},
    )
    assert dict(registry["hierspeech2-tts"].components) == {
        "ttv": "ttv-lt960", "backbone": "hierspeech2-v1.1", "speechsr": "speechsr-48k",
        "denoiser": "denoiser"}  # fmt: skip
    assert dict(registry["hierspeech2-vc"].components) == {
        "backbone": "hierspeech2-v2", "semantic_encoder": "mms-300m", "speechsr": "speechsr-48k",
        "denoiser": "denoiser"}  # fmt: skip


def test_registry_configs_are_the_released_hyper_parameters(sr48_path):
    registry = default_registry()
    for variant in ("24k", "48k"):
        assert (
            SpeechSR(**registry[f"speechsr-{variant}"].config).config
            == SpeechSR.from_official(
                sr48_path.with_name(f"speechsr{variant}_G_{'340000' if variant == '24k' else '100000'}.pth")
            ).config
        )
    import inspect

    from hierspeech2 import models

    for entry in registry:
        cls = getattr(models, {"backbone": "HierSpeech2", "ttv": "TextToVec"}.get(entry.family, ""), None)
        if cls is not None:
            assert set(entry.config) <= set(inspect.signature(cls.__init__).parameters), entry.name


def test_top_level_registry_is_the_packaged_file():
    top, packaged = ROOT / "checkpoints.yaml", ROOT / "src" / "hierspeech2" / "checkpoints.yaml"
    assert top.read_bytes() == packaged.read_bytes()
    assert Registry.from_file(top).names() == default_registry().names()


def valid_registry() -> dict:
    return {
        "schema_version": 1,
        "models": {
            "sr": {
                "family": "speechsr", "description": "d", "license": "MIT", "format": "official",
                "source": {"repo_id": "a/b", "repo_type": "model", "revision": "main", "filename": "x.pth"},
                "sha256": "0" * 64, "size": 3, "config": {"upsample_ratio": 3.0},
            },
            "bb": {
                "family": "backbone", "description": "d", "license": "MIT", "format": "official",
                "source": {"repo_id": "a/b", "filename": "bb.pth"}, "sha256": "1" * 64, "size": 9,
            },
            "enc": {
                "family": "mms", "description": "d", "license": "MIT", "format": "transformers",
                "source": {"repo_id": "a/mms"},
            },
            "pipe": {"family": "vc", "description": "d", "license": "MIT",
                     "components": {"backbone": "bb", "semantic_encoder": "enc", "speechsr": "sr"}},
        },
    }  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "entry", "field"),
    [
        (lambda m: m["sr"].update(sha256="abc"), "sr", "sha256"),
        (lambda m: m["sr"].pop("size"), "sr", "size"),
        (lambda m: m["sr"].update(shasum="0" * 64), "sr", "shasum"),
        (lambda m: m["sr"].update(format="pickle"), "sr", "format"),
        (lambda m: m["sr"].update(family="vocoder"), "sr", "family"),
        (lambda m: m["sr"]["source"].pop("filename"), "sr", "source.filename"),
        (lambda m: m["sr"]["source"].update(repo_type="github"), "sr", "source.repo_type"),
        (lambda m: m["sr"].update(description=""), "sr", "description"),
        (lambda m: m["enc"]["source"].update(filename="w.bin"), "enc", "source.filename"),
        (lambda m: m["pipe"]["components"].pop("speechsr"), "pipe", "components"),
        (lambda m: m["pipe"]["components"].update(speechsr="missing"), "pipe", "components.speechsr"),
        (lambda m: m["pipe"]["components"].update(speechsr=3), "pipe", "components.speechsr"),
        (lambda m: m["sr"].update(size=True), "sr", "size"),
        (lambda m: m["sr"].update(config=[1]), "sr", "config"),
        (lambda m: m["sr"]["source"].update(branch="dev"), "sr", "source.branch"),
        (lambda m: m["sr"]["source"].update(repo_id="a b"), "sr", "source.repo_id"),
        (lambda m: m["bb"].update(format="native"), "bb", "source.filename"),
    ],
)
def test_malformed_entry_is_an_error_naming_entry_and_field(edit, entry, field):
    data = valid_registry()
    Registry.from_dict(data)  # the unedited registry is valid
    edit(data["models"])
    with pytest.raises(RegistryError, match=rf"entry '{entry}', field '{re.escape(field)}'"):
        Registry.from_dict(data)


def test_component_of_the_wrong_family_is_rejected():
    data = valid_registry()
    data["models"]["pipe"]["components"]["backbone"] = "sr"
    with pytest.raises(
        RegistryError,
        match=r"'pipe', field 'components.backbone': 'sr' is a speechsr entry, expected a backbone",
    ):
        Registry.from_dict(data)


def test_entries_that_are_not_mappings_or_badly_named_are_errors():
    data = valid_registry()
    data["models"]["sr"] = 3
    with pytest.raises(RegistryError, match="entry 'sr' must be a mapping, got int"):
        Registry.from_dict(data)
    data = valid_registry()
    data["models"]["bad name"] = data["models"].pop("sr")
    with pytest.raises(RegistryError, match="entry name 'bad name' must be letters, digits"):
        Registry.from_dict(data)
    with pytest.raises(RegistryError, match="schema_version 2 is not supported"):
        Registry.from_dict({**valid_registry(), "schema_version": 2})


def test_the_registry_json_schema_names_every_family_and_format():
    text = json.dumps(RegistryFile.model_json_schema())
    for word in (*MODEL_FAMILIES, *PIPELINES, *FORMATS, *REPO_TYPES):
        assert f'"{word}"' in text


def test_registry_file_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed")
    with pytest.raises(RegistryError, match="broken.yaml is not valid YAML"):
        Registry.from_file(broken)
    with pytest.raises(RegistryError, match="cannot read the checkpoint registry"):
        Registry.from_file(tmp_path / "absent.yaml")


def test_unknown_name_lists_close_matches():
    with pytest.raises(
        RegistryError, match=r"unknown model 'speechsr48k': did you mean speechsr-48k, speechsr-24k"
    ):
        load_model("speechsr48k")
    with pytest.raises(RegistryError, match=r"unknown model 'zzz': Known models: hierspeech2-v1.1"):
        load_model("zzz")


def test_import_stays_light_and_exports_the_api():
    code = (
        "import sys, hierspeech2\n"
        "assert 'torch' not in sys.modules, 'import hierspeech2 imported torch'\n"
        "from hierspeech2 import list_models, load_model\n"
        "print(len(list_models()))\n"
        "assert 'torch' not in sys.modules, 'list_models imported torch'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(EXPECTED_NAMES))


# ------------------------------------------------------------------------- downloads through the Hub


def test_download_by_name_reproduces_the_parity_case_then_works_offline(space, parity_cases, monkeypatch):
    model = load_model("speechsr-48k")
    assert isinstance(model, SpeechSR) and not model.training and model.output_rate == 48000
    assert parity_error(model, parity_cases) <= PARITY_ATOL
    assert space.count("GET", f"/spaces/{SPACE}/resolve/main/{SR48_FILE}") == 1
    (cached,) = cache_files("G_100000.pth")
    assert sha256_of(cached) == SR48_SHA and is_cached("speechsr-48k")

    served = len(space.requests)
    load_model("speechsr-48k")  # cached and pinned by its sha256: nothing to ask the Hub
    assert len(space.requests) == served

    space.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = load_model("speechsr-48k")
    assert_same_weights(offline, model)
    assert len(space.requests) == served


def test_local_files_only_needs_no_server(space, sr48_path):
    with pytest.raises(
        DownloadError,
        match=r"speechsr-48k \(1\.7 MB\) is not in the Hugging Face cache \(.*\) and local_files_only=True",
    ):
        load_model("speechsr-48k", local_files_only=True)
    assert not space.requests
    download("speechsr-48k")
    space.stop()
    assert_same_weights(load_model("speechsr-48k", local_files_only=True), SpeechSR.from_official(sr48_path))


def test_corrupted_file_is_reported_and_removed_from_the_cache(space, sr48_path):
    good = sr48_path.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    space.add_file(SPACE, SR48_FILE, bytes(bad), repo_type="space")
    actual = hashlib.sha256(bad).hexdigest()
    with pytest.raises(ChecksumError) as error:
        load_model("speechsr-48k")
    message = str(error.value)
    assert SR48_FILE in message and f"expected sha256 {SR48_SHA}" in message and f"got {actual}" in message
    assert "removed from the cache" in message
    assert cache_files("G_100000.pth") == [] and cache_files(actual) == []

    space.add_file(SPACE, SR48_FILE, good, repo_type="space")
    assert_same_weights(load_model("speechsr-48k"), SpeechSR.from_official(sr48_path))


def test_server_dying_mid_download_is_a_clean_error_and_a_retry_succeeds(space, sr48_path, no_sleep):
    space.cut_after(SPACE, SR48_FILE, 100_000, repo_type="space")
    with pytest.raises(DownloadError, match=r"was interrupted .*run the same command again to retry"):
        load_model("speechsr-48k")
    assert not space.running
    assert cache_files("G_100000.pth") == [] and cache_files("*.incomplete") == []
    assert list((Path(constants.HF_HUB_CACHE) / SPACE_CACHE / "blobs").iterdir()) == []

    space.start()  # the Hub is back, on the same address
    assert_same_weights(load_model("speechsr-48k"), SpeechSR.from_official(sr48_path))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_no_network_is_an_actionable_error(loopback_hub, monkeypatch, no_sleep):
    unreachable = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(constants, "ENDPOINT", unreachable)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", unreachable + "/{repo_id}/resolve/{revision}/{filename}"
    )
    with pytest.raises(DownloadError) as error:
        load_model("speechsr-48k")
    message = str(error.value)
    for advice in (
        unreachable,
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE=1",
        "hierspeech2 download speechsr-48k",
        "HF_HOME",
    ):
        assert advice in message

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        DownloadError, match=r"HF_HUB_OFFLINE=1 forbids downloading it: run .* or unset HF_HUB_OFFLINE"
    ):
        load_model("speechsr-48k")


def close_the_hub(monkeypatch) -> str:
    """Point huggingface_hub at a closed port on 127.0.0.1: every connection is refused at once."""
    unreachable = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(constants, "ENDPOINT", unreachable)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", unreachable + "/{repo_id}/resolve/{revision}/{filename}"
    )
    return unreachable


@pytest.mark.parametrize("how", ["unreachable", "offline"])
def test_missing_pipeline_fails_in_seconds_naming_every_part_and_the_pipeline(how, loopback_hub, monkeypatch):
    # no `no_sleep`: huggingface_hub's own retries would wait ~25 s; the probe must not retry at all
    if how == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    else:
        close_the_hub(monkeypatch)
    for call in (lambda: load_model("hierspeech2-tts"), lambda: download("hierspeech2-tts")):
        start = time.perf_counter()
        with pytest.raises(DownloadError) as error:
            call()
        assert time.perf_counter() - start < 3.0
        message = str(error.value)
        assert "\n" not in message
        assert "ttv-lt960, hierspeech2-v1.1, speechsr-48k and denoiser (834 MB)" in message
        assert "`hierspeech2 download hierspeech2-tts`" in message
        assert ("HF_HUB_OFFLINE=1 forbids downloading them" in message) == (how == "offline")
        assert ("ConnectError" in message and constants.ENDPOINT in message) == (how == "unreachable")
    assert not loopback_hub.requests
    assert not Path(constants.HF_HUB_CACHE).exists()  # nothing left behind, not even a folder


def test_only_the_missing_parts_are_named(tiny_registry, monkeypatch):
    monkeypatch.setenv("HIERSPEECH2_REGISTRY", tiny_registry.origin)
    download("ttv-lt960")
    download("denoiser")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError) as error:
        load_model("hierspeech2-tts")
    message = str(error.value)
    assert "hierspeech2-v1.1 and speechsr-48k (" in message and "ttv-lt960" not in message
    assert "are not in the Hugging Face cache" in message
    assert "`hierspeech2 download hierspeech2-tts`" in message
    assert missing_from_cache(["hierspeech2-tts"]) == ["hierspeech2-v1.1", "speechsr-48k"]
    assert missing_from_cache(["ttv-lt960", "denoiser"]) == []
    assert load_model("ttv-lt960") is not None  # cached parts load offline

    # parts outside any pipeline asked for are named themselves
    with pytest.raises(DownloadError, match="`hierspeech2 download hierspeech2-tts hierspeech2-v2`"):
        ensure_available(["ttv-lt960", "hierspeech2-v1.1", "hierspeech2-v2"], pipeline="hierspeech2-tts")
    with pytest.raises(DownloadError, match="`hierspeech2 download speechsr-24k`"):
        ensure_available(["speechsr-24k", "denoiser"])
    ensure_available(["ttv-lt960", "denoiser"], pipeline="hierspeech2-tts")  # all cached: no error


def test_reachable_hub_with_a_missing_file_still_reports_the_file(space, tmp_path, monkeypatch):
    registry = tmp_path / "registry.yaml"
    data = yaml.safe_load((ROOT / "checkpoints.yaml").read_text())
    data["models"] = {"sr": data["models"]["speechsr-48k"]}
    data["models"]["sr"]["source"]["filename"] = "speechsr48k/G_999.pth"
    registry.write_text(yaml.safe_dump(data))
    with pytest.raises(DownloadError, match="no such file in the repository"):
        load_model("sr", registry=registry)
    assert space.count("HEAD", "speechsr48k/G_999.pth") >= 1  # the probe asked, and the Hub answered


def test_hf_uri_without_network_fails_in_seconds(loopback_hub, monkeypatch):
    close_the_hub(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(DownloadError) as error:
        load_model("hf://someone/tiny-speechsr")
    assert time.perf_counter() - start < 3.0
    assert "`hf download someone/tiny-speechsr config.json model.safetensors`" in str(error.value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE=1 forbids downloading it: run `hf download"):
        load_model("hf://someone/tiny-speechsr/sub/weights.pth")


def test_missing_repo_file_and_revision_are_named(space, tmp_path):
    registry = tmp_path / "registry.yaml"
    data = yaml.safe_load((ROOT / "checkpoints.yaml").read_text())
    data["models"] = {"sr": data["models"]["speechsr-48k"]}
    data["models"]["sr"]["source"]["filename"] = "speechsr48k/G_999.pth"
    registry.write_text(yaml.safe_dump(data))
    with pytest.raises(
        DownloadError, match=r"spaces/HierSpeech/HierSpeech_TTS@main:speechsr48k/G_999.pth: no such file"
    ):
        load_model("sr", registry=registry)
    with pytest.raises(DownloadError, match=r"revision 'v9' not found"):
        load_model("speechsr-48k", revision="v9")
    with pytest.raises(DownloadError, match=r"repository not found"):
        load_model("hf://nobody/nothing")


def test_revision_reaches_the_hub_and_skips_the_pinned_hash(space, caplog):
    commit = space.repos[("space", SPACE)].commit
    with caplog.at_level(logging.WARNING, logger="hierspeech2.registry"):
        model = load_model("speechsr-48k", revision=commit)
    assert model.output_rate == 48000
    assert space.count("GET", f"/resolve/{commit}/{SR48_FILE}") == 1
    assert "not verified" in caplog.text


def malicious_pickle(path: Path, marker: Path) -> Path:
    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model": {"dec.conv_pre.bias": torch.zeros(1)}, "payload": Exploit()}, path)
    return path


def test_pickle_that_would_run_code_is_refused(space, tmp_path):
    marker = tmp_path / "pwned"
    local = malicious_pickle(tmp_path / "evil.pth", marker)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pth.*would run arbitrary code"):
        load_model(local)
    # a registry entry with the right hash still goes through the weights-only loader
    space.add_file("someone/evil", "G.pth", local)
    data = valid_registry()["models"]["sr"]
    data["source"] = {
        "repo_id": "someone/evil",
        "repo_type": "model",
        "revision": "main",
        "filename": "G.pth",
    }
    data.update(sha256=sha256_of(local), size=local.stat().st_size)
    registry = Registry.from_dict({"models": {"evil": data}})
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_model("evil", registry=registry)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_model("hf://someone/evil/G.pth")
    assert not marker.exists()


# ---------------------------------------------------------------------------------- native format


def test_official_native_official_round_trip_is_bit_identical_full_size(sr48_path, tmp_path):
    official = load_official_file(sr48_path)
    SpeechSR.from_official(sr48_path).save_pretrained(tmp_path / "native")
    assert sorted(p.name for p in (tmp_path / "native").iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((tmp_path / "native" / "config.json").read_text())
    assert config[NATIVE_CLASS_KEY] == "SpeechSR" and config["upsample_ratio"] == 3.0
    assert config["resblock_dilations"] == [[1, 3, 5]] * 3
    native = load_model(tmp_path / "native")
    assert isinstance(native, SpeechSR) and native.config["resblock_dilations"] == ((1, 3, 5),) * 3
    exported = native.official_state_dict()
    assert exported.keys() == official.keys()
    assert all(torch.equal(exported[k], official[k]) for k in official)
    assert_same_weights(SpeechSR.from_pretrained(tmp_path / "native"), native)


def test_native_checkpoints_load_from_the_hub(space, tmp_path):
    torch.manual_seed(0)
    tiny = SpeechSR(upsample_ratio=1.5, **TINY_SPEECHSR)
    tiny.save_pretrained(tmp_path / "tiny")
    space.add_folder("someone/tiny-sr", tmp_path / "tiny")
    space.add_folder("someone/zoo", tmp_path / "tiny", prefix="sr/24k/")
    for loaded in (
        SpeechSR.from_pretrained("someone/tiny-sr"),
        load_model("hf://someone/tiny-sr"),
        load_model("hf://someone/zoo/sr/24k"),
        load_model("hf://someone/zoo/sr/24k/model.safetensors"),
    ):
        assert loaded.config == tiny.config and not loaded.training
        assert_same_weights(loaded, tiny)
    # a registry entry in the native format is hash-checked like an official one
    weights = tmp_path / "tiny" / "model.safetensors"
    entry = valid_registry()["models"]["sr"] | {
        "format": "native",
        "sha256": sha256_of(weights),
        "size": weights.stat().st_size,
    }
    entry["source"] = {"repo_id": "someone/zoo", "revision": "main", "filename": "sr/24k/model.safetensors"}
    assert_same_weights(
        load_model("zoo-sr", registry=Registry.from_dict({"models": {"zoo-sr": entry}})), tiny
    )


def test_native_loading_is_strict_and_reads_no_pickle(space, tmp_path):
    torch.manual_seed(0)
    SpeechSR(upsample_ratio=1.5, **TINY_SPEECHSR).save_pretrained(tmp_path / "tiny")
    config_path = tmp_path / "tiny" / "config.json"
    config = json.loads(config_path.read_text())

    config_path.write_text(json.dumps(config | {"channels": 8}))
    with pytest.raises(
        CheckpointError, match=r"does not fit SpeechSR: \d+ shape mismatch.*checkpoint \(4,\), model \(8,\)"
    ):
        load_model(tmp_path / "tiny")
    config_path.write_text(json.dumps(config | {NATIVE_CLASS_KEY: "TextToVec"}))
    with pytest.raises(CheckpointError, match="holds a TextToVec, not a SpeechSR"):
        SpeechSR.from_pretrained(tmp_path / "tiny")
    config_path.write_text(json.dumps(config | {NATIVE_CLASS_KEY: "Vocoder"}))
    with pytest.raises(CheckpointError, match="holds a 'Vocoder', which hierspeech2 does not know"):
        load_model(tmp_path / "tiny")
    config_path.unlink()
    with pytest.raises(
        CheckpointError, match="has no config.json, so it is not a hierspeech2 native checkpoint"
    ):
        SpeechSR.from_pretrained(tmp_path / "tiny")

    space.add_file("someone/pickled", "config.json", json.dumps(config).encode())
    space.add_file("someone/pickled", "pytorch_model.bin", b"not read")
    with pytest.raises(
        CheckpointError, match="no model.safetensors; hierspeech2 reads native weights only as safetensors"
    ):
        SpeechSR.from_pretrained("someone/pickled")


def test_official_file_in_any_hub_repo(space, sr48_path):
    space.add_file("someone/mirror", "weights/G_100000.pth", sr48_path)
    assert_same_weights(
        load_model("hf://someone/mirror/weights/G_100000.pth"), SpeechSR.from_official(sr48_path)
    )
    with pytest.raises(ValueError, match="expected hf://owner/repo"):
        load_model("hf://someone")


def test_local_official_files_are_recognised_by_their_keys(sr48_path, tmp_path):
    assert_same_weights(load_model(sr48_path), SpeechSR.from_official(sr48_path))
    packaged = (
        ROOT / "src" / "hierspeech2" / "weights" / "speechsr48k.safetensors"
    )  # SpeechSR's single-file format
    assert_same_weights(load_model(packaged), SpeechSR.from_official(sr48_path))
    assert load_model(str(sr48_path), dtype=torch.float64).generator.conv_post.weight.dtype == torch.float64
    assert official_family({"enc_p_l.proj.weight": 0, "dec.x": 0}) == "backbone"
    assert official_family({"w2v_decoder.proj.weight": 0, "dec.x": 0}) == "ttv"
    torch.save({"model": {"generator.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(
        CheckpointError, match=r"cannot tell which model .*other.pth is: its top-level keys \(generator\)"
    ):
        load_model(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="checkpoint not found: .*absent.pth"):
        load_model(tmp_path / "absent.pth")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="folder without config.json"):
        load_model(tmp_path / "empty")


# --------------------------------------------------------------------------------- semantic encoder


def tiny_wav2vec2(folder: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=8, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )  # fmt: skip
    Wav2Vec2Model(config).save_pretrained(folder)
    return folder


def test_mms_entry_loads_only_the_layers_used(loopback_hub, tmp_path):
    from hierspeech2.ssl import SemanticEncoder

    loopback_hub.add_folder("facebook/mms-300m", tiny_wav2vec2(tmp_path / "mms"))
    encoder = load_model("mms-300m")
    assert (
        isinstance(encoder, SemanticEncoder) and encoder.layer == 7 and len(encoder.model.encoder.layers) == 7
    )
    assert loopback_hub.count("GET", "/facebook/mms-300m/resolve/main/model.safetensors") == 1
    wav = torch.randn(1, 3200, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(encoder(wav), SemanticEncoder.from_pretrained(tmp_path / "mms", layer=7)(wav))
    assert is_cached("mms-300m")


# --------------------------------------------------------------------------------------------- CLI


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_models_download_and_convert(space, capsys, tmp_path, sr48_path):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:4] for line in out.splitlines()[1:]}
    assert set(rows) == EXPECTED_NAMES
    assert out.splitlines()[0].split()[:4] == ["NAME", "FAMILY", "SIZE", "CACHED"]
    assert re.search(r"^speechsr-48k\s+speechsr\s+1\.7 MB\s+no\s", out, re.MULTILINE)

    code, _, err = run_cli(capsys, "download", "speechsr-48k")
    assert code == 0, err
    _, out, _ = run_cli(capsys, "models", "--family", "speechsr")
    assert re.search(r"^speechsr-48k\s+speechsr\s+1\.7 MB\s+yes\s", out, re.MULTILINE)
    assert re.search(r"^speechsr-24k\s+.*\s+no\s", out, re.MULTILINE)

    code, _, err = run_cli(capsys, "download", "speechsr-48k", "speechsr-4k")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(
        "hierspeech2 download: error: unknown model 'speechsr-4k': did you mean speechsr-48k"
    )

    code, _, err = run_cli(capsys, "convert", str(sr48_path), str(tmp_path / "converted"), "--quiet")
    assert code == 0, err
    assert_same_weights(load_model(tmp_path / "converted"), SpeechSR.from_official(sr48_path))
    code, _, err = run_cli(capsys, "convert", "speechsr-48k", str(tmp_path / "from-name"), "--quiet")
    assert code == 0, err
    assert_same_weights(load_model(tmp_path / "from-name"), SpeechSR.from_official(sr48_path))
    code, _, err = run_cli(capsys, "convert", str(tmp_path / "nothing.pth"), str(tmp_path / "x"))
    assert code == 1 and err.count("\n") == 1 and "checkpoint file not found" in err


def test_cli_sr_with_a_registry_model(space, capsys, tmp_path):
    from hierspeech2.audio import load_audio, save_audio

    save_audio(tmp_path / "in.wav", torch.randn(1600) * 0.1, 16000)
    code, _, err = run_cli(capsys, "sr", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav"),
                           "--model", "speechsr-48k", "--quiet")  # fmt: skip
    assert code == 0, err
    assert load_audio(tmp_path / "out.wav", 48000).numel() == 4800
    code, _, err = run_cli(capsys, "sr", str(tmp_path / "in.wav"), "-o", str(tmp_path / "x.wav"),
                           "--model", "speechsr-48k", "--rate", "24000")  # fmt: skip
    assert code == 1 and "outputs 48000 Hz, but --rate 24000 was asked" in err


def test_errors_are_hierspeech_errors():
    assert issubclass(DownloadError, HierSpeechError) and issubclass(DownloadError, OSError)
    assert issubclass(ChecksumError, CheckpointError) and issubclass(RegistryError, ValueError)


# --------------------------------------------------------- every family, every name: tiny stand-ins

# Tiny but pipeline-compatible: 80 mel bins, hop 320, semantic width = the tiny MMS's hidden size.
TINY_BACKBONE = {
    "spec_channels": 9, "semantic_channels": 16, "inter_channels": 8, "hidden_channels": 8,
    "filter_channels": 16, "resblock_kernel_sizes": (3,), "resblock_dilation_sizes": ((1, 3),),
    "upsample_rates": (4, 5, 4, 2, 2), "upsample_initial_channel": 32,
    "upsample_kernel_sizes": (8, 11, 8, 4, 4), "gin_channels": 8,
    "prosody_size": 4, "mel_channels": 80, "style_hidden_channels": 8,
    "posterior_layers": 2, "prior_layers": 1, "flow_layers": 1, "n_flows": 2,
    "audio_encoder_channels": (4, 4, 6, 8, 8), "audio_downsample_rates": (8, 5, 4, 2),
    "audio_downsample_kernel_sizes": (17, 10, 8, 4),
}  # fmt: skip
TINY_TTV = {
    "n_vocab": 178, "mel_channels": 80, "semantic_channels": 16, "inter_channels": 16, "hidden_channels": 16,
    "style_channels": 8, "style_hidden_channels": 16, "text_filter_channels": 32, "text_heads": 2,
    "text_layers": 1, "text_kernel_size": 3, "posterior_layers": 2, "flow_layers": 1, "flow_count": 2,
    "flow_heads": 2,
    "decoder_hidden_channels": 16, "decoder_layers": 2, "duration_filter_channels": 16, "duration_flows": 2,
    "pitch_channels": 16, "pitch_resblock_kernel_sizes": (3,), "pitch_resblock_dilations": ((1, 3),),
}  # fmt: skip
TINY_DENOISER = {"dense_channel": 8, "num_tsconformers": 1, "n_fft": 64, "hop_length": 16, "win_length": 64}
TINY = {
    "backbone": TINY_BACKBONE, "ttv": TINY_TTV, "speechsr": {"upsample_ratio": 3.0, **TINY_SPEECHSR},
    "denoiser": TINY_DENOISER,
}  # fmt: skip
MANIFESTS = {"backbone": ("hierspeech2-v1.1", "backbone"), "ttv": ("ttv-lt960", "ttv")}


def model_class(family: str) -> type:
    from hierspeech2 import models

    classes = {"backbone": "HierSpeech2", "ttv": "TextToVec", "speechsr": "SpeechSR", "denoiser": "MPSENet"}
    return getattr(models, classes[family])


def random_model(family: str, seed: int = 0) -> torch.nn.Module:
    """A tiny model whose every parameter is random (the default init leaves flows as identities)."""
    torch.manual_seed(seed)
    model = model_class(family)(**TINY[family])
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn_like(parameter)
            parameter.copy_(0.5 + 0.1 * noise.abs() if name.endswith("original0") else 0.2 * noise)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory) -> dict[str, Path]:
    """family → a tiny stand-in file (official .pth) or folder (MMS) for the released checkpoints."""
    folder = tmp_path_factory.mktemp("tiny-release")
    files = {}
    for family in TINY:
        files[family] = folder / f"{family}.pth"
        torch.save({"model": random_model(family).official_state_dict(), "iteration": 1}, files[family])
    files["mms"] = tiny_wav2vec2(folder / "mms")
    files["denoiser"] = folder / "g_best"  # the released layout: {"generator": state_dict}
    torch.save({"generator": random_model("denoiser").official_state_dict()}, files["denoiser"])
    return files


@pytest.fixture
def tiny_registry(loopback_hub, tiny_release, tmp_path) -> Registry:
    """The packaged registry with every file replaced by a tiny stand-in, hosted where the entry points."""
    data = yaml.safe_load((ROOT / "checkpoints.yaml").read_text())
    for entry in data["models"].values():
        source, family = entry.get("source"), entry["family"]
        if source is None:
            continue
        if entry["format"] == "transformers":
            loopback_hub.add_folder(source["repo_id"], tiny_release[family], repo_type=source["repo_type"])
            continue
        path = tiny_release[family]
        loopback_hub.add_file(source["repo_id"], source["filename"], path, repo_type=source["repo_type"])
        entry.update(sha256=sha256_of(path), size=path.stat().st_size)
        entry["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.get(family, {}).items()}
    path = tmp_path / "tiny-registry.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(data))))
    return Registry.from_file(path)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_registry_name_loads_from_the_loopback_hub(name, tiny_registry, tiny_release, monkeypatch):
    from hierspeech2 import pipelines
    from hierspeech2.ssl import SemanticEncoder

    monkeypatch.setenv("HIERSPEECH2_REGISTRY", tiny_registry.origin)
    entry = tiny_registry[name]
    loaded = load_model(name)
    if entry.family == "mms":
        assert isinstance(loaded, SemanticEncoder) and len(loaded.model.encoder.layers) == 7
    elif entry.is_pipeline:
        assert type(loaded).__name__ == {"tts": "TextToSpeech", "vc": "VoiceConversion"}[entry.family]
        assert isinstance(loaded, getattr(pipelines, type(loaded).__name__))
        for role, component in entry.components.items():
            part = getattr(loaded, role)
            assert type(part).__name__ == type(load_model(component)).__name__
            if tiny_registry[component].family in TINY:
                assert_same_weights(part, random_model(tiny_registry[component].family))
        assert loaded.output_rate == 48000
        assert loaded.denoise_ratio == 0.8  # the official default, since a denoiser is configured
    else:
        assert_same_weights(loaded, random_model(entry.family))
        assert not loaded.training
    assert is_cached(name)


@pytest.mark.parametrize("family", ["backbone", "ttv", "speechsr", "denoiser"])
def test_round_trips_official_native_official_are_bit_identical(family, loopback_hub, tmp_path):
    model = random_model(family)
    official = model.official_state_dict()
    torch.save(official, tmp_path / "official.pth")
    # a non-released configuration cannot be read off the weights: it is passed explicitly
    model_class(family).from_official(tmp_path / "official.pth", config=TINY[family]).save_pretrained(
        tmp_path / "native"
    )
    loopback_hub.add_folder(f"someone/tiny-{family}", tmp_path / "native")
    for native in (load_model(tmp_path / "native"), load_model(f"hf://someone/tiny-{family}")):
        assert type(native) is type(model) and not native.training
        back = native.official_state_dict()
        assert back.keys() == official.keys()
        assert all(torch.equal(back[k], official[k]) for k in official)


@pytest.mark.parametrize("family", ["backbone", "ttv"])
def test_registry_config_builds_the_released_key_set(family, manifest):
    name, manifest_name = MANIFESTS[family]
    with torch.device("meta"):  # full size, no memory, no init cost
        model = model_class(family)(**default_registry()[name].config)
    expected = {e["key"]: tuple(e["shape"]) for e in manifest(manifest_name)}
    assert {k: tuple(v.shape) for k, v in model.official_state_dict().items()} == expected


def test_cli_vc_and_tts_resolve_their_models_through_the_registry(
    tiny_registry, monkeypatch, capsys, tmp_path, shared_dir
):
    from hierspeech2.audio import load_audio, save_audio

    monkeypatch.setenv("HIERSPEECH2_REGISTRY", tiny_registry.origin)
    source, prompt = (
        tmp_path / "source.wav",
        tmp_path / "prompt.wav",
    )  # 1 s of real speech each: YAAPT is slow
    save_audio(source, load_audio(shared_dir / "audio" / "reference_1.wav", 16000)[8000:24000], 16000)
    save_audio(prompt, load_audio(shared_dir / "audio" / "reference_2.wav", 16000)[8000:24000], 16000)
    out = tmp_path / "vc.wav"
    code, _, err = run_cli(capsys, "vc", str(source), str(prompt), "-o", str(out), "--output-rate", "16000",
                           "--seed", "0", "--quiet")  # fmt: skip
    assert code == 0, err
    wav = load_audio(out, 16000)
    assert wav.numel() >= 16000 and 0.99 < wav.abs().max() <= 1.0  # peak-normalised to 0.999

    code, _, err = run_cli(
        capsys, "vc", str(source), str(prompt), "-o", str(out), "--backbone", "speechsr-48k"
    )
    assert (
        code == 1
        and err.count("\n") == 1
        and "--backbone speechsr-48k is a SpeechSR, not a HierSpeech2" in err
    )
    code, _, err = run_cli(
        capsys, "tts", "Hi.", "--prompt", str(prompt), "-o", str(out), "--model", "hierspeech2-vc"
    )
    assert (
        code == 1
        and "--model hierspeech2-vc is a vc entry; pass a tts pipeline such as hierspeech2-tts" in err
    )
    code, _, err = run_cli(capsys, "tts", "Hi there.", "--prompt", str(prompt),
                           "-o", str(tmp_path / "tts.wav"),
                           "--output-rate", "16000", "--seed", "0", "--quiet")  # fmt: skip
    assert code == 0, err
    tts_wav = load_audio(tmp_path / "tts.wav", 16000)
    assert tts_wav.numel() % 320 == 0 and 0.99 < tts_wav.abs().max() <= 1.0  # whole frames, peak 0.999
