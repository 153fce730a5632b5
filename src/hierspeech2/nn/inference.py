"""Inference-time switches: the fast arithmetic paths and weight-norm folding.

Fast paths compute the same function as the official arithmetic with operations reordered, so
results differ only by float rounding:

- The polyphase alias-free activation is its own class,
  :class:`~hierspeech2.nn.alias_free.PolyphaseActivation1d`. :func:`use_fast_activations`
  swaps a model's activations to it and back, explicitly; the pipelines do so for their models.
- The time-chunked AMP stacks (:class:`~hierspeech2.nn.upsampler.Upsampler`) run whenever no
  gradient is needed.

Inside :func:`reference_arithmetic` every block takes its official-arithmetic path instead (for
tests and side-by-side timing).

:func:`fuse_weight_norm` folds every weight-norm parametrization into a plain weight, so
inference stops recomputing ``g · v / ‖v‖`` on each call. It is one-way: the fused model
can no longer export the released (``weight_g`` / ``weight_v``) or native format, and says so.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .._util import context_value
from ..errors import CheckpointError

if TYPE_CHECKING:
    from typing_extensions import Self

_P = ParamSpec("_P")
_R = TypeVar("_R")
_FAST_PATHS = contextvars.ContextVar("hierspeech2_fast_paths", default=True)
_FUSED_FLAG = "_hierspeech2_weight_norm_fused"
# Device types on which PolyphaseActivation1d is measured faster than the reference: oneDNN's
# channels-last depthwise kernels on CPU (benchmarks/inference.py). Elsewhere, CUDA included, the
# reference stays until the polyphase path is measured faster there.
POLYPHASE_DEVICE_TYPES = frozenset({"cpu"})


def fast_paths_enabled() -> bool:
    """Whether blocks may take their fast inference paths
    (true unless inside :func:`reference_arithmetic`)."""
    return _FAST_PATHS.get()


def use_fast_path(x: Tensor) -> bool:
    """A block's fast path applies: enabled, and no gradient flows
    (``inference_mode``/``no_grad`` or a leaf input)."""
    return _FAST_PATHS.get() and not (torch.is_grad_enabled() and x.requires_grad)


def use_fast_activations(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Swap the alias-free activations under ``model`` to the polyphase class (or back), in place;
    returns ``model``.

    In place: each activation keeps its identity, parameters, buffers, hooks and state-dict keys,
    only the class computing it changes (:class:`~hierspeech2.nn.alias_free.Activation1d` ⇄
    :class:`~hierspeech2.nn.alias_free.PolyphaseActivation1d`). An activation becomes polyphase
    only where that is measured faster (its buffers on a device type in
    :data:`POLYPHASE_DEVICE_TYPES`) and possible (equal up and down ratios); the others stay the
    reference. The choice follows the devices at the time of the call: call it again after moving
    the model. The polyphase class is for inference; switch back before training.
    """
    from .alias_free import Activation1d, PolyphaseActivation1d  # alias_free imports this module

    for module in model.modules():
        if type(module) not in (Activation1d, PolyphaseActivation1d):
            continue
        fast = (
            enabled
            and module.has_polyphase_form
            and module.upsample.filter.device.type in POLYPHASE_DEVICE_TYPES
        )
        # Same attributes in both classes, so swapping the class is the whole change; the
        # polyphase taps cached for the old parameters go.
        module.__class__ = PolyphaseActivation1d if fast else Activation1d
        module.__dict__.pop("_weights_cache", None)
    return model


