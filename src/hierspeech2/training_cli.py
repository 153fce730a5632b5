"""The ``lightning`` command (also ``hierspeech2 fit|validate|test|predict``): a LightningCLI over any task.

Model and datamodule are given by class path in a recipe (subclass mode), so any
LightningModule / LightningDataModule works, e.g.::

    lightning fit -c recipes/ttv.yaml
    lightning fit -c recipes/speechsr48k.yaml --trainer.devices 4 --trainer.strategy ddp \\
        --trainer.precision bf16-mixed
    lightning fit -c recipes/ttv.yaml --model.init_from ttv-lt960          # fine-tune released weights
    lightning fit -c recipes/ttv.yaml --ckpt_path last                     # resume
    lightning fit -c recipes/ttv.yaml --print_config                       # the fully resolved config

Precision, devices, nodes and strategy are Trainer options; the one thing done here is to make a
GAN task's DDP look for unused parameters (``ddp`` becomes ``ddp_find_unused_parameters_true``).
``--threads N`` sets torch's CPU threads of the run (default: torch's, which follows
``OMP_NUM_THREADS``; DataLoader workers use one each, as PyTorch sets them).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.strategies import DDPStrategy

from .cli.common import EXIT_FAILED
from .errors import HierSpeechError

# Each DDP strategy name and its registered twin that looks for unused parameters, which GAN
# tasks need: each of their two updates leaves the other network without gradients.
FIND_UNUSED_PARAMETERS = {
    name: f"{name}_find_unused_parameters_true" for name in ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")
}


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

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--threads",
            type=PositiveInt | None,
            default=None,
            help="torch CPU threads of this run (default: torch's, which follows OMP_NUM_THREADS)",
        )

    def before_instantiate_classes(self) -> None:
        # Before the model and data are built. Strategy "ddp" re-runs this command line per rank, so
        # each rank sets it too; "ddp_spawn" children start with torch's default (OMP_NUM_THREADS).
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("threads") is not None:
            torch.set_num_threads(config["threads"])

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """The Trainer, with a GAN task's DDP strategy (named, or chosen by ``auto``) finding
        unused parameters."""
        from .tasks.base import GANTask

        if not isinstance(self.model, GANTask) or "strategy" in kwargs:
            return super().instantiate_trainer(**kwargs)
        prefix = "" if self.subcommand is None else f"{self.subcommand}."
        strategy = self.config_init.get(f"{prefix}trainer.strategy", "auto")
        if isinstance(strategy, str) and strategy in FIND_UNUSED_PARAMETERS:
            return super().instantiate_trainer(strategy=FIND_UNUSED_PARAMETERS[strategy], **kwargs)
        if strategy != "auto":  # a strategy object, or a name that says what to do: used as given
            return super().instantiate_trainer(**kwargs)
        callbacks = list(self.config_init.get(f"{prefix}trainer.callbacks") or [])
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy) is not DDPStrategy:
            return trainer
        # "auto" chose plain DDP (several devices or nodes): build the Trainer again with its twin
        # (from the recipe's callbacks: building a Trainer appends the CLI's own to that list)
        return super().instantiate_trainer(
            strategy=FIND_UNUSED_PARAMETERS["ddp"], callbacks=callbacks, **kwargs
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
        raise SystemExit(EXIT_FAILED) from error


if __name__ == "__main__":
    main()
