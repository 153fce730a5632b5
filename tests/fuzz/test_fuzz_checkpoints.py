"""Fuzzing the checkpoint loaders with damaged files, mutated state dicts and lying safetensors headers.

Each input gives a model with finite weights or a ``CheckpointError`` that says what is wrong;
torch, pickle and safetensors errors never reach the user raw.
"""

from __future__ import annotations

import itertools
import json
import struct
import sys
from pathlib import Path

import pytest
import torch
from fuzz_contract import damaged, expect_finite_or_error
from hypothesis import strategies as st
from safetensors.torch import save_file

from hierspeech2.checkpoint import load_native_weights, load_official_file
from hierspeech2.errors import CheckpointError
from hierspeech2.models import SpeechSR

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tiny_models

CONFIG = {"upsample_ratio": 3.0, **tiny_models.TINY_SPEECHSR}
OFFICIAL = tiny_models.speechsr().official_state_dict()
NATIVE = tiny_models.speechsr().state_dict()
DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int64,
    torch.int8,
    torch.bool,
    torch.complex64,
]
SAFETENSORS_DTYPES = [
    "F16",
    "BF16",
    "F32",
    "F64",
    "I64",
    "I32",
    "I8",
    "U8",
    "BOOL",
    "F8_E4M3",
    "F8_E5M2",
    "C64",
    "XYZ",
    7,
    None,
]


@st.composite
def mutated_state(draw) -> object:
    """The tiny official state dict with keys dropped/added/renamed, shapes/dtypes changed, NaN injected,
    re-wrapped."""
    state = {key: value.clone() for key, value in OFFICIAL.items()}
    keys = sorted(state)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(
            st.sampled_from(
                ["drop", "add", "rename", "reshape", "dtype", "nonfinite", "scalar", "value", "sparse"]
            )
        )
        key = draw(st.sampled_from(keys))
        value = state.get(key)
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided:  # already mutated away
            continue
        if op == "drop":
            del state[key]
        elif op == "add":
            state[draw(st.sampled_from([key + "_x", "dec.extra.weight", "enc_p_l.weight", "", "."]))] = (
                torch.zeros(2)
            )
        elif op == "rename":
            state[draw(st.sampled_from([key.replace("weight_g", "weight"), key.upper(), "model." + key]))] = (
                state.pop(key)
            )
        elif op == "reshape":
            state[key] = torch.zeros(draw(st.lists(st.integers(0, 4), max_size=4)))
        elif op == "dtype":
            state[key] = state[key].to(draw(st.sampled_from(DTYPES)))
        elif op == "nonfinite" and state[key].is_floating_point() and state[key].numel():
            state[key].view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
        elif op == "scalar":
            state[key] = torch.tensor(1.0)
        elif op == "value":
            state[key] = draw(st.sampled_from([None, 1.0, "w", [1.0], {"a": torch.zeros(1)}]))
        elif op == "sparse":
            state[key] = state[key].to_sparse()
    wrapper = draw(st.sampled_from([None, None, "model", "generator", "state_dict", "list", "empty"]))
    if wrapper == "list":
        return list(state.values())
    if wrapper == "empty":
        return {}
    return state if wrapper is None else {wrapper: state, "iteration": 3}


CONFIGS = st.one_of(
    st.just(CONFIG),
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "upsample_ratio": st.one_of(
                st.sampled_from([1.5, 3.0, 2.0, 0.0, -1.0, float("nan")]), st.text(max_size=3)
            ),
            "channels": st.one_of(st.integers(-2, 4), st.none(), st.floats(allow_nan=True)),
            "resblock_kernel_sizes": st.sampled_from([(3,), (), (0,), (3, 5), "3", None]),
            "resblock_dilations": st.sampled_from([((1,),), (), ((),), ((1, 3),), ((-1,),)]),
            "unknown_argument": st.integers(),
        },
    ),
)