def balanced_chunk(length: int, target: int) -> int:
    """A chunk size near ``target`` that splits ``length`` into equal parts (no small remainder chunk).

    A remainder of a few samples would cost nearly a full chunk's fixed per-call overhead; a
    length up to 1.5 × ``target`` stays one chunk.
    """
    count = max(1, round(length / max(1, target)))
    return -(-length // count)


def reference_arithmetic() -> contextlib.AbstractContextManager[None]:
    """Run the enclosed code with the official arithmetic (every fast path off)."""
    return context_value(_FAST_PATHS, False)


@contextlib.contextmanager
def inference_context() -> Iterator[None]:
    """``torch.inference_mode`` with every parametrized weight computed once and reused
    (``parametrize.cached``).

    Pipelines run each model several times per call (windows, pieces, batches); inside this
    context the weight-norm products are computed on first use instead of on every forward,
    without changing the model, so it stays exportable (unlike :func:`fuse_weight_norm`).
    """
    with torch.inference_mode(), parametrize.cached():
        yield


def inference(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate ``function`` to run in :func:`inference_context`."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with inference_context():
            return function(*args, **kwargs)

    return wrapper


def _fold_weight_norm(module: nn.Module) -> bool:
    """Replace ``module``'s weight-norm parametrization by the weight it computes; False if it has none."""
    if not parametrize.is_parametrized(module, "weight"):
        return False
    parametrizations = module.parametrizations
    chain = parametrizations["weight"]
    if len(parametrizations) != 1 or len(chain) != 1 or type(chain[0]).__name__ != "_WeightNorm":
        return False
    weight = module.weight.detach().clone()
    # Not parametrize.remove_parametrizations: it deletes the property from the parametrized
    # class, which copy.deepcopy shares between copies, and so breaks every other copy.
    del module._modules["parametrizations"]
    module.__class__ = type(module).__bases__[0]
    module.weight = nn.Parameter(weight, requires_grad=chain.original0.requires_grad)
    return True


def fuse_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight-norm parametrization under ``module`` into a plain ``weight``, in place;
    returns ``module``.

    The folded weight is exactly what the parametrization computed, so outputs are unchanged.
    Afterwards ``state_dict`` (and with it ``official_state_dict``, ``save_pretrained``) raises
    :class:`~hierspeech2.errors.CheckpointError`: the original ``g``/``v`` pair cannot be
    recovered from their product. To keep an exportable model, fuse a ``copy.deepcopy`` of it.
    """
    with torch.no_grad():
        fused = sum(_fold_weight_norm(child) for child in list(module.modules()))
    if fused:
        seal_for_inference(module, _FUSED_FLAG, _FUSED_EXPORT_MESSAGE)
    return module


class WeightNormFusionMixin:
    """Gives a model :meth:`fuse_weight_norm`, the method form of :func:`fuse_weight_norm`."""

    def fuse_weight_norm(self) -> Self:
        """Fold weight norm into plain weights for inference (in place, one-way; export then refuses).

        See :func:`hierspeech2.nn.inference.fuse_weight_norm`; fuse a ``copy.deepcopy`` to keep an
        exportable model.
        """
        assert isinstance(self, nn.Module)
        return fuse_weight_norm(self)


def is_weight_norm_fused(module: nn.Module) -> bool:
    """Whether :func:`fuse_weight_norm` has folded this module's weight norm."""
    return getattr(module, _FUSED_FLAG, False)


_FUSED_EXPORT_MESSAGE = (
    "{name}'s weight norm was folded for inference (fuse_weight_norm), so its weights no longer have "
    "the checkpoint layout (weight_g / weight_v). Export or save from a model that was not fused: "
    "reload it, or fuse a copy.deepcopy(model) for inference instead"
)


def seal_for_inference(module: nn.Module, flag: str, message: str) -> None:
    """Mark ``module`` with ``flag`` and make its ``state_dict`` raise :class:`CheckpointError`, once.

    For one-way inference transforms (weight-norm folding, int8) whose result no longer has the
    checkpoint layout; ``message`` is formatted with ``name``, the class name of the module saved.
    """
    if getattr(module, flag, False):
        return
    setattr(module, flag, True)
    # a partial of a module-level function, so that a sealed model still pickles
    module.register_state_dict_pre_hook(functools.partial(_refuse_export, message))


def _refuse_export(message: str, module: nn.Module, prefix: str, keep_vars: bool) -> None:
    raise CheckpointError(message.format(name=type(module).__name__))
