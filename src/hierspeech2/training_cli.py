"""The ``lightning`` command (also ``hierspeech2 fit|validate|test|predict``): a LightningCLI over any task.

Model and datamodule are given by class path in a recipe (subclass mode), so any
LightningModule / LightningDataModule works, e.g.::

    lightning fit -c recipes/ttv.yaml
    lightning fit -c recipes/speechsr48k.yaml --trainer.devices 4 --trainer.strategy ddp --trainer.precision bf16-mixed
    lightning fit -c recipes/ttv.yaml --model.init_from ttv-lt960          # fine-tune released weights
    lightning fit -c recipes/ttv.yaml --ckpt_path last                     # resume
    lightning fit -c recipes/ttv.yaml --print_config                       # the fully resolved config

Precision, devices, nodes and strategy are Trainer options; nothing here touches them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningCLI

from .errors import HierSpeechError

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class HierSpeechCLI(LightningCLI):
    """LightningCLI in subclass mode for model and data, saving the resolved config next to the logs."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        super().__init__(
            model_class=pl.LightningModule,
            datamodule_class=pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "lightning"},
            args=list(args) if args is not None else None,
            run=run,
            auto_configure_optimizers=False,
        )

    def instantiate_classes(self) -> None:
        # A value the types allow but a constructor refuses (a negative width, a learning rate
        # out of range) surfaces deep inside the model; report it as a recipe error instead.
        try:
            super().instantiate_classes()
        except Exception as error:  # noqa: BLE001 - any failure here comes from the recipe's values
            cause = _root_cause(error)
            self.parser.error(
                f"the recipe's values cannot build the run: {type(cause).__name__}: {cause}\n"
                "Check the model/data/trainer init_args in the recipe (print the resolved config with "
                "--print_config)."
            )


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (jsonargparse wraps a constructor's error in union-type errors)."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``lightning`` console script; ``argv`` defaults to ``sys.argv[1:]``."""
    if argv is not None and list(argv) == sys.argv[1:]:
        argv = None  # called as `hierspeech2 fit ...`: LightningCLI reads sys.argv itself
    try:
        HierSpeechCLI(args=argv)
    except HierSpeechError as error:  # e.g. NaN losses, an unreadable checkpoint: the message says what to do
        print(f"lightning: error: {error}", file=sys.stderr)
        raise SystemExit(1) from error


if __name__ == "__main__":
    main()
