"""The model card (``README.md``) that ``save_pretrained`` writes next to a native checkpoint.

Hub metadata, the model's family, size and licence, how to load it (Python and command line),
its configuration and where its weights came from. A card the user edited (one without
:data:`GENERATED_CARD_MARK`) is kept.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from huggingface_hub import ModelCard
    from torch import nn

MODEL_CARD_FILE = "README.md"
GENERATED_CARD_MARK = (
    "<!-- hierspeech2: generated model card, rewritten by save_pretrained; "
    "delete this line to keep your edits -->"
)
"""First line of the card body that ``save_pretrained`` writes; a ``README.md`` without it is the user's."""
SAVED_FROM_PYTHON = "Saved from Python with `save_pretrained`."


@dataclass(frozen=True)
class _CardFamily:
    """What a model card says about one model class; ``{location}`` in ``cli`` is the shell-quoted folder."""

    title: str
    summary: str
    tags: tuple[str, ...]
    cli: tuple[str, ...]


_CARD_FAMILIES = {
    "HierSpeech2": _CardFamily(
        "HierSpeech2 backbone",
        "the hierarchical speech synthesizer of HierSpeech++: self-supervised speech features (MMS), F0 "
        "and a voice prompt → 16 kHz speech. It converts voices on its own and speaks the output of "
        "TextToVec in text-to-speech.",
        ("voice-conversion", "text-to-speech"),
        (
            "hierspeech2 vc source.wav voice.wav -o converted.wav --backbone {location}",
            'hierspeech2 tts "Hello there." --prompt voice.wav -o hello.wav --backbone {location}',
        ),
    ),
    "TextToVec": _CardFamily(
        "TextToVec",
        "the text-to-vec model of HierSpeech++: phoneme ids and a prosody prompt → the self-supervised "
        "speech features and F0 that the HierSpeech2 backbone speaks (the first stage of text-to-speech).",
        ("text-to-speech",),
        ('hierspeech2 tts "Hello there." --prompt voice.wav -o hello.wav --ttv {location}',),
    ),
    "SpeechSR": _CardFamily(
        "SpeechSR",
        "the speech super-resolution model of HierSpeech++: "
        "{input_khz} kHz speech → {output_khz} kHz speech.",
        ("audio-to-audio", "speech-super-resolution"),
        ("hierspeech2 sr speech_16k.wav -o speech_{output_khz}k.wav --model {location}",),
    ),
    "MPSENet": _CardFamily(
        "MP-SENet prompt denoiser",
        "the MP-SENet speech enhancement model HierSpeech++ uses to denoise voice prompts; the styles of the "
        "original and the denoised prompt are mixed by `denoise_ratio`.",
        ("speech-enhancement", "voice-conversion", "text-to-speech"),
        (
            "hierspeech2 vc source.wav voice.wav -o converted.wav --denoiser {location}",
            'hierspeech2 tts "Hello there." --prompt voice.wav -o hello.wav --denoiser {location}',
        ),
    ),
}


def official_card_source(path: str | os.PathLike) -> str:
    """The model card's provenance line for weights converted from the official checkpoint file ``path``."""
    from .registry import sha256_of

    return (
        f"Converted with `hierspeech2 convert` from the official checkpoint `{Path(path).name}` "
        f"(sha256 `{sha256_of(path)}`)."
    )


def card_location(save_directory: str | os.PathLike) -> str:
    """How the card names a local folder: as given, with ``./`` before a bare name (else a registry name)."""
    location = os.fspath(save_directory)
    if not Path(location).is_absolute() and os.sep not in location and "/" not in location:
        location = f"./{location}"
    return location


def _count(n: int) -> str:
    """``1,234,567 (1.2 M)``; small counts stay plain."""
    if n >= 1_000_000:
        return f"{n:,} ({n / 1e6:.1f} M)"
    if n >= 1_000:
        return f"{n:,} ({n / 1e3:.1f} k)"
    return f"{n:,}"


def _kilohertz(rate: float) -> str:
    return f"{rate / 1000:g}"


def is_generated_card(path: Path) -> bool:
    """Whether the ``README.md`` at ``path`` is one ``save_pretrained`` wrote (and may rewrite)."""
    try:
        return GENERATED_CARD_MARK in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def model_card(
    model: nn.Module,
    *,
    source: str | None = None,
    location: str = "path/to/model",
    config: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The card of a native checkpoint of ``model`` (a ``NativeCheckpointMixin`` model).

    Args:
        source: where the weights came from (a Markdown sentence); default "saved from Python".
        location: the folder (or ``hf://owner/repo``) the loading examples name.
        config: the constructor arguments written to ``config.json`` (default: the model's).
    """
    from huggingface_hub import ModelCard, ModelCardData

    from .checkpoint import NATIVE_CLASS_KEY, NATIVE_CONFIG_FILE, NATIVE_WEIGHTS_FILE
    from .registry import HF_SCHEME

    cls = type(model).__name__
    fallback = (type(model).__doc__ or cls).strip().splitlines()[0]
    family = _CARD_FAMILIES.get(cls, _CardFamily(cls, fallback, (), ()))
    rates = {}
    if hasattr(model, "input_rate") and hasattr(model, "output_rate"):
        rates = {"input_khz": _kilohertz(model.input_rate), "output_khz": _kilohertz(model.output_rate)}
    title = family.title + (f" ({rates['input_khz']} kHz → {rates['output_khz']} kHz)" if rates else "")
    info = model._hub_mixin_info
    card_data = ModelCardData(**info.model_card_data.to_dict())
    card_data.tags = sorted({*(card_data.tags or ()), *family.tags})
    hub_id = location.removeprefix(HF_SCHEME)
    cli = "\n".join(line.format(location=shlex.quote(location), **rates) for line in family.cli)
    config = model._hub_mixin_config if config is None else config
    config = {key: value for key, value in (config or {}).items() if key != NATIVE_CLASS_KEY}
    rows = (
        "\n".join(f"| `{key}` | `{json.dumps(value)}` |" for key, value in config.items()) or "| (none) | |"
    )
    parameters = sum(parameter.numel() for parameter in model.parameters())
    body = [
        GENERATED_CARD_MARK,
        "",
        f"# {title}",
        "",
        f"**Family:** {family.title}, {family.summary.format(**rates)}",
        "",
        f"Re-implemented by hierspeech2 after [HierSpeech++]({info.repo_url}) ([paper]({info.paper_url})).",
        "",
        f"- **Parameters:** {_count(parameters)}",
        "- **Licence:** MIT, as the official HierSpeech++ code and weights",
        f"- **Source:** {source or SAVED_FROM_PYTHON}",
        "",
        "## Use",
        "",
        "```python",
        "from hierspeech2 import load_model",
        f"from hierspeech2.models import {cls}",
        "",
        f"model = load_model({json.dumps(location)})  # any hierspeech2 model; device=, dtype= optional",
        f"model = {cls}.from_pretrained({json.dumps(hub_id)})  # a {cls} only",
        "```",
    ]
    if cli:
        body += ["", "From the command line:", "", "```bash", cli, "```"]
    body += [
        "",
        "## Configuration",
        "",
        (
            f"Constructor arguments of `{cls}` (`{NATIVE_CONFIG_FILE}`); "
            f"the weights are `{NATIVE_WEIGHTS_FILE}`."
        ),
        "",
        "| argument | value |",
        "| --- | --- |",
        rows,
        "",
    ]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n" + "\n".join(body))
