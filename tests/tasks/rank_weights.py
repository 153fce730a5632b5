"""A callback for the DDP test: each rank saves its final weights (loaded by class path in a subprocess)."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class SaveRankWeights(Callback):
    """Writes ``rank{N}.pt`` (the module's state dict) to ``out_dir`` when training ends."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu() for key, value in pl_module.state_dict().items()}
        torch.save(
            {"state": state, "world_size": trainer.world_size, "steps": trainer.global_step},
            self.out_dir / f"rank{trainer.global_rank}.pt",
        )
