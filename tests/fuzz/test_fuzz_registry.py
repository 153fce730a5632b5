"""Fuzzing registry validation: malformed ``checkpoints.yaml`` entries give a ``RegistryError``
naming the field."""

from __future__ import annotations

import copy

import pytest
import yaml
from fuzz_contract import expect_finite_or_error
from hypothesis import strategies as st

from hierspeech2.registry import Registry, RegistryError

SHA = "0" * 64
VALID = {
    "schema_version": 1,
    "models": {
        "sr": {
            "family": "speechsr", "description": "d", "license": "MIT", "format": "official",
            "source": {"repo_id": "owner/repo", "revision": "main", "filename": "G.pth"},
            "sha256": SHA, "size": 10, "config": {"upsample_ratio": 3.0},
        },
        "bb": {
            "family": "backbone", "description": "d", "license": "MIT", "format": "native",
            "source": {"repo_id": "owner/repo", "filename": "x/model.safetensors"}, "sha256": SHA, "size": 1,
        },
        "mms": {
            "family": "mms", "description": "d", "license": "CC", "format": "transformers",
            "source": {"repo_id": "facebook/mms-300m"},
        },
        "ttv": {
            "family": "ttv", "description": "d", "license": "MIT", "format": "official",
            "source": {"repo_id": "o/r", "filename": "ttv.pth"}, "sha256": SHA, "size": 3,
        },
        "tts": {
            "family": "tts", "description": "d", "license": "MIT",
            "components": {"ttv": "ttv", "backbone": "bb", "speechsr": "sr"},
        },
    },
}  # fmt: skip

# YAML-shaped junk: what a hand-edited file can hold.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from(["", "official", "native", "speechsr", "tts", "backbone", SHA, "owner/repo", "a.pth"]),
)  # fmt: skip
yaml_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), children, max_size=3),
    ),
    max_leaves=8,
)
PATHS = [
    (), ("models",), ("schema_version",), ("models", "sr"), ("models", "tts", "components"),
    ("models", "tts", "components", "ttv"), ("models", "sr", "source"),
    ("models", "sr", "source", "filename"), ("models", "sr", "source", "repo_id"),
    ("models", "sr", "sha256"), ("models", "sr", "size"), ("models", "sr", "format"),
    ("models", "sr", "family"), ("models", "sr", "config"), ("models", "bb", "source", "filename"),
    ("models", "mms", "source"), ("models", "tts", "family"), ("models", "ttv", "description"),
]  # fmt: skip


@st.composite
def mutated_registries(draw) -> object:
    """The valid registry with fields replaced by junk, deleted, or junk fields and entries added."""
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add_field", "add_entry"]))
        if not path:
            if op == "replace":
                data = draw(yaml_values)
            continue
        parent = data
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if op == "replace":
            parent[path[-1]] = draw(yaml_values)
        elif op == "delete":
            parent.pop(path[-1], None)
        elif op == "add_field":
            parent[draw(st.one_of(st.text(max_size=6), st.integers(), st.none()))] = draw(yaml_values)
        elif isinstance(data, dict) and isinstance(data.get("models"), dict):
            data["models"][draw(st.one_of(st.text(max_size=8), st.integers(), st.none()))] = draw(yaml_values)
    return data


def test_registry_validation_on_malformed_entries(fuzz) -> None:
    def body(data) -> None:
        registry = expect_finite_or_error(lambda: Registry.from_dict(data, origin="fuzz.yaml"))
        if registry is not None:
            for entry in registry:
                for name in entry.components.values():
                    assert registry[name].family  # every component resolves

    fuzz.run("Registry.from_dict", body, default=300, long=3_000, data=mutated_registries())


def test_registry_from_file_on_arbitrary_text(fuzz, tmp_path) -> None:
    path = tmp_path / "checkpoints.yaml"
    valid_text = yaml.safe_dump(VALID)

    def body(text, cut) -> None:
        path.write_bytes(text.encode("utf-8", "surrogatepass") if cut is None else valid_text.encode()[:cut])
        expect_finite_or_error(lambda: Registry.from_file(path))

    fuzz.run(
        "Registry.from_file", body, default=100, long=1_000,
        text=st.one_of(
            st.text(max_size=200),
            st.sampled_from(["models: [", "{", "!!python/object:os.system {}", "a: *b", "\t-"]),
        ),
        cut=st.one_of(st.none(), st.integers(0, len(valid_text))),
    )  # fmt: skip


def test_the_valid_registry_is_accepted() -> None:
    assert Registry.from_dict(VALID).names() == ["sr", "bb", "mms", "ttv", "tts"]


@pytest.mark.parametrize("family", [["backbone"], {"a": 1}], ids=["list", "mapping"])
def test_an_unhashable_family_is_a_registry_error(family) -> None:
    # Caught by fuzzing: `family in PIPELINES` raised TypeError (unhashable type: 'list').
    data = copy.deepcopy(VALID)
    data["models"]["sr"]["family"] = family
    with pytest.raises(RegistryError, match="'family'"):
        Registry.from_dict(data)


def test_unknown_fields_of_mixed_key_types_are_a_registry_error() -> None:
    # Caught by fuzzing: sorting the unknown keys {1, "x"} raised TypeError ('<' between str and int).
    data = copy.deepcopy(VALID)
    data["models"]["sr"][1] = "a"
    data["models"]["sr"]["x"] = "b"
    data["models"]["sr"]["source"][None] = "c"
    with pytest.raises(RegistryError, match="unknown field"):
        Registry.from_dict(data)
