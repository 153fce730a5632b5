"""Fuzzing training recipes: recipes/tiny/*.yaml with keys removed, nulled, mistyped, unknown or mis-pathed.

Fed through the training CLI in-process (:class:`~hierspeech2.training_cli.HierSpeechCLI`), a
recipe either builds its run or stops with the parser's error (``SystemExit(2)`` and a message
on stderr that names the problem) — never an exception from inside a model, a task or the
Trainer. A second property trains one step from recipes whose task settings (learning rate,
decay, betas, loss weights …) are mutated, on synthetic batches: it trains or is refused the same way.
A third points a recipe's missing cache at corpora that cannot make one: ``prepare_data`` refuses
in one line and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import math
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from fuzz_contract import MAX_MESSAGE_CHARS
from hypothesis import strategies as st

from hierspeech2.errors import HierSpeechError
from hierspeech2.training_cli import HierSpeechCLI, main

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "tiny"
TINY_RECIPES = {path.stem: yaml.safe_load(path.read_text()) for path in sorted(RECIPES.glob("*.yaml"))}
WRONG_VALUES = [
    None, "abc", "", -1, 0, 1e30, -0.5, True, [], {}, [1, 2], {"x": 1}, "1e-3", math.nan, math.inf, [[]],
]  # fmt: skip
WRONG_CLASS_PATHS = [
    "os.system", "hierspeech2.tasks.Nope", "builtins.dict", "", "torch.nn.Linear",
    "hierspeech2.models.SpeechSR", "lightning.pytorch.callbacks.EarlyStopping", "nonexistent_module.Thing",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a parsed YAML document (dict keys and list indices), parents before children."""
    found = []
    if isinstance(node, dict):
        for key in sorted(node, key=str):
            found.append(prefix + (key,))
            found.extend(paths(node[key], prefix + (key,)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found.append(prefix + (index,))
            found.extend(paths(item, prefix + (index,)))
    return found


def parent_of(document: Any, path: tuple) -> Any:
    node = document
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def mutated_recipes(draw) -> tuple[str, dict]:
    """(recipe name, document) with 1–3 mutations: a key deleted, a wrong value, an extra key, a wrong
    class."""
    name = draw(st.sampled_from(sorted(TINY_RECIPES)))
    document = copy.deepcopy(TINY_RECIPES[name])
    for _ in range(draw(st.integers(1, 3))):
        candidates = paths(document)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent, key = parent_of(document, path), path[-1]
        operation = draw(st.sampled_from(["delete", "wrong", "wrong", "unknown", "class_path"]))
        # copies: a drawn [] or {} must not be shared with (and mutated through) WRONG_VALUES
        if operation == "delete":
            del parent[key]
        elif operation == "wrong":
            parent[key] = copy.deepcopy(draw(st.sampled_from(WRONG_VALUES)))
        elif operation == "unknown":
            target = parent[key] if isinstance(parent[key], dict) else parent
            if isinstance(target, dict):
                extra = draw(st.sampled_from(["bogus_option", "learning_rate", "init_args", "class_path"]))
                target[extra] = copy.deepcopy(draw(st.sampled_from(WRONG_VALUES)))
        elif isinstance(parent, dict) and "class_path" in parent:
            parent["class_path"] = draw(st.sampled_from(WRONG_CLASS_PATHS))
        else:
            parent[key] = {"class_path": draw(st.sampled_from(WRONG_CLASS_PATHS))}
    return name, document


def run_cli(args: list[str], run: bool) -> str | None:
    """The CLI's stderr when it refused the recipe (SystemExit), None when it built (and ran) it."""
    stderr = io.StringIO()
    try:
        # argv as the console script sees it (LightningCLI warns when args and sys.argv both hold options)
        with (
            contextlib.redirect_stderr(stderr),
            contextlib.redirect_stdout(io.StringIO()),
            mock.patch.object(sys, "argv", ["lightning"]),
        ):
            if run:
                main(args)
            else:
                HierSpeechCLI(args, run=False)
    except SystemExit as exit_info:
        message = stderr.getvalue()
        assert exit_info.code not in (0, None), "a refused recipe must exit non-zero"
        assert "error:" in message, f"exit {exit_info.code} without a message"
        assert "Traceback" not in message
        assert len(message) <= 20 * MAX_MESSAGE_CHARS  # jsonargparse repeats the section it rejects
        return message
    return None


def test_training_cli_on_mutated_recipes(fuzz, tmp_path) -> None:
    names = itertools.count()
    outcomes = {"built": 0, "refused": 0}

    def body(recipe) -> None:
        _, document = recipe
        path = tmp_path / f"{next(names)}.yaml"
        path.write_text(yaml.safe_dump(document))
        message = run_cli(["-c", str(path), "--trainer.logger", "false"], run=False)
        outcomes["built" if message is None else "refused"] += 1

    fuzz.run("training CLI (build recipe)", body, default=40, long=800, recipe=mutated_recipes())
    assert outcomes["refused"] >= 0.3 * sum(outcomes.values()), outcomes  # the mutations do break recipes


def _synthetic(document: dict, name: str, root: Path) -> dict:
    """The recipe on synthetic batches, one batch (two optimizer steps for the GAN tasks), nothing saved."""
    document = copy.deepcopy(document)
    if name == "ttv":
        model = document["model"]["init_args"]["model"]["init_args"]
        model.update(n_vocab=20, mel_channels=12, semantic_channels=24)
        data = {"class_path": "hierspeech2.tasks.synthetic.SyntheticTTVDataModule",
                "init_args": {"batch_size": 2, "train_size": 2, "val_size": 2, "n_vocab": 20,
                              "semantic_channels": 24, "mel_channels": 12}}  # fmt: skip
        steps = 1
    else:
        data = {"class_path": "hierspeech2.tasks.synthetic.SyntheticSpeechSRDataModule",
                "init_args": {"batch_size": 1, "train_size": 1, "val_size": 1, "segment": 4800,
                              "output_rate": 24_000 if name == "speechsr24k" else 48_000}}  # fmt: skip
        steps = 2
    document["data"] = data
    document["trainer"] = {
        "accelerator": "cpu", "devices": 1, "max_steps": steps, "logger": False,
        "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0, "default_root_dir": str(root),
    }  # fmt: skip
    return document


def set_setting(init_args: dict, setting: str, value: Any) -> None:
    """Set a task setting by dotted path (``optimizer.learning_rate``) in a recipe's ``init_args``."""
    *parents, key = setting.split(".")
    for parent in parents:
        init_args = init_args.setdefault(parent, {})
    init_args[key] = value


TASK_SETTINGS = st.sampled_from(
    ["optimizer.learning_rate", "optimizer.lr_decay", "optimizer.betas", "optimizer.eps",
     "optimizer.weight_decay", "optimizer", "pitch_window", "grad_clip",
     "max_nonfinite_steps", "mel_weight", "kl_weight", "adversarial_weight", "log_examples"]
)  # fmt: skip


def test_training_cli_fits_or_refuses_mutated_task_settings(fuzz, tmp_path) -> None:
    names = itertools.count()
    outcomes = {"trained": 0, "refused": 0}

    def body(name, setting, value) -> None:
        document = _synthetic(TINY_RECIPES[name], name, tmp_path / "runs")
        set_setting(document["model"]["init_args"], setting, value)
        path = tmp_path / f"{next(names)}.yaml"
        path.write_text(yaml.safe_dump(document))
        message = run_cli(["fit", "-c", str(path)], run=True)
        outcomes["trained" if message is None else "refused"] += 1

    fuzz.run(
        "training CLI (fit mutated settings)", body, default=10, long=100,
        name=st.sampled_from(["ttv", "speechsr24k"]), setting=TASK_SETTINGS,
        value=st.sampled_from(
            [-1, 0, 0.5, 2, -1e-3, 1e9, math.nan, math.inf, [0.8, 0.99], [2.0, -1.0], None, "x"]
        ),
    )  # fmt: skip
    assert outcomes["trained"] and outcomes["refused"], outcomes


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [("optimizer.learning_rate", -1.0, "learning_rate must be > 0"),
     ("optimizer.lr_decay", 0.0, "lr_decay must be in"),
     ("optimizer.betas", [2.0, 0.99], "betas must be two numbers"),
     ("pitch_window", 0, "pitch_window must be"),
     ("kl_weight", None, "loss weights must be finite numbers >= 0"),
     ("ctc_weight", math.nan, "loss weights must be finite numbers >= 0")],
)  # fmt: skip
def test_out_of_range_task_settings_are_refused_before_training(
    tmp_path, capsys, setting, value, words
) -> None:
    # regression: these built the run and failed at the first step inside AdamW/the scheduler or the
    # loss (kl_weight null: "unsupported operand NoneType * Tensor"), or for lr_decay 0 trained on
    # with a zero learning rate after the first epoch
    document = _synthetic(TINY_RECIPES["ttv"], "ttv", tmp_path)
    set_setting(document["model"]["init_args"], setting, value)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SystemExit) as exit_info:
        HierSpeechCLI(["-c", str(path)], run=False)
    assert exit_info.value.code == 2
    assert words in capsys.readouterr().err


