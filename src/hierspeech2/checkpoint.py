"""Official HierSpeech++ checkpoints ⇄ hierspeech2 modules.

The released ``.pth`` files use the legacy weight-norm names (``conv.weight_g`` /
``conv.weight_v``) and the authors' submodule names (``enc_p_l``, ``emb_g`` …).
Our modules use ``torch.nn.utils.parametrizations.weight_norm`` (keys
``conv.parametrizations.weight.original0`` / ``original1``) and descriptive
top-level names. This module owns both mappings, explicitly and in both
directions, and loads strictly: a missing, unexpected or mis-shaped key is an
error that lists every offender.

The native format (:class:`NativeCheckpointMixin`) is a folder with ``config.json``
(constructor arguments) and ``model.safetensors`` (native keys), read and written with
``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``; it never unpickles anything.
``save_pretrained`` also writes a model card (``README.md``, :mod:`hierspeech2.model_card`): family,
configuration, size, licence, how to load it and where the weights came from.
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from safetensors import SafetensorError
from torch import Tensor, nn

from ._util import as_tuples
from .construction import without_random_init
from .errors import CheckpointError, OutputError
from .model_card import (
    GENERATED_CARD_MARK,
    MODEL_CARD_FILE,
    SAVED_FROM_PYTHON,
    card_location,
    is_generated_card,
    model_card,
    official_card_source,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "GENERATED_CARD_MARK",
    "MODEL_CARD_FILE",
    "NATIVE_CLASS_KEY",
    "NATIVE_CONFIG_FILE",
    "NATIVE_WEIGHTS_FILE",
    "SAVED_FROM_PYTHON",
    "NativeCheckpointMixin",
    "OfficialCheckpointMixin",
    "PrefixTable",
    "check_state_dict",
    "load_native_weights",
    "load_official_file",
    "native_to_official",
    "official_card_source",
    "official_to_native",
    "unwrap_state_dict",
]

PrefixTable = Sequence[tuple[str, str]]
"""Pairs ``(official_prefix, native_prefix)``, e.g. ``("enc_p_l.", "perturbed_prior_encoder.")``."""

_LEGACY_TO_PARAMETRIZED = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}
_PARAMETRIZED_TO_LEGACY = {v: k for k, v in _LEGACY_TO_PARAMETRIZED.items()}
_MAX_LISTED_KEYS = 20


def load_official_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read an official ``.pth`` safely (``weights_only=True``) and return its generator state dict.

    Accepts the layouts the authors released: a plain state dict, a training checkpoint
    ``{"model": state_dict, "iteration": ..., "optimizer": ...}``, or the denoiser's ``{"generator": ...}``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain tensor checkpoint and loading it would run "
            f"arbitrary code, or it is damaged ({error}). Only load checkpoints from sources you trust, "
            "converted to safetensors with `hierspeech2 convert`."
        ) from error
    except Exception as error:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(error).__name__}: {error}); the file is damaged or not a "
            "PyTorch checkpoint: download it again"
        ) from error
    return unwrap_state_dict(obj, source=str(path))


def unwrap_state_dict(obj: Any, source: str = "state dict") -> dict[str, Tensor]:
    """Return the tensor mapping inside ``obj``: a state dict, ``{"model": state_dict, ...}``
    (HierSpeech++ training checkpoints) or ``{"generator": state_dict, ...}`` (the MP-SENet denoiser)."""
    for wrapper in ("model", "generator"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not obj:
        got = "an empty mapping" if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{source} holds no state dict (got {got})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source} has non-tensor entries: {_listing(map(str, bad))}")
    # Sparse, quantised or meta tensors would reach config_from_official before check_state_dict sees them.
    not_dense = [k for k, v in obj.items() if v.layout != torch.strided or v.is_meta or v.is_quantized]
    if not_dense:
        raise CheckpointError(f"{source} has tensors that are not dense weights: {_listing(not_dense)}")
    return dict(obj)


def _swap_prefix(key: str, table: PrefixTable, reverse: bool) -> str:
    for official, native in table:
        source, target = (native, official) if reverse else (official, native)
        if key.startswith(source):
            return target + key[len(source) :]
    return key


def official_to_native(state: Mapping[str, Tensor], prefixes: PrefixTable = ()) -> dict[str, Tensor]:
    """Rename official keys to native ones: submodule prefixes, then legacy weight-norm leaves."""
    renamed = {}
    for key, value in state.items():
        stem, _, leaf = _swap_prefix(key, prefixes, reverse=False).rpartition(".")
        new_leaf = _LEGACY_TO_PARAMETRIZED.get(leaf, leaf)
        renamed[f"{stem}.{new_leaf}" if stem else new_leaf] = value
    return renamed


def native_to_official(state: Mapping[str, Tensor], prefixes: PrefixTable = ()) -> dict[str, Tensor]:
    """Inverse of :func:`official_to_native`."""
    renamed = {}
    for key, value in state.items():
        for native_leaf, legacy_leaf in _PARAMETRIZED_TO_LEGACY.items():
            if key.endswith("." + native_leaf):
                key = key[: -len(native_leaf)] + legacy_leaf
                break
        renamed[_swap_prefix(key, prefixes, reverse=True)] = value
    return renamed


def _listing(keys: Any) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return shown + (f" … and {more} more" if more > 0 else "")


def check_state_dict(
    module: nn.Module,
    state: Mapping[str, Tensor],
    what: str = "checkpoint",
    display: Callable[[str], str] = str,
) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly ``module``'s keys and shapes.

    ``display`` renders a key for the message (e.g. back to its name in an official checkpoint).
    """
    expected = module.state_dict()
    missing = [display(k) for k in expected.keys() - state.keys()]
    unexpected = [display(k) for k in state.keys() - expected.keys()]
    mis_shaped = [
        f"{display(k)} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected.keys() & state.keys()
        if state[k].shape != expected[k].shape
    ]
    reasons = {k: _unusable_reason(state[k], expected[k]) for k in expected.keys() & state.keys()}
    unusable = [f"{display(k)} ({reason})" for k, reason in reasons.items() if reason]
    problems = []
    if unusable:
        problems.append(f"{len(unusable)} unusable tensor(s): {_listing(unusable)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if mis_shaped:
        problems.append(f"{len(mis_shaped)} shape mismatch(es): {_listing(mis_shaped)}")
    if problems:
        raise CheckpointError(
            f"{what} does not fit {type(module).__name__}: "
            + "; ".join(problems)
            + ". Is this the right model family and configuration?"
        )


def _unusable_reason(value: Tensor, reference: Tensor) -> str | None:
    """Why ``value`` cannot stand in for ``reference`` (a parameter or buffer), or None if it can."""
    if value.layout != torch.strided or value.is_meta:
        return f"{value.layout} tensor on {value.device.type}; expected dense weights"
    if reference.is_floating_point() and not value.is_floating_point():
        # load_state_dict would cast silently (and drop the imaginary part of complex values)
        return f"dtype {value.dtype}, expected a floating-point dtype like {reference.dtype}"
    if value.is_floating_point() and value.numel() and not _all_finite(value):
        return "contains NaN/Inf"
    return None


def _all_finite(value: Tensor) -> bool:
    """Whether no element is NaN or ±Inf: one float64 sum (NaN and Inf survive it), checked element by
    element only when the sum is not finite (it can overflow for huge float64 values)."""
    if value.is_complex():
        return bool(torch.isfinite(value).all())
    return bool(value.sum(dtype=torch.float64).isfinite()) or bool(torch.isfinite(value).all())


def _load_strict(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with torch's errors reported as :class:`CheckpointError`."""
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(f"cannot load {source} into {type(module).__name__}: {error}") from error


def _construct(cls: type, kwargs: Mapping[str, Any], source: str) -> Any:
    """``cls(**kwargs)`` without random initial weights (every one is loaded next), a bad
    configuration reported as :class:`CheckpointError`."""
    try:
        with without_random_init():
            return cls(**kwargs)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, OverflowError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(
            f"cannot build {cls.__name__} from the configuration of {source} "
            f"({type(error).__name__}: {error}); "
            f"check the config values against the arguments of {cls.__name__}"
        ) from error


M = TypeVar("M", bound="OfficialCheckpointMixin")


class OfficialCheckpointMixin:
    """``from_official`` / ``official_state_dict`` for an ``nn.Module`` with a prefix table.

    Subclasses set ``OFFICIAL_PREFIXES`` and implement ``config_from_official`` when
    the configuration can be read off the weights (e.g. SpeechSR's upsampling ratio).
    """

    OFFICIAL_PREFIXES: PrefixTable = ()

    @classmethod
    def config_from_official(cls, state: Mapping[str, Tensor]) -> dict[str, Any]:
        """Constructor arguments implied by an official state dict (default: the released config)."""
        return {}

    @classmethod
    def from_official(  # noqa: PYI019 (typing.Self needs Python 3.11)
        cls: type[M],
        path_or_state_dict: str | os.PathLike | Mapping[str, Tensor],
        config: Mapping[str, Any] | None = None,
    ) -> M:
        """Build the model and load an official checkpoint (path or state dict) strictly; eval mode."""
        if isinstance(path_or_state_dict, Mapping):
            state, source = unwrap_state_dict(path_or_state_dict), "state dict"
        elif not isinstance(path_or_state_dict, (str, os.PathLike)):
            raise CheckpointError(
                "from_official takes a checkpoint path or a state dict, "
                f"got {type(path_or_state_dict).__name__}"
            )
        else:
            state, source = load_official_file(path_or_state_dict), str(path_or_state_dict)
        kwargs = dict(cls.config_from_official(state)) if config is None else dict(config)
        model = _construct(cls, kwargs, source)
        model.load_official_state_dict(state, source=source)
        return model.eval()

    def load_official_state_dict(self, state: Mapping[str, Tensor], source: str = "state dict") -> None:
        """Load an official-format state dict into this model, strictly."""
        assert isinstance(self, nn.Module)
        native = official_to_native(state, self.OFFICIAL_PREFIXES)
        check_state_dict(self, native, what=source, display=self._official_key)
        _load_strict(self, native, source)

    @classmethod
    def _official_key(cls, native_key: str) -> str:
        return next(iter(native_to_official({native_key: None}, cls.OFFICIAL_PREFIXES)))

    def official_state_dict(self) -> dict[str, Tensor]:
        """This model's weights in the released checkpoint format (legacy names and keys)."""
        assert isinstance(self, nn.Module)
        return native_to_official(self.state_dict(), self.OFFICIAL_PREFIXES)


NATIVE_CONFIG_FILE = "config.json"
NATIVE_WEIGHTS_FILE = "model.safetensors"
NATIVE_CLASS_KEY = "hierspeech2_class"
"""``config.json`` key naming the model class, so ``load_model`` can rebuild any native checkpoint."""
_json_to_constructor = as_tuples  # the name hierspeech2.tasks.export imports


def _new_file_mode(folder: Path) -> int:
    """The mode ``open`` gives a new file in ``folder`` (0666 less the umask), read off a probe file.

    ``os.umask`` can only be read by setting it, which races with other threads; a probe cannot.
    ``folder`` is a fresh staging folder, so the probe's name is free.
    """
    probe = folder / ".mode-probe"
    descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        return stat.S_IMODE(os.fstat(descriptor).st_mode)
    finally:
        os.close(descriptor)
        os.unlink(probe)


def load_native_weights(
    path: str | os.PathLike, module: nn.Module, map_location: str | torch.device = "cpu"
) -> None:
    """Load ``model.safetensors`` into ``module`` strictly (every bad key listed), unpickling nothing."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"native checkpoint weights not found: {path}. A native checkpoint is a folder with "
            f"{NATIVE_CONFIG_FILE} and {NATIVE_WEIGHTS_FILE} "
            "(written by save_pretrained or `hierspeech2 convert`)"
        )
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"cannot read {path} as safetensors: {error}") from error
    check_state_dict(module, state, what=str(path))
    _load_strict(module, state, str(path))


class NativeCheckpointMixin(
    PyTorchModelHubMixin,
    library_name="hierspeech2",
    license="mit",
    repo_url="https://github.com/sh-lee-prml/HierSpeechpp",
    paper_url="https://arxiv.org/abs/2311.12454",
    tags=["speech", "hierspeech2"],  # generate_model_card adds the family's (text-to-speech, ...)
):
    """The native format: ``config.json`` (constructor arguments) + ``model.safetensors`` (native keys).

    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` come from
    :class:`huggingface_hub.PyTorchModelHubMixin`, which records the constructor arguments
    (defaults and passed values) when the model is built. On top of it this mixin
    - loads strictly and lists every missing, unexpected or mis-shaped key (the base class
      loads with ``strict=False`` by default, which leaves random weights behind silently);
    - turns JSON lists back into the tuples our constructors take;
    - reads only safetensors (no ``pytorch_model.bin`` pickle fallback) and prints nothing;
    - records the class in ``config.json`` (``hierspeech2_class``) and refuses a checkpoint of another class;
    - writes files with the modes the umask gives (safetensors writes 0600): a shared folder stays readable;
    - writes a real model card (:meth:`generate_model_card`) and refreshes it on the next save unless the
      user edited it (removed :data:`GENERATED_CARD_MARK`).
    """

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ):
        """Write ``config.json``, ``model.safetensors`` and a model card to ``save_directory``.

        The files are written into a staging folder first and then renamed into place, so a full
        disk or a read-only folder raises :class:`~hierspeech2.errors.OutputError` and leaves an
        earlier export in ``save_directory`` as it was (the base class deletes ``config.json`` first).
        ``model_card_kwargs`` go to :meth:`generate_model_card` (``source``: where the weights came from).
        A ``README.md`` the user wrote is kept; one that ``save_pretrained`` wrote is rewritten.
        """
        config = dict(self._hub_mixin_config or {}) if config is None else dict(config)
        config[NATIVE_CLASS_KEY] = type(self).__name__
        card_kwargs = {
            "location": card_location(save_directory),
            "config": config,
            **(model_card_kwargs or {}),
        }
        save_directory = Path(save_directory)
        staging = None
        try:
            save_directory.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=save_directory))
            super().save_pretrained(staging, config=config, model_card_kwargs=card_kwargs)
            mode = _new_file_mode(staging)
            # weights before config: a folder whose config.json is new has its new weights too
            for name in (NATIVE_WEIGHTS_FILE, NATIVE_CONFIG_FILE, MODEL_CARD_FILE):
                target = save_directory / name
                if name == MODEL_CARD_FILE and target.exists() and not is_generated_card(target):
                    continue  # as the base class: never overwrite the user's model card
                if (staging / name).exists():
                    os.chmod(staging / name, mode)
                    os.replace(staging / name, target)
        except (OSError, SafetensorError) as error:
            raise OutputError.writing(save_directory, error) from error
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        if push_to_hub:
            return self.push_to_hub(
                repo_id or save_directory.name,
                config=config,
                model_card_kwargs=model_card_kwargs,
                **push_to_hub_kwargs,
            )
        return None

    def push_to_hub(
        self, repo_id: str, *, model_card_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> str:
        """Upload to the Hub (see the base class); the model card shows how to load it from ``repo_id``."""
        from .registry import HF_SCHEME

        card_kwargs = {"location": f"{HF_SCHEME}{repo_id}", **(model_card_kwargs or {})}
        return super().push_to_hub(repo_id, model_card_kwargs=card_kwargs, **kwargs)

    def generate_model_card(
        self,
        *args: Any,
        source: str | None = None,
        location: str = "path/to/model",
        config: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> ModelCard:
        """The ``README.md`` of a native folder; see :func:`hierspeech2.model_card.model_card`."""
        return model_card(self, source=source, location=location, config=config)

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_file

        assert isinstance(self, nn.Module)
        # clone: safetensors refuses tensors that share storage (views, tied weights)
        state = {
            key: value.detach().to("cpu").clone().contiguous() for key, value in self.state_dict().items()
        }
        metadata = {"format": "pt", NATIVE_CLASS_KEY: type(self).__name__}
        save_file(state, str(Path(save_directory) / NATIVE_WEIGHTS_FILE), metadata=metadata)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict | None = None,
        map_location: str | torch.device = "cpu",
        **model_kwargs: Any,
    ) -> Self:
        if config is None:
            raise CheckpointError(
                f"{model_id} has no {NATIVE_CONFIG_FILE}, so it is not a hierspeech2 native checkpoint; "
                f"for an official .pth use {cls.__name__}.from_official(path)"
            )
        saved_class = config.get(NATIVE_CLASS_KEY)
        if saved_class is not None and saved_class != cls.__name__:
            raise CheckpointError(
                f"{model_id} holds a {saved_class}, not a {cls.__name__}; "
                f"load it with {saved_class}.from_pretrained or hierspeech2.load_model"
            )
        if os.path.isdir(model_id):
            weights = os.path.join(model_id, NATIVE_WEIGHTS_FILE)
        else:
            from huggingface_hub import hf_hub_download
            from huggingface_hub.errors import EntryNotFoundError

            try:
                weights = hf_hub_download(
                    repo_id=model_id,
                    filename=NATIVE_WEIGHTS_FILE,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    token=token,
                    local_files_only=local_files_only,
                )
            except EntryNotFoundError as error:
                raise CheckpointError(
                    f"{model_id} has no {NATIVE_WEIGHTS_FILE}; "
                    "hierspeech2 reads native weights only as safetensors"
                ) from error
        kwargs = as_tuples(model_kwargs)
        model = _construct(cls, kwargs, model_id)
        assert isinstance(model, nn.Module)
        load_native_weights(weights, model)
        return model.to(map_location).eval()
