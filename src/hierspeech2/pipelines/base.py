"""What every pipeline shares: one frozen options object, its fields as attributes, per-call overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from ..options import SuperResolutionOptions, TextToSpeechOptions, VoiceConversionOptions

__all__ = ["Pipeline", "option"]

OptionsT = TypeVar("OptionsT", SuperResolutionOptions, VoiceConversionOptions, TextToSpeechOptions)


class Pipeline(Generic[OptionsT]):
    """A pipeline configured by one frozen options dataclass, :attr:`options`.

    The constructor takes an options object, and any of its fields as keyword overrides (None keeps
    the value); every default lives in :mod:`hierspeech2.options`.
    """

    OPTIONS: ClassVar[type]
    """The options dataclass of this pipeline."""

    options: OptionsT

    def _make_options(self, options: OptionsT | None, overrides: Mapping[str, Any]) -> OptionsT:
        """``options`` (or the defaults) with the constructor's keyword ``overrides``, checked."""
        if options is not None and not isinstance(options, self.OPTIONS):
            raise TypeError(
                f"{type(self).__name__} takes options={self.OPTIONS.__name__}(...), "
                f"got {type(options).__name__}"
            )
        return (options if options is not None else self.OPTIONS()).updated(overrides)

    def _call_options(self, overrides: Mapping[str, Any]) -> OptionsT:
        """The options of one call: :attr:`options` with per-call overrides of its ``CALL_FIELDS``."""
        return self.options.for_call(overrides)


def option(name: str, doc: str, writable: bool = True) -> property:
    """An attribute that reads (and, when ``writable``, replaces) the field ``name`` of ``self.options``."""

    def get(self: Pipeline[Any]) -> Any:
        return getattr(self.options, name)

    def set(self: Pipeline[Any], value: Any) -> None:
        self.options = self.options.updated({name: value})

    return property(get, set if writable else None, doc=doc)