def test_constructor_failure_deep_in_the_model_is_a_recipe_error(tmp_path, capsys) -> None:
    # regression: a negative width escaped as jsonargparse's ValueError wrapping torch's
    # "Trying to create tensor with negative dimension" (a traceback, not a CLI error)
    document = copy.deepcopy(TINY_RECIPES["ttv"])
    document["model"]["init_args"]["model"]["init_args"]["hidden_channels"] = -3
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SystemExit) as exit_info:
        HierSpeechCLI(["-c", str(path)], run=False)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "the recipe's values cannot build the run: RuntimeError" in err and "negative dimension" in err


CORPORA = st.sampled_from(
    ["none", "empty string", "missing", "a file", "empty folder", "text folder", "bad manifest", "no audio"]
)


def _corpus(kind: str, root: Path) -> str | None:
    """A corpus_dir that cannot give a cache, of the given kind."""
    root.mkdir(parents=True)
    if kind == "none":
        return None
    if kind == "empty string":
        return ""
    if kind == "missing":
        return str(root / "no" / "such")
    if kind == "a file":
        return str(RECIPES / "ttv.yaml")
    if kind == "text folder":
        (root / "readme.txt").write_text("not a corpus")
    elif kind == "bad manifest":
        (root / "manifest.tsv").write_text("file\twords\nx.wav\thello\n")  # no 'path' column
    elif kind == "no audio":
        (root / "manifest.jsonl").write_text('{"path": "gone.wav", "text": "hello there"}\n')
    return str(root)