def test_from_official_on_mutated_state_dicts(fuzz) -> None:
    def body(state, config) -> None:
        model = expect_finite_or_error(lambda: SpeechSR.from_official(state, config=config))
        if model is not None:
            assert not model.training

    fuzz.run(
        "from_official(state dict)", body, default=120, long=2_000, state=mutated_state(), config=CONFIGS
    )


def test_load_official_file_on_damaged_files(fuzz, tmp_path) -> None:
    names = itertools.count()
    original = tmp_path / "official.pth"
    torch.save({"model": OFFICIAL, "iteration": 1}, original)
    legacy = tmp_path / "legacy.pth"
    torch.save(OFFICIAL, legacy, _use_new_zipfile_serialization=False)
    payloads = {"zip": original.read_bytes(), "legacy": legacy.read_bytes()}

    def body(kind, data) -> None:
        path = tmp_path / f"{next(names)}.pth"
        path.write_bytes(data.draw(damaged(payloads[kind])))
        state = expect_finite_or_error(lambda: load_official_file(path))
        if state is not None:
            assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
            expect_finite_or_error(lambda: SpeechSR.from_official(state, config=CONFIG))

    fuzz.run(
        "load_official_file",
        body,
        default=120,
        long=2_000,
        kind=st.sampled_from(sorted(payloads)),
        data=st.data(),
    )


def _split_safetensors(raw: bytes) -> tuple[dict, bytes]:
    length = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


def test_load_native_weights_with_lying_headers(fuzz, tmp_path) -> None:
    names = itertools.count()
    original = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in NATIVE.items()}, str(original), metadata={"format": "pt"})
    header, body_bytes = _split_safetensors(original.read_bytes())
    tensor_keys = sorted(k for k in header if k != "__metadata__")
    module = tiny_models.speechsr()

    def body(data) -> None:
        lied = json.loads(json.dumps(header))
        for _ in range(data.draw(st.integers(0, 3))):
            key = data.draw(st.sampled_from(tensor_keys))
            field = data.draw(
                st.sampled_from(["dtype", "shape", "data_offsets", "drop", "rename", "metadata"])
            )
            if key not in lied:
                continue
            if field == "dtype":
                lied[key]["dtype"] = data.draw(st.sampled_from(SAFETENSORS_DTYPES))
            elif field == "shape":
                lied[key]["shape"] = data.draw(st.lists(st.integers(-1, 2**40), max_size=4))
            elif field == "data_offsets":
                lied[key]["data_offsets"] = data.draw(
                    st.lists(st.integers(-1, 2**63), min_size=0, max_size=3)
                )
            elif field == "drop":
                del lied[key]
            elif field == "rename":
                lied[key + ".x"] = lied.pop(key)
            else:
                lied["__metadata__"] = data.draw(
                    st.dictionaries(st.text(max_size=4), st.one_of(st.text(max_size=4), st.integers()))
                )
        encoded = json.dumps(lied).encode()
        length = data.draw(
            st.sampled_from([len(encoded), len(encoded), 0, len(encoded) + 8, 2**63, len(encoded) - 1])
        )
        payload = data.draw(
            st.sampled_from(
                [body_bytes, body_bytes, body_bytes[: len(body_bytes) // 2], body_bytes + b"\0" * 16]
            )
        )
        path = tmp_path / f"{next(names)}.safetensors"
        path.write_bytes(struct.pack("<Q", length % 2**64) + encoded + payload)
        expect_finite_or_error(lambda: (load_native_weights(path, module), module)[1])

    fuzz.run("load_native_weights", body, default=120, long=2_000, data=st.data())


def test_from_pretrained_on_fuzzed_config_json(fuzz, tmp_path) -> None:
    names = itertools.count()
    saved = tmp_path / "saved"
    tiny_models.speechsr().save_pretrained(saved)
    config = json.loads((saved / "config.json").read_text())
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 8),
        st.floats(),
        st.text(max_size=4),
        st.lists(st.integers(-1, 5), max_size=3),
    )

    def body(changes, drop) -> None:
        folder = tmp_path / str(next(names))
        folder.mkdir()
        (folder / "model.safetensors").symlink_to(saved / "model.safetensors")
        fuzzed = {k: v for k, v in config.items() if k not in drop} | changes
        (folder / "config.json").write_text(json.dumps(fuzzed))
        expect_finite_or_error(lambda: SpeechSR.from_pretrained(folder))

    fuzz.run(
        "from_pretrained(config.json)", body, default=60, long=1_000,
        changes=st.dictionaries(st.sampled_from(sorted(config) + ["bogus"]), values, max_size=3),
        drop=st.sets(st.sampled_from(sorted(config)), max_size=2),
    )  # fmt: skip


# ---- regressions caught by fuzzing ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_non_float_weights_are_refused_not_cast(dtype) -> None:
    # Caught by fuzzing: integer, boolean and complex tensors were cast silently into float parameters.
    state = {key: value.to(dtype) for key, value in OFFICIAL.items()}
    with pytest.raises(CheckpointError, match="expected a floating-point dtype"):
        SpeechSR.from_official(state, config=CONFIG)


def test_nan_weights_are_refused() -> None:
    # Caught by fuzzing: a checkpoint of NaN weights loaded fine and every output was NaN.
    state = {key: value.clone() for key, value in OFFICIAL.items()}
    state["dec.conv_post.weight"][0, 0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"dec\.conv_post\.weight \(contains NaN/Inf\)"):
        SpeechSR.from_official(state, config=CONFIG)


@pytest.mark.parametrize("config", [CONFIG, None], ids=["config", "read-off-weights"])
@pytest.mark.parametrize("key", ["dec.conv_pre.bias", "dec.conv_post.weight"])
def test_sparse_weights_are_a_checkpoint_error(key, config) -> None:
    # Caught by fuzzing: a sparse tensor raised a raw RuntimeError, in load_state_dict or, for the
    # weight SpeechSR fingerprints, in config_from_official ("unsupported memory format").
    state = dict(OFFICIAL, **{key: OFFICIAL[key].to_sparse()})
    with pytest.raises(CheckpointError, match=f"not dense weights: {key}"):
        SpeechSR.from_official(state, config=config)


@pytest.mark.parametrize(
    "config",
    [{**CONFIG, "channels": -1}, {**CONFIG, "upsample_ratio": "x"}, {**CONFIG, "no_such_argument": 1}],
)
def test_a_bad_config_is_a_checkpoint_error(config) -> None:
    # Caught by fuzzing: constructor TypeError/RuntimeError escaped raw from from_official.
    with pytest.raises(CheckpointError, match="cannot build SpeechSR from the configuration"):
        SpeechSR.from_official(OFFICIAL, config=config)


def test_a_bad_config_json_is_a_checkpoint_error(tmp_path) -> None:
    # Caught by fuzzing: {"channels": "x"} in config.json raised TypeError inside SpeechSR.__init__.
    tiny_models.speechsr().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"channels": "x"}))
    with pytest.raises(CheckpointError, match="cannot build SpeechSR"):
        SpeechSR.from_pretrained(tmp_path)


def test_an_empty_state_dict_says_it_is_empty() -> None:
    with pytest.raises(CheckpointError, match="an empty mapping"):
        SpeechSR.from_official({}, config=CONFIG)


def test_a_truncated_legacy_checkpoint_is_a_checkpoint_error(tmp_path) -> None:
    # Caught by fuzzing: torch's weights-only unpickler raised IndexError on a cut legacy-format file.
    path = tmp_path / "legacy.pth"
    torch.save(OFFICIAL, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:1])
    with pytest.raises(CheckpointError, match="damaged or not a PyTorch checkpoint|refusing to load"):
        load_official_file(path)


def test_from_official_on_a_list_is_a_checkpoint_error() -> None:
    # Caught by fuzzing: a list of tensors reached pathlib and raised TypeError.
    with pytest.raises(CheckpointError, match="a checkpoint path or a state dict"):
        SpeechSR.from_official(list(OFFICIAL.values()), config=CONFIG)