def test_prepare_data_from_unusable_corpora_fails_in_one_line_and_leaves_nothing(fuzz, tmp_path) -> None:
    cases = itertools.count()

    def body(name, corpus) -> None:
        case = tmp_path / str(next(cases))
        corpus_dir = _corpus(corpus, case / "corpus")
        data_dir = case / "out" / "cache"
        args = ["-c", str(RECIPES / f"{name}.yaml"), "--trainer.logger", "false"]
        args += ["--data.init_args.data_dir", str(data_dir), "--data.init_args.corpus_dir", str(corpus_dir)]
        if corpus_dir is None:
            args[-1] = "null"
        with contextlib.redirect_stderr(io.StringIO()), mock.patch.object(sys, "argv", ["lightning"]):
            cli = HierSpeechCLI(args, run=False)
        with pytest.raises(HierSpeechError) as error:
            cli.datamodule.prepare_data()
        message = str(error.value)
        assert "\n" not in message and len(message) <= MAX_MESSAGE_CHARS
        assert "hierspeech2 preprocess" in message or "corpus_dir" in message or "no utterance" in message
        assert not (case / "out").exists()  # no cache, no temporary folder, not even its parent

    fuzz.run(
        "datamodule prepare_data (unusable corpus)", body, default=8, long=200,
        name=st.sampled_from(sorted(TINY_RECIPES)), corpus=CORPORA,
    )  # fmt: skip
